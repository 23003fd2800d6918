"""Pipeline throughput: the demo profile end to end over the sample inputs on a local Ray.

    python bench/e2e.py

Prints clips/s, hours of video per hour and the orchestration overhead (wall time against the sum of the stages'
compute times, which the runner logs under work/timings/), and writes them into docs/benchmarks.md under
"## Pipeline". Makes the sample inputs and tiny models first where `make samples tiny` has not.
"""

from __future__ import annotations

import os
import platform
import tempfile
import time
from pathlib import Path

from report import write_section

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Pipeline"


def prepare() -> Path:
    """The sample list and tiny models, where they are missing (what `make samples tiny` makes)."""
    from mvid.models.samples import make_samples
    from mvid.models.testing import tiny

    lst = ROOT / "samples" / "inputs.jsonl"
    if not lst.exists():
        make_samples(ROOT / "samples")
    tiny_dir = Path(os.environ.setdefault("MVID_MODEL_DIR", str(ROOT / "weights")))
    if not tiny_dir.exists():
        tiny(tiny_dir)
    return lst


def video_seconds(work: Path) -> float:
    """Seconds of video probed, from the probe stage's parts."""
    import pyarrow.parquet as pq

    return sum(
        v["probe"]["duration"]
        for p in (work / "stages" / "probe").glob("*.parquet")
        for u in pq.read_table(p).to_pylist()
        for v in u["videos"]
        if v["probe"]
    )


def main() -> None:
    from mvid.pipeline.config import load
    from mvid.pipeline.dag import Pipeline
    from mvid.pipeline.executor import RayExecutor
    from mvid.pipeline.runner import timings
    from mvid.stages import REGISTRY

    lst = prepare()
    load_avg = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        work = Path(d) / "work"
        cfg = load("demo", [f"input={lst}", f"work_dir={work}", f"output_dir={Path(d) / 'out'}"])
        t0 = time.perf_counter()
        ex = RayExecutor(cfg.ray.address, cfg.ray.num_cpus, cfg.ray.object_store_mb)
        ray_s = time.perf_counter() - t0
        s = Pipeline(cfg).run(ex)
        wall = time.perf_counter() - t0
        ex.ray.shutdown()
        stages, video_s = timings(work), video_seconds(work)
        made = next(t.items for n, t in stages.items() if REGISTRY[n].key == "clip_id")  # the clips split made

    kinds = {
        n: "actors" if c.uses_model else "barrier" if c.barrier else "sink tasks" if c.sink else "tasks"
        for n, c in REGISTRY.items()
    }
    rows = [
        "| stage | runs as | items | batches | compute s | setup s | peak RSS MB | memory_gb |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for p in cfg.stages:
        t = stages[p.name]
        rows.append(
            f"| {p.name} | {kinds[p.name]} | {t.items} | {t.batches} | {t.seconds:.1f} | "
            f"{t.setup_s:.1f} | {t.rss_mb} | {p.resources.memory_gb or '-'} |"
        )
    compute = sum(t.seconds for t in stages.values())
    setup = sum(t.setup_s for t in stages.values())
    cpus = cfg.ray.num_cpus
    rest = wall - ray_s - (compute + setup) / cpus
    rows.append(f"| **all** | | | | **{compute:.1f}** | **{setup:.1f}** | | |")
    summary = [
        "| measure | value |",
        "|---|---|",
        f"| videos in / clips made / clips in the shards | {s.videos} / {made} / {s.clips} |",
        f"| video in | {video_s / 60:.1f} min |",
        f"| wall time (Ray start included) | {wall:.1f} s |",
        f"| clips made / s (each through every stage) | {made / wall:.2f} |",
        f"| clips in the shards / s (after selection) | {s.clips / wall:.2f} |",
        f"| hours of video / hour | {video_s / wall:.2f} |",
        f"| Ray start | {ray_s:.1f} s |",
        f"| stage compute, summed | {compute:.1f} s |",
        f"| model setup, summed | {setup:.1f} s |",
        f"| stage compute / wall | {compute / wall:.2f} (at most {cpus} on {cpus} CPUs) |",
        f"| wall - Ray start - (compute + setup) / {cpus} CPUs | {rest:.1f} s ({rest / wall:.0%} of wall) |",
    ]
    text = (
        f"`python bench/e2e.py` on {platform.machine()}, {os.cpu_count()} cores (load average "
        f"{load_avg:.1f} at the start: a shared machine). The demo profile (tiny random models where no weights "
        f"ship, `ray.num_cpus: {cpus}`) over the sample inputs, from an empty work folder, on a local Ray. "
        f"Compute is the time inside each stage's batches (model calls, ffmpeg, persisting outputs); setup is "
        f"loading models, once per actor or task. Stage compute / wall is how many stages worked at once on "
        f"average; the last row is the time that neither stage work nor setup fills even with both CPUs busy: "
        f"scheduling, serialization, actor start-up, stages waiting on each other. Peak RSS is the largest of "
        f"a stage's worker processes (ffmpeg children not counted), beside the host memory the profile reserves "
        f"per worker.\n\n" + "\n".join(summary) + "\n\n" + "\n".join(rows)
    )
    print(text)
    write_section(HEADING, text)


if __name__ == "__main__":
    main()
