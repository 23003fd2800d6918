"""Executors: Ray Data (streaming map_batches, actor pools for model stages) and an in-process one.

Both run the same Runner, so a stage behaves the same under either; only scheduling differs."""
from __future__ import annotations

import json
import os
import warnings

from pipeline.config import ConfigError
from pipeline.runner import CRASHES, RayRunner, Runner, ray_task
from pipeline.stage import Ctx, StageParams


class LocalExecutor:
    """In-process, stage after stage: for unit tests and debugging."""

    def stream(self, stages: list[StageParams], recs: list[dict], ctx: Ctx, force: bool = False) -> int:
        """Run the stages; outputs are persisted by the runners. Returns the number of final records."""
        for p in stages:
            r = Runner(p.name, p.model_dump(), ctx, force)
            if r.stage.barrier:
                recs = r.process_all(recs)
                continue
            recs = [o for i in range(0, len(recs), p.batch_size) for o in r.process(recs[i:i + p.batch_size])]
        return len(recs)

    def map(self, fn, items: list) -> list:
        return [fn(*a) for a in items]


def shortfall(stages: list[StageParams], have: dict) -> dict:
    """Actor pools hold their resources for the whole streaming run, so the pools at their minimum size and any
    one task must fit at once, or Ray Data waits forever. Returns {Ray resource: (needed, have)} for what
    `have` (Ray's resource totals) lacks."""
    from stages import REGISTRY
    pools, task = {}, {}
    for p in stages:
        kind, r = REGISTRY[p.name], p.resources
        if kind.barrier or kind.sink:  # the barrier runs in the driver, the sink after the stream
            continue
        ask = {"CPU": r.cpus, "GPU": r.gpus, "memory": r.memory_bytes, **r.custom}
        for k, v in ask.items():
            if kind.uses_model:
                pools[k] = pools.get(k, 0) + v * r.least
            else:
                task[k] = max(task.get(k, 0), v)
    need = {k: pools.get(k, 0) + task.get(k, 0) for k in pools.keys() | task.keys()}
    return {k: (v, have.get(k, 0)) for k, v in need.items() if v > have.get(k, 0) + 1e-6}


class RayExecutor:
    """Ray Data: stages overlap in streaming; a barrier stage (global top-N) materializes first."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, object_store_mb: int | None = None):
        import ray
        self.ray = ray
        address = address or os.environ.get("RAY_ADDRESS")
        self.local = address in (None, "", "local")  # a cluster may autoscale: its size is not checked
        if not ray.is_initialized():
            env = {k: v for k, v in os.environ.items()
                   if k.startswith("MVID_") or k in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")}
            kw = {} if not self.local else {"num_cpus": num_cpus, "include_dashboard": False,
                                            "object_store_memory": object_store_mb and object_store_mb * 2**20}
            # "local": without an address Ray would join any cluster running on this machine.
            ray.init(address=address or "local", runtime_env={"env_vars": env}, log_to_driver=True,
                     logging_level="WARNING", **kw)
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = True
        ctx.verbose_progress = False

    def stream(self, stages: list[StageParams], recs: list[dict], ctx: Ctx, force: bool = False) -> int:
        """Run the stages; outputs are persisted by the runners. Returns the number of final records."""
        from stages import REGISTRY
        rd = self.ray.data
        if not recs:
            return 0
        short = self.local and shortfall(stages, self.ray.cluster_resources())
        if short:
            def amount(k, v):
                return f"{v / 2**30:g} GB" if k == "memory" else f"{v:g}"
            lack = ", ".join(f"{k} needs {amount(k, v)}, has {amount(k, h)}" for k, (v, h) in sorted(short.items()))
            raise ConfigError(f"the local Ray is too small for the stages' actor pools (their minimum sizes) and "
                              f"their largest task at once: {lack}; lower stages' resources (cpus, gpus, "
                              f"memory_gb, actors) or raise ray.num_cpus")
        ds = rd.from_items([{"rec": json.dumps(r, sort_keys=True)} for r in recs],
                           override_num_blocks=max(1, min(len(recs), 4096)))
        for p in stages:
            cls = REGISTRY[p.name]
            if cls.barrier:
                recs = Runner(p.name, p.model_dump(), ctx, force).process_all(
                    [json.loads(x["rec"]) for x in ds.iter_rows()])
                if not recs:
                    return 0
                ds = rd.from_items([{"rec": json.dumps(r, sort_keys=True)} for r in recs],
                                   override_num_blocks=max(1, min(len(recs), 4096)))
                continue
            res = p.resources
            kw = dict(batch_size=p.batch_size, batch_format="numpy", num_cpus=res.cpus)
            if res.gpus:
                kw["num_gpus"] = res.gpus
            if res.memory_bytes:
                kw["memory"] = res.memory_bytes
            if res.custom:
                kw["resources"] = res.custom
            if cls.uses_model:
                n = res.actors  # a fixed pool, or (min, max) that Ray Data autoscales by backlog
                size = {"size": n} if isinstance(n, int) else {"min_size": n[0], "max_size": n[1]}
                # A subclass named after the stage: progress bars and the dashboard show MapBatches(<stage>).
                # A dead actor restarts and its batch is retried, a bounded number of times (Ray Data's default
                # is forever; tasks keep Ray's 3): after CRASHES deaths the Runner records the culprit as
                # worker_crash. Ray 2.60 deprecates remote args passed as keywords but names no replacement.
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
                    ds = ds.map_batches(type(p.name, (RayRunner,), {}), compute=rd.ActorPoolStrategy(**size),
                                        fn_constructor_args=(p.name, p.model_dump(), ctx, force),
                                        max_task_retries=CRASHES + 2, **kw)
            else:
                ds = ds.map_batches(_named(p.name), fn_kwargs={"stage_name": p.name, "params": p.model_dump(),
                                                               "ctx": ctx, "force": force}, **kw)
        return sum(len(b["rec"]) for b in ds.iter_batches(batch_size=None, batch_format="numpy"))

    def map(self, fn, items: list) -> list:
        """Run fn(*args) for each item as Ray tasks (the shard writer)."""
        task = self.ray.remote(fn)
        return self.ray.get([task.remote(*a) for a in items])


def _named(name: str):
    """ray_task under the stage's name, for Ray Data's operator names."""
    def task(batch: dict, **kw) -> dict:
        return ray_task(batch, **kw)
    task.__name__ = task.__qualname__ = name
    return task
