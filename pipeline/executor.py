"""The Ray Data executor: streaming map_batches over units, actor pools for model stages, Ray tasks for the rest.

Every stage runs the same Runner (pipeline/runner.py); the driver only builds the plan and reads small rows."""

from __future__ import annotations

import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

from mvid.pipeline.config import ConfigError
from mvid.pipeline.runner import named, task
from mvid.pipeline.stage import Ctx, StageParams

log = logging.getLogger("mvid")
ZERO_CPU = 1  # tasks at once of an operator that holds no CPU (the stream's read)


class RunError(RuntimeError):
    """A run-level failure that no per-item record can hold (Ray does not start, the shards cannot be written):
    one line, no trace."""


def cause(e: BaseException) -> BaseException:
    """The exception that a Ray task or actor raised, when e carries it (RayTaskError.cause; an actor whose
    constructor raised dies with its creation task's RayTaskError as ActorDiedError's argument); else e."""
    from ray.exceptions import ActorDiedError, RayTaskError

    if isinstance(e, ActorDiedError) and e.args and isinstance(e.args[0], RayTaskError):
        e = e.args[0]
    if isinstance(e, RayTaskError) and isinstance(e.cause, BaseException):
        return e.cause
    return e


def quiet(path: Path) -> logging.Handler:
    """Ray's own lines go to `path`: its Python loggers' (start-up notes, Ray Data's progress and resource
    warnings), the raylet's notes that the driver prints (such as "N worker processes have been started"), and
    what its C++ core worker writes to file descriptor 2 (such as Ray Data's actor pools' notice about
    constructor arguments in the object store). Python's sys.stderr keeps the terminal, for mvid's progress and
    errors. Returns the file's log handler."""
    import ray._private.worker as rw
    import ray.data  # noqa: F401 - Ray Data adds its console handler on import: replace it after

    # The driver's error listener prints raylet notes through this function (with log_to_driver off, its only use).
    rw.print_to_stdstream = lambda data, ignore_prefix: logging.getLogger("ray").warning("\n".join(data["lines"]))

    path.parent.mkdir(parents=True, exist_ok=True)
    h = logging.FileHandler(path)
    h.setLevel(logging.INFO)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    for name in ("ray", "ray.data"):
        lg = logging.getLogger(name)
        lg.handlers = [x for x in lg.handlers if not isinstance(x, logging.StreamHandler)] + [h]  # files stay
        lg.propagate = False
    if sys.stderr.fileno() == 2:  # once per process
        sys.stderr.flush()
        old, sys.stderr = sys.stderr, os.fdopen(os.dup(2), "w", buffering=1)
        os.dup2(os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT), 2)
        for x in logging.getLogger().handlers:  # mvid's own log lines (mvid -v, warnings) keep the terminal
            if isinstance(x, logging.StreamHandler) and x.stream is old:
                x.setStream(sys.stderr)
    return h


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

    def __init__(
        self,
        address: str | None = None,
        num_cpus: int | None = None,
        object_store_mb: int | None = None,
        log_file: Path | None = None,
        tries: int = 3,
    ):
        """Join the cluster at `address` (or RAY_ADDRESS), else start a local Ray, `tries` times before it gives
        up with one line (a loaded machine can miss Ray's 30 s start-up limit). With `log_file`, Ray's and Ray Data's
        own lines go to that file instead of the console, and workers' output stays in Ray's session logs."""
        import ray

        self.ray = ray
        address = address or os.environ.get("RAY_ADDRESS")
        self.local = address in (None, "", "local")  # a cluster may autoscale: its size is not checked
        handler = quiet(log_file) if log_file else None
        if not ray.is_initialized():
            env = {
                k: v
                for k, v in os.environ.items()
                if k.startswith("MVID_") or k in ("TRANSFORMERS_VERBOSITY", "HF_HUB_DISABLE_PROGRESS_BARS")
            }
            kw = {
                "num_cpus": num_cpus,
                "include_dashboard": False,
                "object_store_memory": object_store_mb and object_store_mb * 2**20,
            }
            for attempt in range(1, tries + 1):
                # Without configure_logging, init clears the "ray" logger's handlers: what Ray logs meanwhile (a
                # note on token authentication) goes to Python's last-resort handler, here the log file.
                last, logging.lastResort = logging.lastResort, handler or logging.lastResort
                try:
                    # "local": without an address Ray would join any cluster running on this machine.
                    ray.init(
                        address=address or "local",
                        runtime_env={"env_vars": env},
                        log_to_driver=not log_file,
                        configure_logging=not log_file,
                        logging_level="WARNING",
                        **(kw if self.local else {}),
                    )
                    break
                except Exception as e:  # noqa: BLE001 - any start-up failure is retried, then named in one line
                    ray.shutdown()
                    cause = " ".join(str(e).split())[:300]
                    if attempt == tries:
                        where = "start a local Ray" if self.local else f"join the Ray cluster at {address}"
                        raise RunError(
                            f"could not {where} ({tries} tries): {type(e).__name__}: {cause}. On a loaded machine, "
                            f"try again or lower ray.num_cpus; or start Ray yourself (`ray start --head`) and pass "
                            f"--set ray.address=auto"
                        ) from None
                    log.warning("Ray did not start (try %d of %d): %s", attempt, tries, cause)
                    time.sleep(5 * attempt)
                finally:
                    logging.lastResort = last
        if handler:
            logging.getLogger("ray").handlers = [handler]
        ctx = ray.data.DataContext.get_current()
        ctx.enable_progress_bars = not log_file  # with a log file, mvid shows its own progress
        ctx.verbose_progress = False
        ctx.raise_original_map_exception = True  # a task's own exception, not a UserCodeException (cause())
        # Task operators share the cluster's CPUs as task slots (zero-CPU ones run ZERO_CPU tasks at once): Ray
        # starts a worker process for each task it can place, and zero-CPU or fractional tasks fit many to a CPU.
        self.slots = max(1, int(ray.cluster_resources().get("CPU", 1)))
        self.ranges: dict[int, Any] = {}  # the unit indices, made once per run (Datasets)

    def tasks(self, cpus: float, share: int = 1) -> dict:
        """map_batches' arguments for a task operator of `cpus` each, one of `share` that run at once: a pool of
        its share of the task slots."""
        size = max(1, self.slots // share) if cpus else ZERO_CPU
        return {"num_cpus": cpus, "compute": self.ray.data.TaskPoolStrategy(size=size)}

    def units(self, n: int, fn, cpus: float = 1.0, **kw):
        """A Dataset of fn(unit index) -> Table (rows of any kind, none to drop the unit) over units 0..n-1, a
        block per unit, as Ray tasks of `cpus` each: nothing passes through the driver. The indices are made
        first (8 bytes a unit), so that no read task waits for a CPU that a stream's actor pools hold."""
        import pyarrow as pa

        def each(batch: dict) -> pa.Table:
            return pa.concat_tables([fn(int(i), **kw) for i in batch["id"]])

        if n not in self.ranges:
            self.ranges[n] = self.ray.data.range(n, override_num_blocks=max(1, min(n, 100_000))).materialize()
        return self.ranges[n].map_batches(each, batch_size=1, batch_format="numpy", **self.tasks(cpus))

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
        unit is one batch, persisted as one part (pipeline/runner.py); the last stage gives (unit, clips, notes).
        Stages from `first` on load their models as their actors start; those before it hold valid parts of every
        unit and load on demand."""
        from mvid.stages import REGISTRY

        share = sum(not REGISTRY[p.name].uses_model for p in stages)  # the task stages run at once
        for i, (p, fp) in enumerate(zip(stages, fps, strict=True)):
            res, cls = p.resources, REGISTRY[p.name]
            last = i == len(stages) - 1
            args = (p.name, p.model_dump(), ctx, fp, force.get(p.name), i >= first, cls.__module__, last)
            kw: dict = dict(batch_size=1, batch_format="pyarrow", zero_copy_batch=True)
            if res.gpus:
                kw["num_gpus"] = res.gpus
            if res.memory_bytes:
                kw["memory"] = res.memory_bytes
            if res.custom:
                kw["resources"] = res.custom
            if cls.uses_model:
                n = res.actors  # a fixed pool, or (min, max) that Ray Data autoscales by backlog
                size = {"size": n} if isinstance(n, int) else {"min_size": n[0], "max_size": n[1]}
                # A dead actor restarts and its batch is retried (Ray Data's default, without end): the Runner's
                # attempt log ends it, recording an input that killed its worker CRASHES times as worker_crash.
                pool = self.ray.data.ActorPoolStrategy(**size)
                ds = ds.map_batches(named(p.name, args), compute=pool, num_cpus=res.cpus, **kw)
            else:  # nothing to load: a Runner per batch, as a task
                ds = ds.map_batches(task(p.name), fn_args=args, **self.tasks(res.cpus, share), **kw)
        return ds

    @staticmethod
    def columns(ds, batch_size: int = 65536):
        """A Dataset's rows to the driver as numpy columns, one batch at a time (many small rows)."""
        yield from ds.iter_batches(batch_size=batch_size, batch_format="numpy")

    @staticmethod
    def tables(ds):
        """A Dataset's blocks to the driver as Arrow tables, one at a time."""
        yield from ds.iter_batches(batch_size=None, batch_format="pyarrow")

    @staticmethod
    def rows(ds, batch_size: int | None = None):
        """Small per-unit rows (counts, shard entries) to the driver, block by block as they come (progress)."""
        for b in ds.iter_batches(batch_size=batch_size, batch_format="pyarrow"):
            yield from b.to_pylist()
