"""Scale: the post-model data path over N synthetic clips on a local Ray, and the resume scan after it.

    python bench/scale.py --clips N [--json]

A child process makes N clip records as the model stages leave them (scores, float32 embeddings with some
near-duplicates, English transcripts) and small real media (one tiny H.264 frame as the clip, one JPEG frame,
a 20 ms wav: about 1.6 kB a clip) in one tar per video, written to work/inputs.parquet as units. This process
then runs the real path: the lid stage (real fastText) persisting a part per unit, the select barrier (quantile
0.9, dedup on), the sink writing real shards and manifest; then the same again on the finished folder (the
resume scan). It reports the driver's peak RSS (this process only; Ray's own processes are not the driver) and
the files left in work/. With --json the last line is one JSON object."""

from __future__ import annotations

import argparse
import io
import json
import multiprocessing as mp
import os
import resource
import subprocess
import sys
import tempfile
import time
import wave
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "bench"))
PER_VIDEO, PER_UNIT, DIM = 100, 16, 64
RECIPE = """
work_dir: {root}/work
output_dir: {root}/out
input: {root}/unused
ray: {{num_cpus: 2, object_store_mb: 512}}
stages:
  - name: lid
    batch_size: 256
    resources: {{cpus: 1, actors: 1}}
  - name: select
    quantile: 0.9
    dedup: 0.99
  - name: shard
    videos: {per_unit}
"""


def media() -> dict[str, bytes]:
    """One tiny H.264 frame, one JPEG and a 20 ms wav, made once and shared by every clip."""
    with tempfile.TemporaryDirectory() as d:
        subprocess.run(
            [
                "ffmpeg",
                "-nostdin",
                "-loglevel",
                "error",
                "-f",
                "lavfi",
                "-i",
                "testsrc2=s=16x16:r=25",
                "-frames:v",
                "1",
                "-pix_fmt",
                "yuv420p",
                f"{d}/c.mp4",
                "-frames:v",
                "1",
                f"{d}/f.jpg",
            ],
            check=True,
        )
        out = {"mp4": Path(d, "c.mp4").read_bytes(), "jpg": Path(d, "f.jpg").read_bytes()}
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(b"\0\1" * 320)
    return out | {"wav": buf.getvalue()}


def make(root: Path, clips: int) -> None:
    """The synthetic corpus, unit by unit (runs in a child process, so the driver's RSS is its own)."""
    import numpy as np
    import pyarrow.parquet as pq

    from mvid.pipeline.inputs import FILE
    from mvid.pipeline.media import files as members_of
    from mvid.pipeline.media import write_tar
    from mvid.pipeline.stage import Ctx
    from mvid.pipeline.store import digest
    from mvid.schemas import record as R

    rng, m, ctx = np.random.default_rng(0), media(), Ctx(root / "work", root / "out")
    tmp = root / "tmp"
    tmp.mkdir(parents=True)
    (root / "work").mkdir()
    for k, b in m.items():
        (tmp / k).write_bytes(b)
    n_videos = -(-clips // PER_VIDEO)
    with pq.ParquetWriter(root / "work" / FILE, R.UNIT) as w:
        for u0 in range(0, n_videos, PER_UNIT):
            videos = []
            for vi in range(u0, min(u0 + PER_UNIT, n_videos)):
                vid = f"video{vi:07d}"
                n = min(PER_VIDEO, clips - vi * PER_VIDEO)
                emb = rng.normal(size=(n, DIM)).astype(np.float32)
                emb[1::20] = emb[0::20][: len(emb[1::20])]  # every 20th clip repeats the one before it
                emb /= np.linalg.norm(emb, axis=1, keepdims=True)
                cs, files = [], {}
                for i in range(n):
                    cid = R.clip_id(vid, i)
                    files |= {f"{cid}.mp4": tmp / "mp4", f"{cid}.frame00.jpg": tmp / "jpg", f"{cid}.wav": tmp / "wav"}
                    cs.append(
                        {
                            "clip_id": cid,
                            "clip_index": i,
                            "start_frame": i * 25,
                            "end_frame": i * 25 + 25,
                            "start": float(i),
                            "end": i + 1.0,
                            "duration": 1.0,
                            "fps": 25.0,
                            "has_audio": True,
                            "clip_path": f"{cid}.mp4",
                            "audio_path": f"{cid}.wav",
                            "frame_paths": [f"{cid}.frame00.jpg"],
                            "frame_size": [16, 16],
                            "media_bytes": sum(len(b) for b in m.values()),
                            "transcript": {"text": "the quick brown fox jumps over the lazy dog", "source": "asr"},
                            "clip_score": round(float(rng.normal(0.3, 0.05)), 6),
                            "clip_emb": emb[i].tolist(),
                        }
                    )
                media_path = ctx.media(vid)
                write_tar(media_path, members_of(files))
                videos.append(
                    {
                        "video_id": vid,
                        "path": f"/synthetic/{vid}.mp4",
                        "failed": False,
                        "has_audio": True,
                        "media": str(media_path.relative_to(ctx.work)),
                        "clips": cs,
                        "rejects": [],
                    }
                )
            w.write_table(R.table([{"unit": f"{u0 // PER_UNIT:06d}", "_k": digest(videos), "videos": videos}]))


def run(root: Path) -> dict:
    """Both runs in this process: (first run's seconds, resume's seconds, units, summary)."""
    import pyarrow.parquet as pq

    from mvid.pipeline.config import load
    from mvid.pipeline.dag import Pipeline
    from mvid.pipeline.executor import RayExecutor

    (root / "recipe.yaml").write_text(RECIPE.format(root=root, per_unit=PER_UNIT))
    cfg = load(str(root / "recipe.yaml"))
    n = pq.ParquetFile(root / "work/inputs.parquet").num_row_groups
    ex, times = RayExecutor(num_cpus=2, object_store_mb=512), []
    for _ in range(2):
        t = time.time()
        pipe = Pipeline(cfg)
        pipe.advance(ex, n, pipe.stream)
        s = pipe.write(ex, n, n * PER_UNIT, t)
        times.append(time.time() - t)
    return {"wall_s": times[0], "resume_s": times[1], "units": n, "summary": s}


def report(out: Path) -> None:
    """mvid report on the output; its own peak RSS (MB) to out/../report_rss."""
    from mvid.pipeline.report import report as write

    write(out)
    (out.parent / "report_rss").write_text(str(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024))


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--clips", type=int, default=10_000)
    ap.add_argument("--dir", help="work here (default: a temporary folder, removed after)")
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    os.environ.setdefault("MVID_MODEL_DIR", str(ROOT / "weights"))
    with tempfile.TemporaryDirectory(dir=a.dir) as d:
        root = Path(d)
        t = time.time()
        p = mp.get_context("spawn").Process(target=make, args=(root, a.clips))
        p.start()
        p.join()
        assert p.exitcode == 0, "making the synthetic corpus failed"
        made = time.time() - t
        r = run(root)
        s = r["summary"]
        t = time.time()
        p = mp.get_context("spawn").Process(target=report, args=(root / "out",))  # its own peak RSS
        p.start()
        p.join()
        assert p.exitcode == 0, "the report failed"
        report_s = time.time() - t
        man = json.loads((root / "out/manifest.json").read_text())
        res = {
            "clips": a.clips,
            "kept": s.clips,
            "dropped": sum(s.drops.values()),
            "shard_samples": man["samples"],
            "shards": len(man["shards"]),
            "units": r["units"],
            "wall_s": round(r["wall_s"], 2),
            "resume_s": round(r["resume_s"], 2),
            "s_per_1k_clips": round(1000 * r["wall_s"] / a.clips, 3),
            "driver_peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            "report_s": round(report_s, 1),  # mvid report: index, failures and a gallery of 24
            "report_peak_rss_mb": int((root / "report_rss").read_text()),
            "work_files": sum(len(f) for _, _, f in os.walk(root / "work")),
            "make_s": round(made, 1),
            "failures": dict(s.failures),
            "drops": dict(s.drops),
        }
    print(json.dumps(res) if a.json else "\n".join(f"{k:>20}: {v}" for k, v in res.items()))


if __name__ == "__main__":
    main()
