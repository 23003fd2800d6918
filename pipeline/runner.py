"""Runs one stage on a batch: cache hits, per-item failure records, persistence. Same code on Ray and locally."""
from __future__ import annotations

import json
import logging
import os
import resource
import sys
import time
import traceback
from typing import Iterator

import numpy as np

from pipeline.stage import Ctx, Result, StageError, reject_of
from pipeline.store import Store, digest

log = logging.getLogger("mvid")
CRASHES = 3  # worker deaths on one input before it is recorded as worker_crash; Ray retries a batch past that


def error_code(e: BaseException) -> str:
    if isinstance(e, StageError):
        return e.code
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower():
        return "oom"
    return "exception_" + type(e).__name__


def log_time(ctx: Ctx, stage: str, keys: list[str], seconds: float, what: str = "batch") -> None:
    """Append where and how long a stage ran, and the process's peak RSS so far, to work/timings/<stage>/, one
    file per process (bench/e2e.py and tests/test_cluster.py read them). Kept out of the stage outputs, which
    must not change between runs."""
    ray = sys.modules.get("ray")
    node = ray.get_runtime_context().get_node_id() if ray and ray.is_initialized() else "local"
    d = ctx.work / "timings" / stage
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{node[:12]}-{os.getpid()}.jsonl", "a") as f:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux
        f.write(json.dumps({"what": what, "node": node, "keys": keys, "seconds": round(seconds, 4),
                            "rss_mb": rss}) + "\n")


class Runner:
    """Wraps a stage for streaming: `process(recs) -> recs`. Loads the stage's models once."""

    def __init__(self, stage_name: str, params: dict, ctx: Ctx, force: bool = False):
        from stages import REGISTRY
        cls = REGISTRY[stage_name]
        self.stage = cls(cls.Params(**params), ctx)
        self.store = Store(ctx.work, stage_name)
        self.fp = self.stage.fingerprint()
        self.force = force
        t = time.perf_counter()
        self.stage.setup()
        log_time(ctx, stage_name, [], time.perf_counter() - t, "setup")

    def process(self, recs: list[dict]) -> list[dict]:
        st = self.stage
        keyed = [(r[st.key], digest([self.fp, r]), r) for r in recs]
        done = {} if self.force else {k: self.store.get(k) for k, _, _ in keyed}
        todo = [(k, h, r) for k, h, r in keyed if not (done.get(k) and done[k]["input_hash"] == h)]
        t = time.perf_counter()
        for (k, h, r), res in self.guarded(todo):
            for rej in res.rejects:
                rej["stage"] = st.name
            self.store.put(k, h, res.records, res.rejects)
            done[k] = {"records": res.records}
        if todo:
            log_time(st.ctx, st.name, [k for k, _, _ in todo], time.perf_counter() - t)
        return [out for k, _, _ in keyed for out in done[k]["records"]]

    def guarded(self, todo: list[tuple]) -> Iterator[tuple[tuple, Result]]:
        """Run todo, surviving inputs that kill the worker (a decoder segfault, the kernel's OOM killer): each key
        is marked as started until stored. After a worker died on a batch, its keys run one at a time, and a key
        that was started CRASHES times is recorded as worker_crash instead of killing workers forever."""
        if not any(self.store.tries(k) for k, _, _ in todo):
            for k, _, _ in todo:
                self.store.start(k)
            yield from zip(todo, self.run([r for _, _, r in todo]))
            return
        for k, h, r in todo:
            n = self.store.tries(k)
            if n >= CRASHES:
                yield (k, h, r), Result.reject(r, "worker_crash", f"its worker died {n} times while processing it")
                continue
            self.store.start(k)
            yield (k, h, r), self.run([r])[0]

    def process_all(self, recs: list[dict]) -> list[dict]:
        """Barrier stages: one call over every record (a global top-N), persisted per key as usual."""
        out, t = [], time.perf_counter()
        for r, res in zip(recs, self.stage.process_all(recs)):
            for rej in res.rejects:
                rej["stage"] = self.stage.name
            self.store.put(r[self.stage.key], digest([self.fp, r]), res.records, res.rejects)
            out += res.records
        log_time(self.stage.ctx, self.stage.name, [r[self.stage.key] for r in recs], time.perf_counter() - t)
        return out

    def run(self, recs: list[dict]) -> list[Result]:
        """Process a batch; on an exception (an OOM included) split it and retry, down to single items."""
        if not recs:
            return []
        bad = {i: m for i, r in enumerate(recs) if (m := [c for c in self.stage.requires if c not in r])}
        if bad:
            good = iter(self.run([r for i, r in enumerate(recs) if i not in bad]))
            return [Result.reject(r, "missing_input", f"needs columns {bad[i]}") if i in bad else next(good)
                    for i, r in enumerate(recs)]
        try:
            out = self.stage.process_batch(recs)
            assert len(out) == len(recs), f"{self.stage.name} returned {len(out)} results for {len(recs)} inputs"
            return out
        except Exception as e:  # noqa: BLE001 - every failure becomes a record, never a crash
            if len(recs) == 1:
                msg = e.message if isinstance(e, StageError) else f"{type(e).__name__}: {e}"
                if not isinstance(e, StageError):
                    log.warning("%s failed on %s: %s", self.stage.name, recs[0].get(self.stage.key), msg)
                trace = None if isinstance(e, StageError) else traceback.format_exc(limit=4)[-2000:]
                return [Result(rejects=[reject_of(recs[0], error_code(e), msg[:1000], trace=trace)])]
        # Retried outside the except block: the exception's frames (and the failed batch's tensors) are freed.
        mid = len(recs) // 2
        return self.run(recs[:mid]) + self.run(recs[mid:])


class RayRunner(Runner):
    """Ray Data map_batches callable: batches are {"rec": array of JSON strings}."""

    def __call__(self, batch: dict) -> dict:
        out = self.process([json.loads(s) for s in batch["rec"]])
        return {"rec": np.array([json.dumps(r, sort_keys=True) for r in out], dtype=object)}


def ray_task(batch: dict, stage_name: str, params: dict, ctx: Ctx, force: bool) -> dict:
    """Task form for stages without models: nothing to load, so no actor is held."""
    return RayRunner(stage_name, params, ctx, force)(batch)
