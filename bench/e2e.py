"""Pipeline throughput: the demo profile end to end over the sample inputs on a local Ray.

    python bench/e2e.py

Prints clips/s, hours of video per hour and the orchestration overhead (wall time against the sum of the stages'
compute times, which the runner logs under work/timings/), and writes them into docs/benchmarks.md under
"## Pipeline". Makes the sample inputs and tiny models first where `make samples tiny` has not.
"""

from __future__ import annotations

import json
import os
import platform
import tempfile
import time
from collections import defaultdict
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


def timings(work: Path) -> dict[str, dict]:
    """Per stage: items and batches processed, seconds in batches, model setups and their seconds, and the
    largest peak RSS of its workers."""
    out = defaultdict(lambda: defaultdict(float))
    for p in (work / "timings").glob("*/*.jsonl"):
        t = out[p.parent.name]
        for line in p.read_text().splitlines():
            e = json.loads(line)
            t["rss_mb"] = max(t["rss_mb"], e["rss_mb"])
            if e["what"] == "setup":
                t["setups"] += 1
                t["setup_s"] += e["seconds"]
            else:
                t["items"] += len(e["keys"])
                t["batches"] += 1
                t["compute_s"] += e["seconds"]
    return out


def records(work: Path, stage: str) -> list[dict]:
    return [r for p in (work / "stages" / stage).glob("*/*.json") for r in json.loads(p.read_text())["records"]]


def main() -> None:
    from mvid.pipeline.config import load
    from mvid.pipeline.dag import Pipeline
    from mvid.pipeline.executor import RayExecutor
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
        stages, made = timings(work), len(records(work, "split"))
        video_s = sum(r["probe"]["duration"] for r in records(work, "probe"))

    kinds = {
        n: "actors" if c.uses_model else "barrier" if c.barrier else "sink tasks" if c.sink else "tasks"
        for n, c in REGISTRY.items()
    }
    rows = [
        "| stage | runs as | items | batches | compute s | model setups | setup s | peak RSS MB | memory_gb |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for p in cfg.stages:
        t = stages[p.name]
        rows.append(
            f"| {p.name} | {kinds[p.name]} | {t['items']:.0f} | {t['batches']:.0f} | {t['compute_s']:.1f} | "
            f"{t['setups']:.0f} | {t['setup_s']:.1f} | {t['rss_mb']:.0f} | {p.resources.memory_gb or '-'} |"
        )
    compute = sum(t["compute_s"] for t in stages.values())
    setup = sum(t["setup_s"] for t in stages.values())
    cpus = cfg.ray.num_cpus
    rest = wall - ray_s - (compute + setup) / cpus
    rows.append(f"| **all** | | | | **{compute:.1f}** | | **{setup:.1f}** | | |")
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
