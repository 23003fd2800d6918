"""Scale: `mvid run` over N clips on a local Ray, then the same command again on the finished folder (resume: its
seal holds, nothing to do), then once more after one video is touched (its unit runs again, then select and shards).

    python bench/scale.py --clips N [--per-video 100] [--per-unit 8] [--json]

It writes N / per-video tiny real video files (one H.264 frame each, made distinct by a trailing MP4 `free` box)
and an input list, then runs the real entry point (`python -m mvid.pipeline.cli run`) with a recipe of synthetic
stages of realistic record size (bench/scale_stages.py, loaded as a plugin), the real lid stage (fastText, an
actor pool), select (quantile 0.9, near-duplicates by embedding, a fetch limit of N / 100 so that the cut takes
more than one pass) and the sink: listing, content keys, duplicates, resume scan, stream, select, shards and
manifest. While each run goes, this process samples every process of the run's tree (psutil, every 0.5 s): Ray's
worker processes and the RSS and PSS summed over Ray's processes. The driver's peak RSS is its own ru_maxrss
(out/run.json). OOM kills are counted from the raylet's log. With --json the last stdout line is one JSON object;
Ray's own lines go to the run's log, as for any `mvid run`."""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

import psutil

ROOT = Path(__file__).resolve().parents[1]
RECIPE = """
plugins: [scale_stages]
input: {root}/inputs.jsonl
work_dir: {root}/work
output_dir: {root}/out
ray: {{num_cpus: 2, object_store_mb: 512}}
stages:
  - name: bench_clips
    clips: {per_video}
    resources: {{cpus: 0.5}}
  - name: lid
    batch_size: 256
    resources: {{cpus: 0.5, actors: 1}}
  - name: bench_captions
    batch_size: 256
    resources: {{cpus: 0.5}}
  - name: select
    quantile: 0.9
    dedup: 0.99
    fetch_limit: {limit}
  - name: shard
    videos: {per_unit}
"""
UP_TO_DATE = "the output is up to date"  # what `mvid run` prints when the folder's seal holds
OOM = re.compile(r"Ray killed (\d+) worker|(\d+) worker\(s\) were killed due to the node running low on memory")


def videos(root: Path, n: int) -> None:
    """n distinct tiny MP4 files and the input list naming them."""
    base = root / "base.mp4"
    src = ["-f", "lavfi", "-i", "testsrc2=s=16x16:r=25", "-frames:v", "1", "-pix_fmt", "yuv420p"]
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", *src, str(base)], check=True)
    data, d = base.read_bytes(), root / "videos"
    d.mkdir()
    with open(root / "inputs.jsonl", "w") as f:
        for i in range(n):
            p = d / f"v{i:07d}.mp4"
            p.write_bytes(data + (16).to_bytes(4, "big") + b"free" + i.to_bytes(8, "big"))  # a box players skip
            f.write(json.dumps({"path": str(p)}) + "\n")


class Sampler(threading.Thread):
    """Peaks over a process tree while it runs: Ray worker processes, RSS and PSS summed over Ray's processes."""

    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.root, self.stop = psutil.Process(pid), threading.Event()
        self.rss = self.pss = 0
        self.workers: Counter[str] = Counter()  # the worker processes at the peak, by title

    def run(self) -> None:
        while not self.stop.wait(0.5):
            workers: Counter[str] = Counter()
            rss = pss = 0
            try:
                procs = self.root.children(recursive=True)
            except psutil.Error:
                return
            for p in procs:
                try:
                    cmd = " ".join(p.cmdline())
                    mem = p.memory_full_info()
                except psutil.Error:
                    continue
                if not cmd or "ffmpeg" in cmd:  # a process that just exited has no command line
                    continue
                title = cmd.split("(")[0].split()[0]
                if title.startswith("ray::") and not title.endswith("Agent"):  # Ray's agents are not workers
                    workers[title] += 1
                elif "default_worker.py" in cmd:
                    workers["ray::(starting)"] += 1
                rss, pss = rss + mem.rss, pss + mem.pss
            if workers.total() > self.workers.total():
                self.workers = workers
            self.rss, self.pss = max(self.rss, rss), max(self.pss, pss)


def mvid_run(root: Path, env: dict) -> dict:
    """One `mvid run`: wall seconds and the sampler's peaks."""
    t = time.time()
    with open(root / "stdout", "a") as out, open(root / "stderr", "a") as err:
        p = subprocess.Popen(
            [sys.executable, "-m", "mvid.pipeline.cli", "run", "--config", str(root / "recipe.yaml")],
            stdout=out,
            stderr=err,
            env=env,
        )
        s = Sampler(p.pid)
        s.start()
        rc = p.wait()
        s.stop.set()
        s.join()
    if rc:
        raise SystemExit(f"mvid run exited {rc}: {(root / 'stderr').read_text()[-3000:]}")
    return {"wall_s": time.time() - t, "workers": s.workers, "rss": s.rss >> 20, "pss": s.pss >> 20}


def oom_kills(ray_tmp: Path) -> int:
    n = 0
    for log in ray_tmp.glob("session_*/logs/raylet*.out"):
        for m in OOM.finditer(log.read_text(errors="replace")):
            n += int(m.group(1) or m.group(2))
    return n


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=10_000)
    ap.add_argument("--per-video", type=int, default=100)
    ap.add_argument("--per-unit", type=int, default=8, help="videos a unit (and a shard)")
    ap.add_argument("--dir", help="work here (default: a temporary folder, removed after)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    n_videos = -(-a.clips // a.per_video)
    with tempfile.TemporaryDirectory(dir=a.dir) as d, tempfile.TemporaryDirectory(prefix="r", dir="/tmp") as rt:
        root = Path(d)
        t = time.time()
        videos(root, n_videos)
        made = time.time() - t
        limit = max(10, a.clips // 100)
        (root / "recipe.yaml").write_text(
            RECIPE.format(root=root, per_video=a.per_video, per_unit=a.per_unit, limit=limit)
        )
        env = {
            **os.environ,
            "MVID_MODEL_DIR": os.environ.get("MVID_MODEL_DIR", str(ROOT / "weights")),
            "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT / "bench"), os.environ.get("PYTHONPATH")])),
            "RAY_TMPDIR": rt,  # this benchmark's Ray sessions and their logs
        }
        first = mvid_run(root, env)
        run = json.loads((root / "out/run.json").read_text())
        again = mvid_run(root, env)
        sealed = (root / "stdout").read_text().count(UP_TO_DATE)
        os.utime(root / "videos" / f"v{n_videos // 2:07d}.mp4")  # one video touched: its unit runs again
        touched = mvid_run(root, env)
        runs = (first, again, touched)
        t = time.time()
        rep = subprocess.run(
            [
                sys.executable,
                "-c",
                "import resource, sys; from mvid.pipeline.cli import main; main(['report', sys.argv[1]]); "
                "print(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024)",
                str(root / "out"),
            ],
            capture_output=True,
            text=True,
            check=True,
            env=env,
        )
        report_s = time.time() - t
        man = json.loads((root / "out/manifest.json").read_text())
        kept = man["samples"]
        res = {
            "clips": a.clips,
            "videos": n_videos,
            "units": len(man["shards"]),
            "kept": kept,
            "dropped": sum(v for k, v in man["failures"].items() if k in ("not_selected", "near_duplicate")),
            "shard_samples": sum(s["samples"] for s in man["shards"]),
            "shards": len(man["shards"]),
            "wall_s": round(first["wall_s"], 2),
            "resume_s": round(again["wall_s"], 2),
            "resume_sealed": sealed == 1,  # the folder was up to date: no Ray started
            "resume_touched_s": round(touched["wall_s"], 2),
            "s_per_1k_clips": round(1000 * first["wall_s"] / a.clips, 3),
            "driver_peak_rss_mb": run["driver_rss_mb"],
            "ray_peak_rss_mb": max(r["rss"] for r in runs),
            "ray_peak_pss_mb": max(r["pss"] for r in runs),
            "worker_processes_peak": max(r["workers"].total() for r in runs),
            "workers_at_peak": dict(max((r["workers"] for r in runs), key=Counter.total)),
            "oom_kills": oom_kills(Path(rt)),
            "select_passes": run["select_passes"],
            "report_s": round(report_s, 1),
            "report_peak_rss_mb": int(rep.stdout.strip().splitlines()[-1]),
            "work_files": sum(len(f) for _, _, f in os.walk(root / "work")),
            "work_mb": sum(f.stat().st_size for f in (root / "work").rglob("*") if f.is_file()) >> 20,
            "make_s": round(made, 1),
            "failures": {k: v for k, v in man["failures"].items() if k not in ("not_selected", "near_duplicate")},
        }
    print(json.dumps(res) if a.json else "\n".join(f"{k:>22}: {v}" for k, v in res.items()))


if __name__ == "__main__":
    main()
