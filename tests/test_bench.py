"""bench/gpu.py's dry run: on a CPU machine it checks that every GPU check's libraries and model folders are there."""

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
CHECKS = {"llm_vllm", "vlm_vllm_224", "vlm_vllm_448", "asr_faster_whisper", "shots_transnetv2", "clip_transformers"}


def dry_run(out: Path, models: Path) -> subprocess.CompletedProcess:
    cmd = [sys.executable, ROOT / "bench" / "gpu.py", "--dry-run", "--out", out]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "MVID_MODEL_DIR": str(models)})


def test_gpu_check_dry_run(weights, tmp_path):
    p = dry_run(tmp_path / "gpu.json", weights)
    assert p.returncode == 0, p.stdout + p.stderr
    got = json.loads((tmp_path / "gpu.json").read_text())
    assert got["dry_run"] and set(got["checks"]) == CHECKS and all(c["ready"] for c in got["checks"].values())

    (tmp_path / "none").mkdir()
    p = dry_run(tmp_path / "bad.json", tmp_path / "none")  # no model folders: every check but TransNetV2's fails
    bad = json.loads((tmp_path / "bad.json").read_text())["checks"]
    assert p.returncode == 1 and {k for k, v in bad.items() if "error" in v} == CHECKS - {"shots_transnetv2"}
    assert str(tmp_path / "none" / "tiny-llama") in bad["llm_vllm"]["error"]


KEYS = {"units", "ray_peak_rss_mb", "worker_processes_peak", "oom_kills", "driver_peak_rss_mb", "kept"}


def scale(*args) -> dict:
    """bench/scale.py with --json: its last stdout line is the JSON object (Ray's lines go to the run's log)."""
    p = subprocess.run([sys.executable, ROOT / "bench" / "scale.py", "--json", *args], capture_output=True, text=True)
    assert p.returncode == 0, p.stdout + p.stderr
    return json.loads(p.stdout.strip().splitlines()[-1])


def test_scale_bench_runs_mvid_and_reports_every_key(weights):
    r = scale("--clips", "2000")
    assert set(r) >= KEYS and r["shard_samples"] == r["kept"] > 0 and r["oom_kills"] == 0
    assert r["select_passes"] >= 2 and not r["failures"]  # the radix select ran more than one pass
    assert r["resume_sealed"]  # the finished folder's rerun started no Ray


def test_ray_worker_processes_stay_bounded_over_200_units(weights):
    """2 x CPUs + actors + 4, whatever the number of units: the recipe has one actor pool of one actor."""
    r = scale("--clips", "2000", "--per-video", "10", "--per-unit", "1")
    assert r["units"] == 200 and 0 < r["worker_processes_peak"] <= 2 * 2 + 1 + 4
