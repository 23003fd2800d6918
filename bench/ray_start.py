"""Ray's fixed cost on this machine: a local Ray's start, the first and a later Ray Data execution of 13 trivial
tasks, and the shutdown, with nothing of mvid's. What `mvid run` pays before any unit is looked at.

    python bench/ray_start.py [--runs 3] [--json]"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

CHILD = """
import json, logging, time
t0 = time.time()
import ray, ray.data
t = time.time()
ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
out = {"import_s": t - t0, "init_s": time.time() - t}
ray.data.DataContext.get_current().enable_progress_bars = False
logging.getLogger("ray.data").setLevel(logging.ERROR)
for name in ("first_dataset_s", "next_dataset_s"):
    t = time.time()
    ray.data.range(13, override_num_blocks=13).map_batches(lambda b: b, batch_size=None, num_cpus=0.5).take_all()
    out[name] = time.time() - t
t = time.time()
ray.shutdown()
out["shutdown_s"] = time.time() - t
print(json.dumps(out))
"""


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--json", action="store_true")
    a = ap.parse_args()
    runs = []
    for _ in range(a.runs):
        t = time.time()
        p = subprocess.run([sys.executable, "-c", CHILD], capture_output=True, text=True, check=True)
        r = json.loads(p.stdout.strip().splitlines()[-1])
        r["process_s"] = time.time() - t  # interpreter start and exit included
        runs.append(r)
    res = {k: round(statistics.median(r[k] for r in runs), 2) for k in runs[0]}
    res["runs"] = a.runs
    print(json.dumps(res) if a.json else "\n".join(f"{k:>16}: {v}" for k, v in res.items()))


if __name__ == "__main__":
    main()
