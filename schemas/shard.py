"""Shard layout and manifest format: what lands in the output folder and how it is described.

One shard per unit (a fixed chunk of consecutive input videos): shards/mvid-<unit>.tar, with its index rows in
index/mvid-<unit>.parquet and its failure records in failures/mvid-<unit>.jsonl; a unit whose clips were all
dropped writes no tar (a reader given only empty shards fails), only its index and failures. The manifest is
written last."""

from __future__ import annotations

import hashlib
import json
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pyarrow as pa
from pydantic import BaseModel

from mvid.schemas.record import CAPTION_TYPES

MANIFEST = "manifest.json"  # Manifest below
RUN = "run.json"  # Run below: the last run's timings and selection, for the report
REPORT = "report.html"  # mvid report's default page
INDEX = "index"  # a Parquet folder, a file per shard: one row per sample, INDEX_SCHEMA (pyarrow reads it whole)
WIDS = "shards.json"  # wids descriptor, shard urls relative to the output folder
FAILURES = "failures"  # every reject of the run (failures and policy drops), a JSON line each, a file per shard
SHARD_DIR = "shards"
FORMAT = "mvid-manifest-v3"  # v3: shards lists only tars with samples; an all-dropped unit writes none


def shard_name(i: int) -> str:
    return f"mvid-{i:06d}.tar"


def members(rec: dict) -> dict[str, str]:
    """Shard member extension -> media tar member of one clip; `json` is added by the writer."""
    out = {"mp4": rec["clip_path"]}
    if rec.get("audio_path"):
        out["wav"] = rec["audio_path"]
    for i, p in enumerate(rec.get("frame_paths") or []):
        out[f"frame{i:02d}.jpg"] = p
    return out


# The per-sample index: what a report, a sampler or a filter needs without opening a shard. Caption columns hold
# the caption's length in words (None: the sample has no such caption).
_F, _S = pa.float64(), pa.string()
INDEX_SCHEMA = pa.schema(
    [
        ("key", _S),
        ("shard", _S),
        ("video_id", _S),
        ("clip_index", pa.int64()),
        *[(c, _F) for c in ("start", "end", "duration", "fps")],
        ("has_audio", pa.bool_()),
        ("path", _S),
        ("clip_score", _F),
        ("language", _S),  # fastText's language of the speech
        ("lid_confidence", _F),
        ("translator", _S),  # none, seamless or llm
        *[(f"words_{k}", pa.int64()) for k in CAPTION_TYPES],
    ]
)


def index_row(rec: dict, shard: str) -> dict:
    lid, tr, caps = rec.get("lid") or {}, rec.get("translation") or {}, rec.get("captions") or {}
    return {
        "key": rec["clip_id"],
        "shard": shard,
        **{c: rec.get(c) for c in ("video_id", "clip_index", "start", "end", "duration", "fps", "has_audio", "path")},
        "clip_score": rec.get("clip_score"),
        "language": lid.get("language"),
        "lid_confidence": lid.get("confidence"),
        "translator": tr.get("translator"),
        **{f"words_{k}": len(caps[k].split()) if caps.get(k) else None for k in CAPTION_TYPES},
    }


class ShardEntry(BaseModel):
    name: str  # path relative to the output folder
    samples: int
    bytes: int
    sha256: str | None  # None: a unit with no samples, which writes no tar
    first_key: str | None
    last_key: str | None


class Manifest(BaseModel):
    format: str = FORMAT
    mvid_version: str
    samples: int
    hours: float
    shards: list[ShardEntry]  # the tars, each with samples, in unit order (webdataset: urls(out))
    empty: list[str] = []  # shards of units whose clips were all dropped: not written
    videos: int  # videos in the input
    videos_with_clips: int  # videos with at least one sample in the shards
    clips_per_video: dict[str, float]  # min, mean, max over videos_with_clips
    fields: dict[str, int]  # field -> samples that have it
    models: dict[str, str]  # field -> model that made it
    model_sources: dict[str, dict[str, str]] = {}  # model -> {source: package==version or path, license}
    failures: dict[str, int]  # reason code -> count
    # caption type -> counts per reason (ok: passed), word-count quantiles, distinct-word ratio, languages,
    # examples per reason (pipeline/captions.py summary)
    caption_quality: dict[str, dict] = {}


class StageTime(BaseModel):
    items: int  # videos or clips processed (see `of`), over every run on this work folder
    of: str = "items"  # what items are: videos (probe, split, extract) or clips
    batches: int  # units
    seconds: float  # in batches, without model set-up
    setup_s: float  # model set-up, summed over workers
    rss_mb: int  # the largest peak RSS of its workers


class Run(BaseModel):
    """What the last `mvid run` did, beside the manifest: the report reads it."""

    work_dir: str
    wall_s: float  # the last run's wall time
    runs: int = 1  # finished runs on this work folder
    all_wall_s: float = 0.0  # their wall times, summed: what the stages' seconds are shares of
    stages: dict[str, StageTime]  # in run order
    selection: str | None  # the rule, e.g. "top_n=36 of 40 scored"
    select_passes: int = 0  # passes over the score column that the global cut took (stages/select.py cutoff)
    driver_rss_mb: int = 0  # the driver's peak RSS over the run


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while b := f.read(1 << 20):
            h.update(b)
    return h.hexdigest()


def manifest(out: Path) -> Manifest:
    path = out / MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path}: no manifest (not an mvid output folder, or the run has not finished)")
    return Manifest.model_validate_json(path.read_text())


def urls(out: Path) -> list[str]:
    """Every shard of an output folder as a path: what webdataset.WebDataset or a DataLoader reads."""
    return [str(out / s.name) for s in manifest(out).shards]


def failures(out: Path):
    """Every failure record of an output folder, shard by shard."""
    for p in sorted((out / FAILURES).glob("*.jsonl")):
        for line in p.read_text().splitlines():
            yield json.loads(line)


def samples(tar: Path, keys: set[str] | None = None) -> Iterator[tuple[str, dict[str, bytes]]]:
    """A shard's samples in order, as (key, {extension: bytes}); with `keys`, only those. Members are
    <key>.<extension>, a sample's members next to each other (keys hold no dots)."""
    key, got = "", dict[str, bytes]()
    with tarfile.open(tar) as t:
        for m in t:
            k, _, ext = m.name.partition(".")
            if k != key:
                if got:
                    yield key, got
                key, got = k, {}
            if keys is None or k in keys:
                f = t.extractfile(m)
                got[ext] = f.read() if f else b""
    if got:
        yield key, got
