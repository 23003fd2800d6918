"""The Pipeline: the config's ordered stages, run over the inputs, then the sink writes the shards."""
from __future__ import annotations

import json
import logging
import re
import time
from collections import Counter
from dataclasses import dataclass, field

from models.base import ModelLoadError
from pipeline.config import Config, ConfigError
from pipeline.inputs import discover
from pipeline.runner import log_time
from pipeline.stage import Ctx, Stage, reject_of
from pipeline.store import Store, atomic_write, digest
from schemas import shard as S
from stages import REGISTRY

log = logging.getLogger("mvid")


class RunError(RuntimeError):
    """A run-level failure that no per-item record can hold (the shards cannot be written): one line, no trace."""


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
        lines = [f"videos in: {self.videos}   clips out: {self.clips}   shards: {self.shards}   "
                 f"wall time: {self.seconds:.1f}s"]
        for title, c in (("failures", self.failures), ("dropped by policy", self.drops)):
            if c:
                lines.append(f"{title}: " + ", ".join(f"{k}={v}" for k, v in sorted(c.items())))
        lines += [f"  [{j['stage']}] {j['code']}: {j['path']}: {j['message']}" for j in self.failed[:show]]
        if len(self.failed) > show:
            lines.append(f"  ... {len(self.failed) - show} more in {S.FAILURES}")
        return "\n".join(lines)


class Pipeline:
    def __init__(self, cfg: Config):
        self.cfg = cfg
        self.ctx = Ctx(cfg.work_dir.resolve(), cfg.output_dir.resolve())
        self.stages: list[Stage] = [REGISTRY[p.name](p, self.ctx) for p in cfg.stages]
        self.stream, self.sink = self.stages[:-1], self.stages[-1]

    def preflight(self) -> None:
        """Checks before any video is touched: inputs exist, every model's files resolve."""
        if not self.cfg.input:
            raise ConfigError("no input: set `input:` in the config or pass --input")
        for s in self.stages:
            s.preflight()

    def inputs(self) -> tuple[list[dict], list[dict]]:
        return discover(self.cfg.input)

    def run(self, ex) -> Summary:
        t = time.time()
        self.preflight()
        recs, missing = self.inputs()
        log.info("%d videos from %s", len(recs), self.cfg.input)
        _stream(ex, [s.p for s in self.stream], recs, self.ctx)
        return self.write(ex, recs, missing, t)

    def rerun(self, ex, name: str, select: str = "missing", ids: list[str] | None = None) -> int:
        """Rerun one stage on its persisted inputs: all, missing or failed items, or the given ids."""
        names = [s.name for s in self.stages]
        if name not in names:
            raise ConfigError(f"stage {name!r} is not in this config: {names}")
        self.preflight()
        i = names.index(name)
        if self.stages[i].sink:
            recs, missing = self.inputs()
            return self.write(ex, recs, missing, time.time()).clips
        recs, _ = self.inputs()
        for s in self.stream[:i]:
            recs, _ = self.outputs(s, recs)
        st, store = self.stages[i], Store(self.ctx.work, name)
        if ids:
            wanted = set(ids)
            recs = [r for r in recs if r[st.key] in wanted or r["video_id"] in wanted]
        elif select == "missing":
            recs = [r for r in recs if store.get(r[st.key]) is None]
        elif select == "failed":
            recs = [r for r in recs if any(j["kind"] == "error" for j in (store.get(r[st.key]) or {}).get("rejects", []))]
        log.info("rerunning %s on %d items", name, len(recs))
        return _stream(ex, [st.p], recs, self.ctx, force=select != "missing" or bool(ids))

    def outputs(self, st: Stage, recs: list[dict]) -> tuple[list[dict], list[dict]]:
        """What a stage persisted for these inputs; a missing or stale entry becomes a reject."""
        store, fp, out, rejects = Store(self.ctx.work, st.name), st.fingerprint(), [], []
        for r in recs:
            e = store.get(r[st.key])
            if e is None:
                rejects.append(reject_of(r, "not_processed", f"no {st.name} output: run `mvid run` again", stage=st.name))
            elif e["input_hash"] != digest([fp, r]):
                rejects.append(reject_of(r, "stale", f"{st.name} output predates its input: run `mvid run` again",
                                         stage=st.name))
            else:
                out += e["records"]
                rejects += e["rejects"]
        return out, rejects

    def write(self, ex, recs: list[dict], rejects: list[dict], t0: float) -> Summary:
        """Walk the persisted lineage from the inputs to the final clips, then write the shards."""
        videos = len(recs) + len(rejects)
        for s in self.stream:
            recs, rej = self.outputs(s, recs)
            rejects += rej
        sink = self.sink
        byid = {r["clip_id"]: r for r in recs}
        plan = sink.plan({k: r["media_bytes"] for k, r in byid.items()})
        # Shards are replaced in place: the old manifest goes first, so that no manifest lists a shard whose
        # bytes it does not describe, and the new one comes last.
        (self.ctx.out / S.MANIFEST).unlink(missing_ok=True)
        errors = Counter(j["code"] for j in rejects if j["kind"] == "error")
        drops = Counter(j["code"] for j in rejects if j["kind"] != "error")
        rows = sorted((json.dumps(j, sort_keys=True) for j in rejects))
        try:
            parts = ex.map(_write_shard, [(sink.p.model_dump(), self.ctx, i, [byid[k] for k in keys])
                                          for i, keys in enumerate(plan)])
            atomic_write(self.ctx.out / S.FAILURES, "".join(r + "\n" for r in rows).encode())
            sink.finish(parts, errors + drops)
        except OSError as e:  # disk full, a failing mount; through Ray the OSError is the task error's cause
            raise RunError(f"writing the output failed ({getattr(e, 'cause', e)}); no manifest lists a partial "
                           f"shard. Run `mvid run` again once {self.ctx.out} is writable.") from None
        failed = sorted((j for j in rejects if j["kind"] == "error"), key=lambda j: (str(j["path"]), j["stage"]))
        return Summary(videos=videos, clips=len(recs), shards=len(plan), failures=errors, drops=drops,
                       seconds=time.time() - t0, failed=failed)


def _stream(ex, stages, recs, ctx, force=False) -> int:
    """ex.stream, with a model that fails to load in a Ray actor reported as the one line it raised."""
    try:
        return ex.stream(stages, recs, ctx, force)
    except ModelLoadError:
        raise
    except Exception as e:  # noqa: BLE001 - Ray keeps only the text of an actor's constructor error
        if m := re.search(r"ModelLoadError: (.+)", str(e)):
            raise ModelLoadError(m.group(1).strip()) from None
        raise


def _write_shard(params: dict, ctx: Ctx, index: int, recs: list[dict]) -> dict:
    from stages import REGISTRY
    cls, t = REGISTRY[params["name"]], time.perf_counter()
    part = cls(cls.Params(**params), ctx).write(index, recs)
    log_time(ctx, params["name"], [r["clip_id"] for r in recs], time.perf_counter() - t)
    return part
