"""The Pipeline: the config's stream stages run over the units of the input, then the global selection, then
one shard per unit. The driver holds config, counts and per-shard rows, never per-clip data."""

from __future__ import annotations

import json
import logging
import os
import re
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import cast

import numpy as np
from tqdm import tqdm

from mvid.models.base import ModelLoadError
from mvid.pipeline.config import Config, ConfigError
from mvid.pipeline.executor import RunError
from mvid.pipeline.inputs import keys, listed, read_unit, write_duplicates, write_units
from mvid.pipeline.runner import timings
from mvid.pipeline.stage import Ctx, Stage, reject_of
from mvid.pipeline.store import Parts, atomic_write, digest
from mvid.schemas import record as R
from mvid.schemas import shard as S
from mvid.stages import REGISTRY
from mvid.stages.select import Select, bins, cutoff, within
from mvid.stages.shard import Shard

log = logging.getLogger("mvid")


@dataclass
class Summary:
    videos: int = 0
    clips: int = 0
    shards: int = 0
    failures: Counter = field(default_factory=Counter)
    drops: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    failed: list[dict] = field(default_factory=list)  # the failure records of kind error

    def text(self, show: int = 20) -> str:
        lines = [
            f"videos in: {self.videos}   clips out: {self.clips}   shards: {self.shards}   "
            f"wall time: {self.seconds:.1f}s"
        ]
        for title, c in (("failures", self.failures), ("dropped by policy", self.drops)):
            if c:
                lines.append(f"{title}: " + ", ".join(f"{k}={v}" for k, v in sorted(c.items())))
        lines += [f"  [{j['stage']}] {j['code']}: {j['path']}: {j['message']}" for j in self.failed[:show]]
        if len(self.failed) > show:
            lines.append(f"  ... more in {S.FAILURES}/")
        return "\n".join(lines)


class Pipeline:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.ctx = Ctx(cfg.work_dir.resolve(), cfg.output_dir.resolve())
        self.stages: list[Stage] = [REGISTRY[p.name](p, self.ctx) for p in cfg.stages]
        self.sink = cast(Shard, self.stages[-1])  # the config puts the sink last, the barrier before it
        self.select = cast(Select | None, next((s for s in self.stages if s.barrier), None))
        self.stream = [s for s in self.stages if not (s.barrier or s.sink)]

    def preflight(self) -> None:
        """Checks before any video is touched: inputs exist, every model's files resolve."""
        if not self.cfg.input:
            raise ConfigError("no input: set `input:` in the config or pass --input")
        for s in self.stages:
            s.preflight()

    def sources(self) -> dict[str, dict[str, str]]:
        """Each model of the run: where its weights came from and their licence (the manifest records them)."""
        return {a.name: a.provenance() for s in self.stages for a in s.adapters().values()}

    def units(self, ex) -> tuple[int, int]:
        """The listing as units, then its duplicates (path, given id, content) from keys made in Ray tasks."""
        c, per = self.cfg, self.sink.p.videos
        assert c.input, "preflight checks the input first"
        n, entries = write_units(c.input, self.ctx.work, per, c.follow_symlinks, c.input_root)
        dups = write_duplicates(self.ctx.work, per, ex.columns(ex.units(n, _keys, work=self.ctx.work)))
        log.info("%d input entries in %d units from %s, %d duplicates", entries, n, c.input, dups)
        return n, entries

    def run(self, ex) -> Summary:
        t = time.time()
        self.preflight()
        ex.check([s.p for s in self.stream])
        n, videos = self.units(ex)
        self.advance(ex, n, self.stream)
        return self.write(ex, n, videos, t)

    def rerun(self, ex, name: str, select: str = "missing", ids: list[str] | None = None) -> int:
        """Rerun one stage: all, missing or failed items, or the units holding the given ids. Returns the units
        it ran on (the sink: the clips it wrote). Stages before it are taken from their parts."""
        names = [s.name for s in self.stages]
        if name not in names:
            raise ConfigError(f"stage {name!r} is not in this config: {names}")
        self.preflight()
        i = names.index(name)
        ex.check([s.p for s in self.stream[: i + 1]])
        n, videos = self.units(ex)
        if i >= len(self.stream):
            return self.write(ex, n, videos, time.time()).clips
        force = set(ids) if ids else None if select == "missing" else select
        return self.advance(ex, n, self.stream[: i + 1], {name: force} if force else {})

    def advance(self, ex, n: int, stages: list[Stage], force: dict | None = None) -> int:
        """Stream the units that are not done with `stages` through them; returns how many ran. A unit whose
        parts are all valid is skipped before any stage sees it; a run with none left starts no actor."""
        force = force or {}
        names = [s.name for s in stages]
        scan = {"work": self.ctx.work, "stages": names, "fps": [s.fingerprint() for s in stages], "forced": bool(force)}
        k, first = 0, len(stages)
        for r in ex.rows(ex.units(n, _first, **scan)):
            k, first = k + 1, min(first, r["first"])
        log.info("%d of %d units to run through %s", k, n, ", ".join(names))
        if k:
            # Models load as their actors start, in parallel, from the first stage that some unit needs.
            # Counting holds no CPU: a CPU for it would be budgeted away from the stages and stall them.
            ds = ex.stream(
                ex.units(n, _pending, cpus=0, **scan), [s.p for s in stages], scan["fps"], self.ctx, force, first
            ).map_batches(_counts, batch_format="pyarrow", num_cpus=0)
            _stream(ex, ds, progress(k, names[-1] if len(names) == 1 else "stages"))
        return k

    def write(self, ex, n: int, videos: int, t0: float) -> Summary:
        """The global selection, then one shard per unit, then the manifest; the driver sees per-shard rows."""
        chain = {
            "work": self.ctx.work,
            "stages": [s.name for s in self.stream],
            "fps": [s.fingerprint() for s in self.stream],
        }
        sel, cut, key, k, pool = self.select, None, "all", 0, 0
        if sel:
            narrow = ex.units(n, _pool, select=sel.p.model_dump(), fp=sel.fingerprint(), ctx=self.ctx, **chain)
            narrow = narrow.materialize()
            pool = narrow.count()
            k = sel.n(pool)
            cut = cutoff(lambda: pool, lambda a, b: _hist(ex, narrow, a, b), lambda a, b: _fetch(ex, narrow, a, b), k)
            key = digest([sel.fingerprint(), cut, k, pool])
            log.info("select: %s of %d scored clips", "all" if cut is None else k, pool)
        # Shards are replaced in place: the old manifest goes first, so that no manifest lists a shard whose
        # bytes it does not describe, and the new one comes last.
        (self.ctx.out / S.MANIFEST).unlink(missing_ok=True)
        ds = ex.units(
            n,
            _shard,
            sink=self.sink.p.model_dump(),
            select=sel and sel.p.model_dump(),
            cut=(cut, k, pool),
            key=digest([key, self.sink.fingerprint()]),
            ctx=self.ctx,
            **chain,
        )
        try:
            with progress(n, "shards") as bar:
                done = []
                for r in ex.rows(ds):
                    done.append(json.loads(r["done"]))
                    bar.update()
            done.sort(key=lambda d: d["entry"]["name"])
            man = self.sink.finish(done, videos, self.sources())
        except Exception as e:  # disk full, a failing mount; through Ray only the OSError's text survives
            m = re.search(r"OSError: (\[Errno \d+\] [^\n]+)", str(e))
            if not isinstance(e, OSError) and not m:
                raise
            cause = m.group(1) if m else e
            raise RunError(
                f"writing the output failed ({cause}); no manifest lists a partial "
                f"shard. Run `mvid run` again once {self.ctx.out} is writable."
            ) from None
        t, wall = timings(self.ctx.work), round(time.time() - t0, 2)
        (self.ctx.work / "timings").mkdir(parents=True, exist_ok=True)
        with open(self.ctx.work / "timings" / "runs.jsonl", "a") as f:  # one line per finished run
            f.write(json.dumps({"wall_s": wall}) + "\n")
        walls = [json.loads(x)["wall_s"] for x in (self.ctx.work / "timings" / "runs.jsonl").read_text().splitlines()]
        rule = sel and ", ".join(f"{k}={v}" for k, v in sel.p.model_dump().items() if k in ("top_n", "quantile") and v)
        run = S.Run(
            work_dir=str(self.ctx.work),
            wall_s=wall,
            runs=len(walls),
            all_wall_s=round(sum(walls), 2),
            stages={
                s.name: t[s.name].model_copy(update={"of": "videos" if s.key == "video_id" else "clips"})
                for s in self.stages
                if s.name in t
            },
            selection=sel and f"{rule}: {man.samples} kept of {pool} scored",
        )
        atomic_write(self.ctx.out / S.RUN, run.model_dump_json(indent=1).encode())
        kinds: Counter[str] = Counter()
        for d in done:
            kinds.update(d["stats"]["kinds"])
        split = lambda kind: Counter({k.split(":", 1)[1]: v for k, v in kinds.items() if k.startswith(kind + ":")})
        failed = sorted((j for d in done for j in d["errors"]), key=lambda j: (str(j["path"]), j["stage"]))
        return Summary(
            videos=videos,
            clips=man.samples,
            shards=len(man.shards),
            failures=split("error"),
            drops=split("drop"),
            seconds=time.time() - t0,
            failed=failed,
        )


def progress(total: int, what: str):
    """mvid's own progress on stderr: a bar on a terminal, a line every 30 s in a log."""
    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=what, unit="unit", file=sys.stderr, mininterval=0.5 if tty else 30, dynamic_ncols=tty)


def _stream(ex, ds, bar) -> None:
    """Run a streaming Dataset, with a model that fails to load in a Ray actor reported as the one line it raised."""
    clips = 0
    try:
        with bar:
            for r in ex.rows(ds):
                clips += r["clips"]
                bar.set_postfix(clips=clips, refresh=False)
                bar.update()
    except ModelLoadError:
        raise
    except Exception as e:
        if m := re.search(r"ModelLoadError: (.+)", str(e)):
            raise ModelLoadError(m.group(1).strip()) from None
        raise


def _counts(t):
    import pyarrow as pa

    return pa.table({"unit": t["unit"], "clips": [sum(len(v["clips"]) for v in u) for u in t["videos"].to_pylist()]})


def _keys(i: int, work: Path):
    """Unit i's duplicate keys (pipeline/inputs.py keys), kept as a part of its own (work/stages/keys/) while the
    listing and the files' sizes and mtimes are unchanged, so that a rerun reads no video again."""
    import pyarrow as pa

    u = listed(work, i)
    stats: list[tuple[int, int] | None] = []
    for v in u["videos"]:
        try:
            st = os.stat(v["path"])
            stats.append((st.st_size, st.st_mtime_ns))
        except OSError:
            stats.append(None)
    k, parts = digest([u["_k"], stats]), Parts(work, "keys")
    if parts.valid(u["unit"], k, "1"):
        t = parts.read(u["unit"])
    else:
        t = keys(u)
        parts.write(u["unit"], t, {"in": k, "fp": "1", "out": k})
    return t.append_column("unit", pa.array(np.full(t.num_rows, i), pa.int64()))


def _todo(i: int, work: Path, stages: list[str], fps: list[str], forced: bool) -> int:
    """The first of `stages` that holds no valid part of unit i (len(stages) when all do)."""
    return 0 if forced else _valid(work, read_unit(work, i, head=True), stages, fps)[0]


def _first(i: int, **scan):
    """Unit i's first stage to run, as a row; no row when it is done."""
    import pyarrow as pa

    first = _todo(i, **scan)
    return pa.table({"first": pa.array([first] if first < len(scan["stages"]) else [], pa.int64())})


def _pending(i: int, **scan):
    """Unit i as a row to stream, when some stage has to run on it."""
    return R.table([read_unit(scan["work"], i)] if _todo(i, **scan) < len(scan["stages"]) else [])


def _valid(work: Path, u: dict, stages: list[str], fps: list[str]) -> tuple[int, str]:
    """How many stages, from the first, hold a valid part of the unit (store.py), and its digest after them."""
    k = u["_k"]
    for i, (s, fp) in enumerate(zip(stages, fps, strict=True)):
        m = Parts(work, s).valid(u["unit"], k, fp)
        if not m:
            return i, k
        k = m["out"]
    return len(stages), k


def _chain(i: int, work: Path, stages: list[str], fps: list[str]) -> tuple[dict, int, str]:
    """Unit i's name and digest, how many of `stages` hold a valid part of it, and the digest of what they made
    of it (the input's when some has not run): from the inputs' head and the parts' footers alone."""
    u = read_unit(work, i, head=True)
    done, k = _valid(work, u, stages, fps)
    return u, done, k if done == len(stages) else u["_k"]


def _leaf(i: int, u: dict, done: int, work: Path, stages: list[str]) -> dict:
    """Unit i as the last stage left it; without valid parts, its videos fail as not_processed."""
    if done == len(stages):
        return R.rows(Parts(work, stages[-1]).read(u["unit"]))[0]
    u = read_unit(work, i)
    for v in u["videos"]:
        if not v["failed"]:
            v["failed"], v["rejects"] = (
                True,
                [reject_of(v, "not_processed", "the stages have not run on it: run `mvid run` again", stage="input")],
            )
    return u


def _pool(i: int, select: dict, fp: str, ctx: Ctx, work: Path, stages: list[str], fps: list[str]):
    """Unit i's clips that compete for the global cut, as (order key, clip_id) rows, kept as a part of its own
    (work/stages/select/) so that a rerun reads them instead of the unit's records."""
    import pyarrow as pa

    from mvid.stages.select import SelectParams, order

    u, done, k = _chain(i, work, stages, fps)
    parts = Parts(work, "select")
    if parts.valid(u["unit"], k, fp):
        return parts.read(u["unit"])
    sel = Select(SelectParams(**select), ctx)
    clips = [c for v in _leaf(i, u, done, work, stages)["videos"] for c in sel.pool(v)]
    t = pa.table(
        {
            "u": pa.array(order([c["clip_score"] for c in clips]), pa.uint64()),
            "c": pa.array([c["clip_id"] for c in clips], pa.string()),
        }
    )
    parts.write(u["unit"], t, {"in": k, "fp": fp, "out": k})
    return t


def _hist(ex, narrow, prefix: int, shift: int):
    """stages.select.bins over the whole pool, summed on the driver (65,536 counts at most)."""
    import pyarrow as pa

    def count(t):
        b, n = bins(t["u"].to_numpy(), prefix, shift)
        return pa.table({"b": b, "n": n})

    h = np.zeros(1 << 16, np.int64)
    for r in ex.rows(narrow.map_batches(count, batch_format="pyarrow", batch_size=None), 4096):
        h[r["b"]] += r["n"]
    return h


def _fetch(ex, narrow, prefix: int, shift: int):
    def pick(t):
        return t.filter(within(t["u"].to_numpy(), prefix, shift))

    return [(int(r["u"]), r["c"]) for r in ex.rows(narrow.map_batches(pick, batch_format="pyarrow", batch_size=None))]


def _shard(
    i: int,
    sink: dict,
    select: dict | None,
    cut: tuple,
    key: str,
    ctx: Ctx,
    work: Path,
    stages: list[str],
    fps: list[str],
):
    """Unit i's shard: its kept clips (the selection applied: cut, n, pool) and every record of what was
    dropped. A shard already written from the same records and selection is kept without reading them."""
    import pyarrow as pa

    from mvid.stages.select import SelectParams
    from mvid.stages.shard import ShardParams

    u, done, k = _chain(i, work, stages, fps)
    shard, key = Shard(ShardParams(**sink), ctx), digest([k, key])
    made = shard.current(i, key)
    if not made:
        videos = _leaf(i, u, done, work, stages)["videos"]
        if select:
            sel = Select(SelectParams(**select), ctx)
            for v in videos:
                if v["failed"]:
                    continue
                res = sel.decide(v, *cut)
                v["clips"], v["rejects"] = (
                    res.records[0]["clips"],
                    v["rejects"] + [{**j, "stage": "select"} for j in res.rejects],
                )
        made = shard.write(i, videos, key)
    return pa.table({"done": [json.dumps(made)]})
