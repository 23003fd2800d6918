"""The Ray Data executor: streaming map_batches over units, actor pools for model stages, Ray tasks for the rest.

Every stage runs the same Runner (pipeline/runner.py); the driver only builds the plan and reads small rows."""

from __future__ import annotations

import os
import warnings

from mvid.pipeline.config import ConfigError
from mvid.pipeline.runner import CRASHES, named, task
from mvid.pipeline.stage import Ctx, StageParams


def shortfall(stages: list[StageParams], have: dict) -> dict:
    """Actor pools hold their resources for the whole streaming run, so the pools at their minimum size and any
    one task must fit at once, or Ray Data waits forever. Returns {Ray resource: (needed, have)} for what
    `have` (Ray's resource totals) lacks."""
    from mvid.stages import REGISTRY

    pools: dict[str, float] = {}
    tasks: dict[str, float] = {}
    for p in stages:
        kind, r = REGISTRY[p.name], p.resources
        if kind.barrier or kind.sink:  # they run after the stream
            continue
        ask = {"CPU": r.cpus, "GPU": r.gpus, "memory": r.memory_bytes, **r.custom}
        for k, v in ask.items():
            if kind.uses_model:
                pools[k] = pools.get(k, 0) + v * r.least
            else:
                tasks[k] = max(tasks.get(k, 0), v)
    need = {k: pools.get(k, 0) + tasks.get(k, 0) for k in pools.keys() | tasks.keys()}
    return {k: (v, have.get(k, 0)) for k, v in need.items() if v > have.get(k, 0) + 1e-6}


class RayExecutor:
    """Ray Data: stages overlap in streaming; the barrier and the sink run after the stream, over units."""

    def __init__(self, address: str | None = None, num_cpus: int | None = None, object_store_mb: int | None = None):
        import ray

        self.ray = ray
        address = address or os.environ.get("RAY_ADDRESS")
        self.local = address in (None, "", "local")  # a cluster may autoscale: its size is not checked
        if not ray.is_initialized():
            env = {
                k: v
                for k, v in os.environ.items()
                if k.startswith("MVID_") or k in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")
            }
            kw = (
                {}
                if not self.local
                else {
                    "num_cpus": num_cpus,
                    "include_dashboard": False,
                    "object_store_memory": object_store_mb and object_store_mb * 2**20,
                }
            )
            # "local": without an address Ray would join any cluster running on this machine.
            ray.init(
                address=address or "local",
                runtime_env={"env_vars": env},
                log_to_driver=True,
                logging_level="WARNING",
                **kw,
            )
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = True
        ctx.verbose_progress = False

    def units(self, n: int, fn, **kw):
        """A Dataset of fn(unit index) -> Table (rows of any kind, none to drop the unit) over units 0..n-1, a
        block per unit, as Ray tasks: nothing passes through the driver."""
        import pyarrow as pa

        def each(batch: dict) -> pa.Table:
            return pa.concat_tables([fn(int(i), **kw) for i in batch["id"]])

        ds = self.ray.data.range(n, override_num_blocks=max(1, min(n, 100_000)))
        return ds.map_batches(each, batch_size=1, batch_format="numpy")

    def check(self, stages: list[StageParams]) -> None:
        """On a local Ray: the actor pools at their minimum size and the largest task must fit."""
        short = self.local and shortfall(stages, self.ray.cluster_resources())
        if short:

            def amount(k, v):
                return f"{v / 2**30:g} GB" if k == "memory" else f"{v:g}"

            lack = ", ".join(f"{k} needs {amount(k, v)}, has {amount(k, h)}" for k, (v, h) in sorted(short.items()))
            raise ConfigError(
                f"the local Ray is too small for the stages' actor pools (their minimum sizes) and "
                f"their largest task at once: {lack}; lower stages' resources (cpus, gpus, "
                f"memory_gb, actors) or raise ray.num_cpus"
            )

    def stream(self, ds, stages: list[StageParams], fps: list[str], ctx: Ctx, force: dict, first: int = 0):
        """The stream stages over a Dataset of units: model stages as actor pools, the others as tasks; each
        unit is one batch, persisted as one part (pipeline/runner.py). Stages from `first` on load their
        models as their actors start; those before it hold valid parts of every unit and load on demand."""
        from mvid.stages import REGISTRY

        for i, (p, fp) in enumerate(zip(stages, fps, strict=True)):
            res = p.resources
            args = (p.name, p.model_dump(), ctx, fp, force.get(p.name), i >= first)
            kw = dict(batch_size=1, batch_format="pyarrow", num_cpus=res.cpus, zero_copy_batch=True)
            if res.gpus:
                kw["num_gpus"] = res.gpus
            if res.memory_bytes:
                kw["memory"] = res.memory_bytes
            if res.custom:
                kw["resources"] = res.custom
            if REGISTRY[p.name].uses_model:
                n = res.actors  # a fixed pool, or (min, max) that Ray Data autoscales by backlog
                size = {"size": n} if isinstance(n, int) else {"min_size": n[0], "max_size": n[1]}
                # A dead actor restarts and its batch is retried, a bounded number of times (Ray Data's default
                # is forever; tasks keep Ray's 3): after CRASHES deaths the Runner records the culprit as
                # worker_crash. Ray 2.60 deprecates remote args passed as keywords but names no replacement.
                with warnings.catch_warnings():
                    warnings.filterwarnings("ignore", "`ray_remote_args` is deprecated")
                    ds = ds.map_batches(
                        named(p.name),
                        compute=self.ray.data.ActorPoolStrategy(**size),
                        fn_constructor_args=args,
                        max_task_retries=CRASHES + 2,
                        **kw,
                    )
            else:  # nothing to load: a Runner per batch, as a task
                ds = ds.map_batches(task(p.name), fn_args=args, **kw)
        return ds

    @staticmethod
    def rows(ds, batch_size: int = 256):
        """Small per-unit rows (counts, shard entries) to the driver, one batch at a time."""
        for b in ds.iter_batches(batch_size=batch_size, batch_format="pyarrow"):
            yield from b.to_pylist()
