"""shard: WebDataset tars of the finished clips, a manifest, a per-sample Parquet index and shard lists.

Samples are sorted by clip_id and packed to a target size, so the same clips always give the same shards,
byte for byte: a resumed run equals an uninterrupted one. Each shard is written under a temporary name,
fsynced and renamed; the manifest is written last, so it never lists a partial shard."""
from __future__ import annotations

import hashlib
import io
import json
import os
from collections import Counter
from pathlib import Path

from pydantic import Field

import pipeline
from pipeline.stage import Stage, StageParams
from pipeline.store import atomic_write
from schemas import shard as S
from stages import register

WORK_ONLY = ("clip_path", "audio_path", "frame_paths", "media_bytes", "extra_members", "clip_emb")


class ShardParams(StageParams):
    name: str = "shard"
    target_mb: float = Field(512, gt=0)


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


def sample_json(rec: dict) -> bytes:
    return json.dumps({k: v for k, v in rec.items() if k not in WORK_ONLY}, sort_keys=True,
                      ensure_ascii=False).encode()


@register
class Shard(Stage):
    name = "shard"
    Params = ShardParams
    requires = ("clip_id", "clip_path", "frame_paths")
    sink = True

    def plan(self, sizes: dict[str, int]) -> list[list[str]]:
        """Greedy packing of clip ids, in id order, into shards of about target_mb."""
        target, shards, cur, acc = self.p.target_mb * 2**20, [], [], 0
        for key in sorted(sizes):
            if cur and acc + sizes[key] > target:
                shards.append(cur)
                cur, acc = [], 0
            cur.append(key)
            acc += sizes[key]
        return shards + ([cur] if cur else [])

    def write(self, index: int, recs: list[dict]) -> dict:
        """Write one shard atomically; return its manifest entry, index rows and stats."""
        import webdataset as wds
        name = f"{S.SHARD_DIR}/{S.shard_name(index)}"
        path = self.ctx.out / name
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        try:
            with open(tmp, "wb") as f:
                with wds.TarWriter(f, mtime=0) as tw:
                    for r in recs:
                        sample = {"__key__": r["clip_id"], "json": sample_json(r)}
                        for ext, rel in S.members(r).items():
                            sample[ext] = (self.ctx.work / rel).read_bytes()
                        tw.write(sample)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
        except OSError as e:  # disk full, a failing mount: name the shard in the run's error
            raise OSError(e.errno, f"{e.strerror or e} while writing {name}") from None
        finally:
            tmp.unlink(missing_ok=True)
        rows = [{"key": r["clip_id"], "shard": name, **{c: r.get(c) for c in S.INDEX_COLUMNS}} for r in recs]
        entry = S.ShardEntry(name=name, samples=len(recs), bytes=path.stat().st_size, sha256=sha256(path),
                             first_key=recs[0]["clip_id"], last_key=recs[-1]["clip_id"])
        return {"entry": entry.model_dump(), "rows": rows, "stats": stats(recs)}

    def finish(self, parts: list[dict], failures: Counter) -> S.Manifest:
        """Manifest, index and shard lists from the written shards; stale shards are removed last."""
        import pyarrow as pa
        import pyarrow.parquet as pq
        out = self.ctx.out
        entries = [S.ShardEntry(**p["entry"]) for p in parts]
        total = Counter()
        fields, per_video, models = Counter(), Counter(), {}
        for p in parts:
            st = p["stats"]
            total["samples"] += st["samples"]
            total["seconds"] += st["seconds"]
            fields.update(st["fields"])
            per_video.update(st["clips_per_video"])
            models.update(st["models"])
        man = S.Manifest(
            mvid_version=pipeline.__version__,
            pattern=S.pattern(len(entries)),
            samples=total["samples"], hours=round(total["seconds"] / 3600, 6), shards=entries,
            fields=dict(sorted(fields.items())), clips_per_video=dict(sorted(per_video.items())),
            models=dict(sorted(models.items())), failures=dict(sorted(failures.items())))
        rows = [row for p in parts for row in p["rows"]]
        buf = io.BytesIO()
        pq.write_table(pa.Table.from_pylist(rows) if rows else pa.table({"key": pa.array([], pa.string())}), buf)
        atomic_write(out / S.INDEX, buf.getvalue())
        wids = {"__kind__": "wids-shard-index-v1", "wids_version": 1, "name": "mvid",
                "shardlist": [{"url": e.name, "nsamples": e.samples, "filesize": e.bytes} for e in entries]}
        atomic_write(out / S.WIDS, json.dumps(wids, indent=1).encode())
        wds = {"datasets": [{"name": "mvid", "buckets": [str(out.resolve()) + "/"],
                             "shards": [e.name for e in entries]}]}
        atomic_write(out / S.WDS, json.dumps(wds, indent=1).encode())  # JSON is valid YAML
        atomic_write(out / S.MANIFEST, man.model_dump_json(indent=1).encode())
        keep = {e.name for e in entries}
        for p in (out / S.SHARD_DIR).glob("*"):
            if f"{S.SHARD_DIR}/{p.name}" not in keep:
                p.unlink()
        return man


def stats(recs: list[dict]) -> dict:
    fields = Counter(k for r in recs for k, v in sample_json_fields(r) if v not in (None, "", [], {}))
    return {"samples": len(recs), "seconds": sum(r.get("duration", 0) for r in recs), "fields": dict(fields),
            "clips_per_video": dict(Counter(r["video_id"] for r in recs)),
            "models": {k: v for r in recs for k, v in (r.get("models") or {}).items()}}


def sample_json_fields(rec: dict):
    yield from ((ext, True) for ext in S.members(rec))
    yield from ((k, v) for k, v in rec.items() if k not in WORK_ONLY)
