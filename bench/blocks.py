"""What a materialized Ray Data block costs the driver: the run's unit range (a block per unit, as
pipeline/executor.py units makes it) and a selection pool of 800-row blocks (as dag.py's narrow pool holds them).

    python bench/blocks.py --units N

Prints one JSON object: the driver's RSS (MB) at start, after the range, and after the pool. Ray keeps a task's
return value under 100 KB in its owner's memory, so such blocks live in the driver."""

from __future__ import annotations

import argparse
import json

import numpy as np
import psutil
import pyarrow as pa
import ray


def pool(_batch) -> pa.Table:
    return pa.table({"u": np.arange(800, dtype=np.uint64), "c": [f"v{i:07d}-0001" for i in range(800)]})


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--units", type=int, default=1000)
    a = ap.parse_args()
    ray.init(num_cpus=2, include_dashboard=False, logging_level="ERROR", log_to_driver=False)
    ray.data.DataContext.get_current().enable_progress_bars = False
    me = psutil.Process()

    def mb() -> int:
        return me.memory_info().rss >> 20

    n, start = a.units, mb()
    r = ray.data.range(n, override_num_blocks=n).materialize()
    ranged = mb()
    p = r.map_batches(pool, batch_size=1, batch_format="numpy", compute=ray.data.TaskPoolStrategy(size=2))
    p = p.materialize()
    out = {"units": n, "start_mb": start, "range_mb": ranged, "pool_mb": mb(), "pool_rows": p.count()}
    print(json.dumps(out))


if __name__ == "__main__":
    main()
