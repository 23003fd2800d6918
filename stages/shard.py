"""shard: WebDataset tars of the finished clips, a manifest, a per-shard Parquet index and failure file.

One shard per unit, written by that unit's own Ray task from its records and its videos' media tars: the same
inputs always give the same shards, byte for byte, and a resumed run equals an uninterrupted one. Samples keep
the input order (video, then clip). Each file is written under a temporary name, fsynced and renamed; a shard
whose unit and selection are unchanged is not rewritten; the manifest is written last, so it never lists a
partial shard."""

from __future__ import annotations

import io
import json
import tempfile
import time
from collections import Counter
from pathlib import Path

from pydantic import Field

from mvid import pipeline
from mvid.pipeline import captions
from mvid.pipeline.media import Media, write_tar
from mvid.pipeline.runner import log_time
from mvid.pipeline.stage import Stage, StageParams
from mvid.pipeline.store import atomic_write, footer, parquet_bytes
from mvid.schemas import shard as S
from mvid.stages import register

WORK_ONLY = {
    "clip_path",
    "audio_path",
    "frame_paths",
    "frame_hashes",
    "media_bytes",
    "clip_emb",
    "media",
    "clips",
    "rejects",
    "failed",
}


class ShardParams(StageParams):
    name: str = "shard"
    videos: int = Field(64, ge=1)  # videos per unit, and so per shard: the unit of work, resume and output
    audio_fbank: bool = False  # add audio_fbank.npy (the audio encoder's log-Mel input) to samples with audio


def compact(v):
    """Without None values, at every level: a sample says what it has."""
    if isinstance(v, dict):
        return {k: compact(x) for k, x in v.items() if x is not None}
    if isinstance(v, list):
        return [compact(x) for x in v]
    return v


def sample_json(rec: dict) -> dict:
    return compact({k: v for k, v in rec.items() if k not in WORK_ONLY})


@register
class Shard(Stage[ShardParams]):
    requires = ("clip_id", "clip_path", "frame_paths")
    sink = True

    def paths(self, i: int) -> tuple[Path, Path, Path]:
        stem = S.shard_name(i).removesuffix(".tar")
        out = self.ctx.out
        return (
            out / S.SHARD_DIR / S.shard_name(i),
            out / S.INDEX / f"{stem}.parquet",
            out / S.FAILURES / f"{stem}.jsonl",
        )

    def current(self, i: int, key: str) -> dict | None:
        """Unit i's manifest entry and stats when its files were written under `key` (what made them: the unit's
        records and the selection) and its shard is in place; None when they have to be written."""
        shard, index, _ = self.paths(i)
        old = footer(index)
        if not old or old.get("key") != key:
            return None
        if not old["entry"]["samples"]:  # an empty unit writes no tar
            return None if shard.exists() else old
        return old if shard.exists() and shard.stat().st_size == old["entry"]["bytes"] else None

    def write(self, i: int, videos: list[dict], key: str) -> dict:
        """Write unit i's shard, index and failure files under `key`; return its manifest entry and stats."""
        shard, index, fails = self.paths(i)
        import pyarrow as pa

        t = time.perf_counter()
        samples = [{**v, **c} for v in videos for c in v["clips"]]
        try:
            if samples:
                with Media(self.ctx.work) as md:
                    write_tar(shard, (m for r in samples for m in self.sample(r, md)))
            else:  # no tar a reader would find empty; its index and failures are still written
                shard.unlink(missing_ok=True)
        except OSError as e:  # disk full, a failing mount: name the shard in the run's error
            raise OSError(e.errno, f"{e.strerror or e} while writing {S.SHARD_DIR}/{shard.name}") from None
        rejects = sorted(json.dumps(compact(j), sort_keys=True) for v in videos for j in v["rejects"])
        atomic_write(fails, "".join(r + "\n" for r in rejects).encode())
        name = f"{S.SHARD_DIR}/{shard.name}"
        entry = S.ShardEntry(
            name=name,
            samples=len(samples),
            bytes=shard.stat().st_size if samples else 0,
            sha256=S.sha256(shard) if samples else None,
            first_key=samples[0]["clip_id"] if samples else None,
            last_key=samples[-1]["clip_id"] if samples else None,
        )
        done = {"key": key, "entry": entry.model_dump(), "stats": stats(videos, samples)}
        rows = [S.index_row(r, name) for r in samples]
        atomic_write(index, parquet_bytes(pa.Table.from_pylist(rows, schema=S.INDEX_SCHEMA), done))
        log_time(self.ctx, self.name, [shard.name], time.perf_counter() - t, items=len(samples))
        return done

    def sample(self, r: dict, md: Media) -> list[tuple[str, bytes]]:
        """One clip's shard members, (<clip_id>.<ext>, bytes), in extension order (as webdataset writes them)."""
        sample = {"json": json.dumps(sample_json(r), sort_keys=True, ensure_ascii=False).encode()}
        for ext, member in S.members(r).items():
            sample[ext] = md.read(r["media"], member)
        if self.p.audio_fbank and "wav" in sample:
            import numpy as np

            from mvid.models.audio import fbank

            with tempfile.NamedTemporaryFile(suffix=".wav") as w:
                w.write(sample["wav"])
                w.flush()
                buf = io.BytesIO()
                np.save(buf, fbank(w.name).astype(np.float16))
            sample["audio_fbank.npy"] = buf.getvalue()
        return [(f"{r['clip_id']}.{ext}", sample[ext]) for ext in sorted(sample)]

    def finish(self, done: list[dict], videos: int, sources: dict[str, dict[str, str]]) -> S.Manifest:
        """Manifest and shard lists from the written shards (in unit order); stale files are removed last."""
        out = self.ctx.out
        every = [S.ShardEntry(**d["entry"]) for d in done]
        entries = [e for e in every if e.samples]  # the tars; an empty unit writes none
        fields: Counter[str] = Counter()
        failures: Counter[str] = Counter()
        per: Counter[str] = Counter()
        models: dict[str, str] = {}
        caps: dict = {}
        for d in done:
            st = d["stats"]
            captions.merge(caps, st["captions"])
            fields.update(st["fields"])
            models.update(st["models"])
            failures.update(st["failures"])
            per.update({k: st["clips_per_video"][k] for k in ("videos", "clips")})
            per["min"] = min(per.get("min", 1 << 62), st["clips_per_video"]["min"])
            per["max"] = max(per["max"], st["clips_per_video"]["max"])
        samples = sum(e.samples for e in entries)
        man = S.Manifest(
            mvid_version=pipeline.__version__,
            samples=samples,
            hours=round(sum(d["stats"]["seconds"] for d in done) / 3600, 6),
            shards=entries,
            empty=[e.name for e in every if not e.samples],
            videos=videos,
            videos_with_clips=per["videos"],
            clips_per_video={
                "min": per["min"] if per["videos"] else 0,
                "max": per["max"],
                "mean": round(per["clips"] / per["videos"], 2) if per["videos"] else 0,
            },
            fields=dict(sorted(fields.items())),
            models=dict(sorted(models.items())),
            model_sources={m: sources[m] for m in sorted(set(models.values())) if m in sources},
            failures=dict(sorted(failures.items())),
            caption_quality={k: captions.summary(caps[k]) for k in sorted(caps)},
        )
        wids = {
            "__kind__": "wids-shard-index-v1",
            "wids_version": 1,
            "name": "mvid",
            "shardlist": [{"url": e.name, "nsamples": e.samples, "filesize": e.bytes} for e in entries],
        }
        atomic_write(out / S.WIDS, json.dumps(wids, indent=1).encode())
        atomic_write(out / S.MANIFEST, man.model_dump_json(indent=1).encode())
        for folder, keep in ((S.SHARD_DIR, entries), (S.INDEX, every), (S.FAILURES, every)):
            stems = {Path(e.name).stem for e in keep}
            for p in (out / folder).glob("*"):
                if p.name.split(".")[0] not in stems:
                    p.unlink()
        return man


def stats(videos: list[dict], samples: list[dict]) -> dict:
    fields: Counter[str] = Counter()
    for r in samples:
        fields.update(S.members(r).keys())
        fields.update(k for k, v in sample_json(r).items() if v not in ("", [], {}))
    counts = [len(v["clips"]) for v in videos if v["clips"]]
    rejects = [j for v in videos for j in v["rejects"]]
    return {
        "captions": captions.tally(samples + [j for j in rejects if j.get("quality")]),
        "samples": len(samples),
        "seconds": sum(r.get("duration") or 0 for r in samples),
        "fields": dict(fields),
        "clips_per_video": {
            "videos": len(counts),
            "clips": sum(counts),
            "min": min(counts, default=1 << 62),
            "max": max(counts, default=0),
        },
        "failures": dict(Counter(j["code"] for j in rejects)),
        "kinds": dict(Counter(f"{j['kind']}:{j['code']}" for j in rejects)),
        "models": {k: v for r in samples for k, v in (r.get("models") or {}).items()},
    }
