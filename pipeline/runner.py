"""Runs one stage on one unit: cache hit or compute, per-item failure records, one part per unit.

The same code runs as a Ray Data actor (model stages) or task; tests call it directly."""

from __future__ import annotations

import importlib
import json
import logging
import os
import resource
import sys
import tempfile
import time
import traceback
from collections import Counter
from pathlib import Path

import pyarrow as pa

from mvid.pipeline.media import Media
from mvid.pipeline.records import edit
from mvid.pipeline.stage import Ctx, HaltError, Result, StageError, reject_of
from mvid.pipeline.store import Parts, digest
from mvid.schemas import record as R
from mvid.schemas.shard import StageTime

log = logging.getLogger("mvid")
CRASHES = 3  # worker deaths on one input before it is recorded as worker_crash; Ray retries a batch past that
NOTES = "_n"  # a column that the stream's units carry from stage to stage: what each stage did to them (breaker)
VIDEO_ONLY = set(R.VIDEO) - {"has_audio"}  # has_audio is both: the clip's own value wins in a merged clip


def error_code(e: BaseException) -> str:
    if isinstance(e, StageError):
        return e.code
    if isinstance(e, MemoryError) or type(e).__name__ == "OutOfMemoryError" or "out of memory" in str(e).lower():
        return "oom"
    return "exception_" + type(e).__name__


def unexpected(code: str) -> bool:
    """A failure that no reason code of mvid's explains (what the failure breaker counts): an exception, an
    out-of-memory batch, a worker that died."""
    return code.startswith("exception_") or code in ("oom", "worker_crash")


def run_id() -> str:
    """The Ray job this worker serves (one per driver), or "local" outside Ray."""
    ray = sys.modules.get("ray")
    return ray.get_runtime_context().get_job_id() if ray and ray.is_initialized() else "local"


def log_time(ctx: Ctx, stage: str, keys: list[str], seconds: float, what: str = "batch", items: int = 0) -> None:
    """Append where and how long a stage ran on how many items, and the process's peak RSS so far, to
    work/timings/<stage>/, one file per process (`timings` below sums them). Kept out of the stage outputs, which
    must not change between runs."""
    ray = sys.modules.get("ray")
    node = ray.get_runtime_context().get_node_id() if ray and ray.is_initialized() else "local"
    d = ctx.work / "timings" / stage
    d.mkdir(parents=True, exist_ok=True)
    with open(d / f"{node[:12]}-{os.getpid()}.jsonl", "a") as f:
        rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024  # KiB on Linux
        f.write(
            json.dumps(
                {"what": what, "node": node, "keys": keys, "items": items, "seconds": round(seconds, 4), "rss_mb": rss}
            )
            + "\n"
        )


def timings(work: Path) -> dict[str, StageTime]:
    """Per stage, over every run on this work folder: items, batches, seconds in batches and in model set-up, and
    the largest peak RSS of its workers. Streams the files: a line per unit and stage."""
    out = {}
    for d in sorted((work / "timings").glob("*/")):
        t = StageTime(items=0, batches=0, seconds=0.0, setup_s=0.0, rss_mb=0)
        for p in d.glob("*.jsonl"):
            with open(p) as f:
                for line in f:
                    e = json.loads(line)
                    t.rss_mb = max(t.rss_mb, e["rss_mb"])
                    if e["what"] == "setup":
                        t.setup_s += e["seconds"]
                    else:
                        t.items += e.get("items", 0)
                        t.batches += 1
                        t.seconds += e["seconds"]
        out[d.name] = t.model_copy(update={"seconds": round(t.seconds, 2), "setup_s": round(t.setup_s, 2)})
    return out


def merged(video: dict, clip: dict) -> dict:
    """A clip joined with its video's fields, as clip stages see it."""
    return {**{k: v for k, v in video.items() if k not in ("clips", "rejects")}, **clip}


class Runner:
    """Ray Data map_batches callable over units (one per batch). Models load at once when `eager` (some unit will
    need them), else on the first unit that does, so a stage whose parts are all valid loads none. `force`:
    None, "all", "failed", or a set of video/clip ids whose units are recomputed (mvid stage). The stream's `last`
    stage returns what the driver counts (unit, clips, notes), not the units."""

    def __init__(
        self,
        stage_name: str,
        params: dict,
        ctx: Ctx,
        fp: str,
        force=None,
        eager: bool = False,
        module: str = "",
        last: bool = False,
    ):
        from mvid.stages import REGISTRY

        if module:  # a plugin's stage registers itself when its module is imported (config `plugins`)
            importlib.import_module(module)
        cls = REGISTRY[stage_name]
        self.stage = cls(cls.Params(**params), ctx)
        self.parts, self.fp, self.force, self.loaded = Parts(ctx.work, stage_name), fp, force, False
        self.last = last
        if eager:
            self.setup()

    def __call__(self, batch: pa.Table) -> pa.Table:
        units = R.rows(batch)
        outs, notes = [], []
        for u in units:
            out, note = self.unit(u)
            outs.append(out)
            notes.append(json.dumps({**json.loads(u.get(NOTES) or "{}"), self.stage.name: note}))
        if self.last:
            clips = [sum(len(v["clips"]) for v in o["videos"]) for o in outs]
            return pa.table({"unit": [o["unit"] for o in outs], "clips": clips, NOTES: notes})
        return R.table(outs).append_column(NOTES, pa.array(notes, pa.string()))

    def unit(self, u: dict) -> tuple[dict, dict]:
        """The unit as this stage leaves it, from its valid part or computed and stored; and what the stage did
        this time: items it ran, and its unexpected failures by code with one example."""
        name = u["unit"]
        if self.parts.valid(name, u["_k"], self.fp) and not self.forced(u):
            return R.rows(self.parts.read(name))[0], {"items": 0, "errors": {}}
        t = time.perf_counter()
        live = [v for v in u["videos"] if not v["failed"]]
        items = len(live) if self.stage.key == "video_id" else sum(len(v["clips"]) for v in live)
        self.note: dict = {"items": items, "errors": Counter()}
        videos = self.process(u)
        out = {"unit": name, "_k": digest([u["_k"], self.fp, videos]), "videos": videos}
        self.parts.write(name, R.table([out]), {"in": u["_k"], "fp": self.fp, "out": out["_k"]})
        log_time(self.stage.ctx, self.stage.name, [name], time.perf_counter() - t, items=items)
        return out, self.note

    def forced(self, u: dict) -> bool:
        f = self.force
        if not f:
            return False
        if f == "all":
            return True
        if f == "failed":
            return any(
                j["kind"] == "error" and j["stage"] == self.stage.name
                for v in R.rows(self.parts.read(u["unit"]))[0]["videos"]
                for j in v["rejects"]
            )
        return any(v["video_id"] in f or any(c["clip_id"] in f for c in v["clips"]) for v in u["videos"])

    def process(self, u: dict) -> list[dict]:
        st, videos = self.stage, u["videos"]
        live = [v for v in videos if not v["failed"]]
        if st.key == "video_id":
            for v, res in zip(live, self.guarded(u["unit"], live), strict=True):
                self.stamp(res)
                if res.records:
                    R.check(res.records[0], R.VIDEO, f"stage {st.name}")
                    v.update(res.records[0])
                else:
                    v["failed"], v["clips"] = True, []
                v["rejects"] = v["rejects"] + res.rejects
            return videos
        items = [(v, merged(v, c)) for v in live for c in v["clips"]]
        if st.media and items:
            with tempfile.TemporaryDirectory() as tmp, Media(st.ctx.work) as md:
                results = self.guarded(u["unit"], [self.unpacked(it, md, Path(tmp)) for _, it in items])
        else:
            results = self.guarded(u["unit"], [it for _, it in items])
        clips: dict[int, list[dict]] = {id(v): [] for v in live}
        for (v, it), res in zip(items, results, strict=True):
            self.stamp(res)
            v["rejects"] = v["rejects"] + res.rejects
            for r in res.records:
                R.check(r, R.COLUMNS, f"stage {st.name}")
                clips[id(v)].append({k: it[k] if k in st.media else r.get(k) for k in R.CLIP})
        for v in live:
            v["clips"] = clips[id(v)]
        return videos

    def unpacked(self, it: dict, md: Media, tmp: Path) -> dict:
        """The clip with its media fields as files under tmp."""
        out = dict(it)
        for f in self.stage.media:
            v = it.get(f)
            out[f] = v and (
                [md.unpack(it["media"], m, tmp) for m in v] if isinstance(v, list) else md.unpack(it["media"], v, tmp)
            )
        return out

    def stamp(self, res: Result) -> None:
        for j in res.rejects:
            j["stage"] = self.stage.name
            if j["kind"] == "error":
                self.count(j["code"], f"{j['path']}: {j['message']}")
        missing = [
            (c, h.get(self.stage.key) or h.get("clip_id"))
            for r in res.records
            for c in self.stage.produces
            if c not in R.NULLABLE
            for h in (r.get("clips") or [] if self.stage.key == "video_id" and c not in R.VIDEO else [r])
            if h.get(c) is None
        ]
        if missing:
            raise R.SchemaError(f"stage {self.stage.name} did not make {missing[:3]} (its `produces`)")

    def guarded(self, unit: str, items: list[dict]) -> list[Result]:
        """Run items, surviving inputs that kill the worker (a decoder segfault, the kernel's OOM killer). A unit
        that was started and never stored ran into a dead worker: its items then run one at a time, each start
        and finish logged, and one that was started CRASHES times without finishing is recorded as worker_crash."""
        if not items:
            return []
        self.setup()
        key, run = self.stage.key, run_id()
        starts = self.parts.starts(unit, run)
        if not starts:
            self.parts.start(unit, "batch", run)
            return self.run(items)
        if starts.count("retry") >= 2 * CRASHES:  # deaths outside any one item: Ray would retry it forever
            raise HaltError(f"stage {self.stage.name}: the worker of unit {unit} died {starts.count('retry')} times")
        self.parts.start(unit, "retry", run)
        out = []
        for it in items:
            k = it[key]
            n = starts.count("batch") + starts.count(k) - starts.count("ok " + k)
            if n >= CRASHES:
                out.append(Result.reject(it, "worker_crash", f"its worker died {n} times while processing it"))
                continue
            self.parts.start(unit, k, run)
            out.append(self.run([it])[0])
            self.parts.start(unit, "ok " + k, run)
        return out

    def setup(self) -> None:
        if not self.loaded:
            t = time.perf_counter()
            self.stage.setup()
            self.loaded = True
            if self.stage.uses_model:
                log_time(self.stage.ctx, self.stage.name, [], time.perf_counter() - t, "setup")

    def run(self, recs: list[dict]) -> list[Result]:
        """Process items in batches of batch_size; on an exception (an OOM included) split a batch and retry,
        down to single items."""
        n = self.stage.p.batch_size
        if len(recs) > n:
            return [x for i in range(0, len(recs), n) for x in self.run(recs[i : i + n])]
        if not recs:
            return []
        need = [c for c in self.stage.requires if c not in R.NULLABLE]
        bad = {i: m for i, r in enumerate(recs) if (m := [c for c in need if r.get(c) is None])}
        if bad:
            good = iter(self.run([r for i, r in enumerate(recs) if i not in bad]))
            return [
                Result.reject(r, "missing_input", f"needs columns {bad[i]}") if i in bad else next(good)
                for i, r in enumerate(recs)
            ]
        try:
            out = self.stage.process_batch(recs)
        except (R.SchemaError, HaltError):
            raise
        except Exception as e:  # noqa: BLE001 - a failure becomes a record (the breaker stops a run of them)
            if len(recs) == 1:
                return [self.failed(recs[0], e)]
        else:
            if len(out) != len(recs):
                raise HaltError(f"stage {self.stage.name} returned {len(out)} results for {len(recs)} inputs")
            return out
        # Retried outside the except block: the exception's frames (and the failed batch's tensors) are freed.
        mid = len(recs) // 2
        return self.run(recs[:mid]) + self.run(recs[mid:])

    def count(self, code: str, where: str) -> None:
        """An unexpected failure, for the breaker: by code, with the first example."""
        if unexpected(code):
            self.note["errors"][code] += 1
            self.note.setdefault("example", where[:300])

    def failed(self, rec: dict, e: Exception) -> Result:
        """An item that failed alone: rejected with its reason, or, in a stage of one modality, kept without that
        caption (reasons.<A|V|S> = <stage>_failed); either way it counts for the breaker."""
        st, code = self.stage, error_code(e)
        msg = e.message if isinstance(e, StageError) else f"{type(e).__name__}: {e}"
        if not isinstance(e, StageError):
            log.warning("%s failed on %s: %s", st.name, rec.get(st.key), msg)
        if not st.modality:
            trace = None if isinstance(e, StageError) else traceback.format_exc(limit=4)[-2000:]
            return Result(rejects=[reject_of(rec, code, msg[:1000], trace=trace)])
        self.count(code, f"{rec.get('path')}: {msg}")
        out = edit(rec)
        out["reasons"][st.modality] = f"{st.name}_failed"
        return Result.ok(out)


def named(stage: str, args: tuple):
    """Runner under the stage's name (the dashboard shows MapBatches(<stage>)), its arguments held by the class:
    Ray keeps an actor's constructor arguments in the object store, where a restart after a crash may lose them."""

    def init(self):
        Runner.__init__(self, *args)

    return type(stage, (Runner,), {"__init__": init})


def task(stage: str):
    """A Runner per batch, for stages without models (Ray tasks), under the stage's name."""

    def run(batch: pa.Table, *args) -> pa.Table:
        return Runner(*args)(batch)

    run.__name__ = run.__qualname__ = stage
    return run
