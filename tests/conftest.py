import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.samples import make_cut_video, make_samples

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def samples(tmp_path_factory):
    """The demo corpus (make_samples), generated once per test session."""
    dest = tmp_path_factory.mktemp("samples")
    return dest, make_samples(dest)


@pytest.fixture(scope="session")
def cut_videos(tmp_path_factory):
    """Small videos with known hard cuts and a dissolve; (path, truth) pairs."""
    d = tmp_path_factory.mktemp("cuts")
    return [
        (d / "hard.mp4", make_cut_video(d / "hard.mp4", [40, 55, 30, 70], audio="music")),
        (d / "mixed.mp4", make_cut_video(d / "mixed.mp4", [60, 60, 45], transition=[("dissolve", 10), None],
                                         audio="noise", start=3)),
        (d / "mute.mp4", make_cut_video(d / "mute.mp4", [35, 35], start=5)),
    ]


@pytest.fixture(scope="session")
def mvid():
    """The `mvid` command in a subprocess, as a user runs it."""
    def run(*args, check=True, **kw) -> subprocess.CompletedProcess:
        p = subprocess.run([sys.executable, "-m", "pipeline.cli", *map(str, args)], capture_output=True,
                           text=True, cwd=ROOT, **kw)
        if check and p.returncode:
            raise AssertionError(f"mvid {' '.join(map(str, args))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
        return p
    return run
