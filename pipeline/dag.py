"""The Pipeline: the config's stream stages run over the units of the input, then the global selection, then
one shard per unit. The driver holds config, counts and per-shard rows, never per-clip data."""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import resource
import sys
import time
from collections import Counter
from dataclasses import dataclass, field
from itertools import islice
from pathlib import Path
from typing import cast

import numpy as np
from tqdm import tqdm

from mvid.models.base import ModelMissingError
from mvid.pipeline import cache
from mvid.pipeline.config import BreakerConfig, Config, ConfigError
from mvid.pipeline.executor import RunError, cause
from mvid.pipeline.inputs import LISTING, inputs_digest, read_unit, stats, unit_keys, write_duplicates, write_units
from mvid.pipeline.lock import Lock
from mvid.pipeline.runner import NOTES, timings
from mvid.pipeline.stage import Ctx, HaltError, Stage, reject_of
from mvid.pipeline.store import Parts, atomic_write, digest
from mvid.schemas import record as R
from mvid.schemas import shard as S
from mvid.stages import REGISTRY
from mvid.stages.select import Select, bins, cutoff, within
from mvid.stages.shard import Shard

log = logging.getLogger("mvid")
BREAKER = "breaker.json"  # in the work folder: the stage the failure breaker stopped a run in
SEAL = "sealed.json"  # in the work folder: what the last complete `mvid run` made the output from
SEALED = ("videos", "clips", "shards", "failures", "drops")  # the Summary fields a seal keeps
HIST_ROWS = 1 << 20  # pool rows a selection task bins at once


@dataclass
class Summary:
    videos: int = 0
    clips: int = 0
    shards: int = 0
    failures: Counter = field(default_factory=Counter)
    drops: Counter = field(default_factory=Counter)
    seconds: float = 0.0
    out: Path | None = None  # the output folder, whose failure files give the examples

    def text(self, show: int = 20) -> str:
        """Totals, counts by reason, and the first `show` failed items, read back from the failure files."""
        lines = [
            f"videos in: {self.videos}   clips out: {self.clips}   shards: {self.shards}   "
            f"wall time: {self.seconds:.1f}s"
        ]
        for title, c in (("failures", self.failures), ("dropped by policy", self.drops)):
            if c:
                lines.append(f"{title}: " + ", ".join(f"{k}={v}" for k, v in sorted(c.items())))
        errors = (j for j in S.failures(self.out) if j["kind"] == "error") if self.out else None
        first: list[dict] = list(islice(errors, show + 1)) if errors else []
        lines += [f"  [{j['stage']}] {j['code']}: {j['path']}: {j['message']}" for j in first[:show]]
        if len(first) > show:
            lines.append(f"  ... more in {S.FAILURES}/")
        return "\n".join(lines)


class Breaker:
    """Stops the run (HaltError) once a stage's unexpected failures (runner.unexpected) pass max_error_rate of the
    items it ran, after at least min_items: a stage bug becomes one line, not an error record per item. Fed the
    units' notes as they leave the stream; holds a count per stage and code."""

    def __init__(self, cfg: BreakerConfig, work: Path):
        self.cfg, self.file = cfg, work / BREAKER
        self.items: Counter[str] = Counter()
        self.errors: dict[str, Counter[str]] = {}
        self.example: dict[str, str] = {}

    def add(self, notes: dict) -> None:
        for stage, n in notes.items():
            self.items[stage] += n["items"]
            self.errors.setdefault(stage, Counter()).update(n["errors"])
            if "example" in n:
                self.example.setdefault(stage, n["example"])
            items, bad = self.items[stage], sum(self.errors[stage].values())
            if items >= self.cfg.min_items and bad > self.cfg.max_error_rate * items:
                atomic_write(self.file, json.dumps({"stage": stage}).encode())
                code, count = self.errors[stage].most_common(1)[0]
                raise HaltError(
                    f"stage {stage} failed on {bad} of {items} items ({bad / items:.0%}, over max_error_rate "
                    f"{self.cfg.max_error_rate:g}): {code.removeprefix('exception_')} {count} times, e.g. "
                    f"{self.example.get(stage)}. Fix it, then `mvid run` again: the items that failed are rerun"
                )


class Pipeline:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.ctx = Ctx(cfg.work_dir.resolve(), cfg.output_dir.resolve())
        self.stages: list[Stage] = [REGISTRY[p.name](p, self.ctx) for p in cfg.stages]
        self.sink = cast(Shard, self.stages[-1])  # the config puts the sink last, the barrier before it
        self.select = cast(Select | None, next((s for s in self.stages if s.barrier), None))
        self.stream = [s for s in self.stages if not (s.barrier or s.sink)]
        self.locks: list[Lock] = []
        self.inputs = ""  # the inputs' digest, once current() took it

    def preflight(self) -> None:
        """Checks before any video is touched: inputs exist, every model's files resolve."""
        if not self.cfg.input:
            raise ConfigError("no input: set `input:` in the config or pass --input")
        for s in self.stages:
            s.preflight()

    @contextlib.contextmanager
    def locked(self):
        """Hold the work and output folders for the run (pipeline/lock.py); a second mvid run on either stops
        with one line. Re-entrant: the CLI takes them before Ray starts."""
        if self.locks:
            yield
            return
        with contextlib.ExitStack() as st:
            self.locks = [st.enter_context(Lock(d)) for d in dict.fromkeys([self.ctx.work, self.ctx.out])]
            try:
                yield
            finally:
                self.locks = []

    def check(self) -> None:
        """Stop before the output is written when another run took a lock over."""
        for lk in self.locks:
            lk.check()

    def sources(self) -> dict[str, dict[str, str]]:
        """Each model of the run: where its weights came from and their licence (the manifest records them)."""
        return {a.name: a.provenance() for s in self.stages for a in s.adapters().values()}

    def listing(self) -> tuple[int, int]:
        """The input as units, kept while the input is unchanged (pipeline/inputs.py write_units)."""
        c = self.cfg
        assert c.input, "preflight checks the input first"
        return write_units(c.input, self.ctx.work, self.sink.p.videos, c.follow_symlinks, c.input_root)

    def units(self, ex) -> tuple[int, int]:
        """The listing, then its duplicates (path, given id, content) from keys made in Ray tasks."""
        (n, entries), per, work = self.listing(), self.sink.p.videos, self.ctx.work
        fp = digest(cache.code(["mvid.pipeline.inputs"]))
        dups = write_duplicates(work, per, ex.columns(ex.units(n, _keys, work=work, fp=fp)))
        log.info("%d input entries in %d units from %s, %d duplicates", entries, n, self.cfg.input, dups)
        return n, entries

    def head(self) -> str:
        """What the output is made from besides the videos: the listing's signature, every stage's key, where it
        goes, and which summary fields the seal keeps (a seal of another mvid's summary is not read)."""
        listing = (self.ctx.work / LISTING).read_text()
        return digest([listing, [s.fingerprint() for s in self.stages], str(self.ctx.out), SEALED])

    def output(self) -> str:
        """The stats of every file the sink wrote, combined: a file touched, removed or added changes it."""
        o, x = self.ctx.out, 0
        found = (Path(r, f) for d in (S.INDEX, S.FAILURES, S.SHARD_DIR) for r, _, fs in os.walk(o / d) for f in fs)
        for p in itertools.chain([o / S.MANIFEST, o / S.WIDS, o / S.RUN], found):
            x ^= int(digest([str(p), stats(str(p))]), 16)  # in any order, one file at a time
        return f"{x:040x}"

    def current(self) -> Summary | None:
        """The last run's summary when a complete `mvid run` sealed the work folder with the same listing, videos
        (size, mtime, inode, ctime), stage keys and output files: the output is what a run would make again, and
        no Ray starts. Else None."""
        t, f = time.time(), self.ctx.work / SEAL
        with self.locked():
            if not f.exists():
                return None
            seal = json.loads(f.read_text())
            n, _ = self.listing()
            if seal["head"] != self.head() or seal["out"] != self.output():
                return None
            self.inputs = inputs_digest(self.ctx.work, n)
            if seal["inputs"] != self.inputs:
                return None
        c = seal["summary"]
        c.update(failures=Counter(c["failures"]), drops=Counter(c["drops"]))
        return Summary(**c, seconds=time.time() - t, out=self.ctx.out)

    def run(self, ex) -> Summary:
        t = time.time()
        self.preflight()
        with self.locked():
            (self.ctx.work / SEAL).unlink(missing_ok=True)
            ex.check([s.p for s in self.stream])
            n, _ = self.listing()
            inputs = self.inputs or inputs_digest(self.ctx.work, n)  # before any video is read
            n, videos = self.units(ex)
            self.advance(ex, n, self.stream)
            s = self.write(ex, n, videos, t)
            c = {k: getattr(s, k) for k in SEALED}
            seal = {"head": self.head(), "inputs": inputs, "out": self.output(), "summary": c}
            atomic_write(self.ctx.work / SEAL, json.dumps(seal).encode())
            return s

    def rerun(self, ex, name: str, select: str = "missing", ids: list[str] | None = None) -> int:
        """Rerun one stage: all, missing or failed items, or the units holding the given ids. Returns the units
        it ran on (the sink: the clips it wrote). Stages before it are taken from their parts."""
        names = [s.name for s in self.stages]
        if name not in names:
            raise ConfigError(f"stage {name!r} is not in this config: {names}")
        self.preflight()
        i = names.index(name)
        with self.locked():
            (self.ctx.work / SEAL).unlink(missing_ok=True)  # the next `mvid run` writes what this changes
            ex.check([s.p for s in self.stream[: i + 1]])
            n, videos = self.units(ex)
            if i >= len(self.stream):
                return self.write(ex, n, videos, time.time()).clips
            force = set(ids) if ids else None if select == "missing" else select
            return self.advance(ex, n, self.stream[: i + 1], {name: force} if force else {})

    def advance(self, ex, n: int, stages: list[Stage], force: dict | None = None) -> int:
        """Stream the units that are not done with `stages` through them; returns how many ran. A unit whose
        parts are all valid is skipped before any stage sees it; a run with none left starts no actor. After the
        failure breaker stopped a run, the stage it named reruns what failed there."""
        force, trip = dict(force or {}), self.ctx.work / BREAKER
        names = [s.name for s in stages]
        if trip.exists() and not force and (name := json.loads(trip.read_text())["stage"]) in names:
            force[name] = "failed"
        scan = {"work": self.ctx.work, "stages": names, "fps": [s.fingerprint() for s in stages], "forced": bool(force)}
        k, first = 0, len(stages)
        for r in ex.rows(ex.units(n, _first, **scan)):
            k, first = k + 1, min(first, r["first"])
        log.info("%d of %d units to run through %s", k, n, ", ".join(names))
        if k:
            # Models load as their actors start, in parallel, from the first stage that some unit needs. Reading
            # holds no CPU: a CPU for it would be budgeted away from the stages and stall them.
            ds = ex.stream(
                ex.units(n, _pending, cpus=0, **scan), [s.p for s in stages], scan["fps"], self.ctx, force, first
            )
            bar = progress(k, names[-1] if len(names) == 1 else "stages")
            _stream(ex, ds, bar, Breaker(self.cfg.breaker, self.ctx.work))
        trip.unlink(missing_ok=True)
        return k

    def write(self, ex, n: int, videos: int, t0: float) -> Summary:
        """The global selection, then one shard per unit, then the manifest; the driver sees per-shard rows."""
        chain = {
            "work": self.ctx.work,
            "stages": [s.name for s in self.stream],
            "fps": [s.fingerprint() for s in self.stream],
        }
        sel, cut, key, k, pool, passes = self.select, None, "all", 0, 0, 0
        if sel:
            narrow = ex.units(n, _pool, select=sel.p.model_dump(), fp=sel.fingerprint(), ctx=self.ctx, **chain)
            narrow = narrow.materialize()
            pool = narrow.count()
            k = sel.n(pool)

            def hist(a, b):
                nonlocal passes
                passes += 1
                return _hist(ex, narrow, a, b)

            cut = cutoff(lambda: pool, hist, lambda a, b: _fetch(ex, narrow, a, b), k, sel.p.fetch_limit)
            key = digest([sel.fingerprint(), cut, k, pool])
            log.info("select: %s of %d scored clips (%d passes)", "all" if cut is None else k, pool, passes)
        self.check()
        # Shards are replaced in place: the old manifest and shard lists go first, so that none lists a shard
        # whose bytes it does not describe, and the new ones come last.
        for name in (S.MANIFEST, S.WIDS):
            (self.ctx.out / name).unlink(missing_ok=True)
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
            self.check()
            man = self.sink.finish(done, videos, self.sources())
        except Exception as e:  # disk full, a failing mount: the OSError a shard task raised
            err = cause(e)
            if not isinstance(err, OSError):
                if err is e:
                    raise
                raise err from None
            raise RunError(
                f"writing the output failed ({err}); no manifest lists a partial "
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
            select_passes=passes,
            driver_rss_mb=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
        )
        atomic_write(self.ctx.out / S.RUN, run.model_dump_json(indent=1).encode())
        kinds: Counter[str] = Counter()
        for d in done:
            kinds.update(d["stats"]["kinds"])
        split = lambda kind: Counter({k.split(":", 1)[1]: v for k, v in kinds.items() if k.startswith(kind + ":")})
        return Summary(
            videos=videos,
            clips=man.samples,
            shards=len(man.shards),
            failures=split("error"),
            drops=split("drop"),
            seconds=time.time() - t0,
            out=self.ctx.out,
        )


def progress(total: int, what: str):
    """mvid's own progress on stderr: a bar on a terminal, a line every 30 s in a log."""
    tty = sys.stderr.isatty()
    return tqdm(total=total, desc=what, unit="unit", file=sys.stderr, mininterval=0.5 if tty else 30, dynamic_ncols=tty)


def _stream(ex, ds, bar, breaker: Breaker) -> None:
    """Run a streaming Dataset, feeding each unit's notes to the breaker. What stops the run inside a Ray task or
    actor (a model that fails to load, a HaltError, a schema bug) is raised as itself: one line."""
    clips = 0
    try:
        with bar:
            for r in ex.rows(ds):
                clips += r["clips"]
                breaker.add(json.loads(r[NOTES]))
                bar.set_postfix_str(f"clips={clips}", refresh=False)
                bar.update()
    except Exception as e:
        err = cause(e)
        if err is not e and isinstance(err, (ModelMissingError, HaltError, R.SchemaError)):
            raise err from None
        raise


def _keys(i: int, work: Path, fp: str):
    """Unit i's duplicate keys (pipeline/inputs.py unit_keys), with its index."""
    import pyarrow as pa

    t = unit_keys(work, i, fp)
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
    """stages.select.bins over the whole pool: each task bins HIST_ROWS rows at once and sends its counts, which
    are summed here (65,536 at most)."""
    import pyarrow as pa

    def count(t):
        b, n = bins(t["u"].to_numpy(), prefix, shift)
        return pa.table({"b": [b], "n": [n]})

    h = np.zeros(1 << 16, np.int64)
    for t in ex.tables(narrow.map_batches(count, batch_format="pyarrow", batch_size=HIST_ROWS, **ex.tasks(1))):
        b, n = (t[c].combine_chunks().flatten().to_numpy() for c in ("b", "n"))
        h += np.bincount(b, weights=n, minlength=1 << 16).astype(np.int64)
    return h


def _fetch(ex, narrow, prefix: int, shift: int):
    def pick(t):
        return t.filter(within(t["u"].to_numpy(), prefix, shift))

    picked = narrow.map_batches(pick, batch_format="pyarrow", batch_size=HIST_ROWS, **ex.tasks(1))
    return [(int(r["u"]), r["c"]) for r in ex.rows(picked)]


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
