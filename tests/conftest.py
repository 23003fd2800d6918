import json
import os
import re
import subprocess
import sys
import tarfile
from collections import Counter
from pathlib import Path

import pytest

from mvid.models.samples import make_cut_video, make_samples

ROOT = Path(__file__).resolve().parents[1]


# A test is slow (deselected by `pytest -m "not slow"`, the fast loop) when it needs one of these fixtures: models,
# generated videos, or a pipeline run. Modules that run the pipeline mark themselves e2e too.
SLOW = {"weights", "samples", "cut_videos", "mvid", "shipped", "corpus"}


def pytest_collection_modifyitems(items):
    for item in items:
        if SLOW & set(item.fixturenames):
            item.add_marker(pytest.mark.slow)


@pytest.fixture(scope="session")
def weights():
    """The model folders that `make weights` assembles (real weights from packages, tiny random models for the
    other roles), built here once where pytest runs without make; MVID_MODEL_DIR points at them for the session
    and the `mvid` subprocesses it starts."""
    from mvid.models.packaged import packaged
    from mvid.models.testing import tiny

    d = Path(os.environ.get("MVID_MODEL_DIR") or ROOT / "weights")
    if not (d / ".ok").exists():
        packaged(d)
        tiny(d)
        (d / ".ok").touch()
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MVID_MODEL_DIR", str(d))
        yield d


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
        (
            d / "mixed.mp4",
            make_cut_video(d / "mixed.mp4", [60, 60, 45], transition=[("dissolve", 10), None], audio="noise", start=3),
        ),
        (d / "mute.mp4", make_cut_video(d / "mute.mp4", [35, 35], start=5)),
    ]


@pytest.fixture(autouse=True)
def _models_for_e2e(request):
    """Pipeline runs resolve their models through MVID_MODEL_DIR: e2e tests get the tiny ones."""
    if request.node.get_closest_marker("e2e"):
        request.getfixturevalue("weights")


@pytest.fixture(scope="session")
def mvid(weights):
    """The `mvid` command in a subprocess, as a user runs it."""

    def run(*args, check=True, **kw) -> subprocess.CompletedProcess:
        p = subprocess.run(
            [sys.executable, "-m", "mvid.pipeline.cli", *map(str, args)], capture_output=True, text=True, cwd=ROOT, **kw
        )
        if check and p.returncode:
            raise AssertionError(f"mvid {' '.join(map(str, args))} exited {p.returncode}:\n{p.stdout}\n{p.stderr}")
        return p

    return run


KEY = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_-]*")


def check_invariants(out: Path, inputs: list, work: Path | None = None) -> tuple[dict, list]:
    """What every run must leave, whatever went wrong: the manifest's shards verify; every entry of the input
    (`inputs`: its rows or files, in order) has exactly one outcome: in the shards, failed or dropped as a whole
    with one record, or every clip of it dropped; no key twice, no failure record twice; keys and member names
    stay inside the output folder. With `work`, every clip that split made is exactly once in the shards or in
    the failure records. Returns (samples by key, failures)."""
    from mvid.pipeline.inspect import manifest, verify
    from mvid.schemas import shard as S

    assert verify(out) == []
    samples = {}
    for s in manifest(out).shards:
        with tarfile.open(out / s.name) as tar:
            for m in tar:
                key, _, ext = m.name.partition(".")
                assert m.isfile() and KEY.fullmatch(key) and "/" not in m.name and ".." not in m.name, m.name
                if ext == "json":
                    assert key not in samples, f"{key} twice in the shards"
                    samples[key] = json.load(tar.extractfile(m))
    assert len(samples) == manifest(out).samples
    fails = list(S.failures(out))
    rows = [json.dumps(f, sort_keys=True) for f in fails]
    assert len(rows) == len(set(rows)), "a failure record twice"
    assert all(f["path"] and f["stage"] and f["code"] and f["message"] for f in fails)
    assert not {f["id"] for f in fails} & set(samples), "a clip both shipped and failed"
    shipped = {x["row"] for x in samples.values()}
    whole = Counter(f["row"] for f in fails if f["id"] == f["video_id"])
    clipped = {f["row"] for f in fails if f["id"] != f["video_id"]} - shipped - set(whole)
    assert all(n == 1 for n in whole.values()), f"an entry with two records: {whole.most_common(1)}"
    assert not shipped & set(whole), f"failed and shipped: rows {shipped & set(whole)}"
    assert (
        sorted(shipped | set(whole) | clipped) == list(range(1, len(inputs) + 1))
        and len(inputs) == manifest(out).videos
    ), "an entry of the input without an outcome"
    if work:
        made = [c["clip_id"] for c in clips(work, "split").values()]
        failed = {f["id"] for f in fails}
        assert len(made) == len(set(made)) and set(made) == set(samples) | (failed & set(made))
    return samples, fails


def videos(work: Path, stage: str) -> dict:
    """Every video a stage persisted in a work folder (its parts), by video id."""
    import pyarrow.parquet as pq

    from mvid.schemas import record as R

    out: dict = {}
    for p in sorted((work / "stages" / stage).glob("*.parquet")):
        for u in R.rows(pq.read_table(p)):
            for v in u["videos"]:
                out.setdefault(v["video_id"], v)  # a duplicate's record (no clips) comes after the one it repeats
    return out


def clips(work: Path, stage: str) -> dict:
    """Every clip a stage persisted, joined with its video's fields, by clip id."""
    from mvid.pipeline.runner import merged

    return {c["clip_id"]: merged(v, c) for v in videos(work, stage).values() for c in v["clips"]}


@pytest.fixture(scope="session")
def full(samples, tmp_path_factory, mvid):
    """The demo profile over the whole sample corpus, with its report: (out, entries, stdout, stderr)."""
    dest, entries = samples
    d = tmp_path_factory.mktemp("e2e")
    p = mvid("run", "--input", dest / "inputs.jsonl", "--work", d / "work", "--out", d / "out", "--report")
    return d / "out", entries, p.stdout, p.stderr


@pytest.fixture(scope="session")
def persisted():
    """(videos, clips): what a stage persisted in a work folder, by video id and by clip id."""
    return videos, clips


@pytest.fixture(scope="session")
def invariants():
    """check_invariants, for tests that break runs on purpose (tests/test_reliability.py)."""
    return check_invariants
