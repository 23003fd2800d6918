"""Shard layout and manifest format: what lands in the output folder and how it is described.

One shard per unit (a fixed chunk of consecutive input videos): shards/mvid-<unit>.tar, with its index rows in
index/mvid-<unit>.parquet and its failure records in failures/mvid-<unit>.jsonl. The manifest is written last."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

from pydantic import BaseModel

MANIFEST = "manifest.json"  # Manifest below
INDEX = "index"  # a Parquet folder, a file per shard: one row per sample, INDEX_COLUMNS (pyarrow reads it whole)
WIDS = "shards.json"  # wids descriptor, shard urls relative to the output folder
WDS = "shards.yaml"  # webdataset.WebDataset spec
FAILURES = "failures"  # every reject of the run (failures and policy drops), a JSON line each, a file per shard
SHARD_DIR = "shards"
FORMAT = "mvid-manifest-v2"


def shard_name(i: int) -> str:
    return f"mvid-{i:06d}.tar"


def pattern(n: int) -> str:
    """Brace pattern of n shards for webdataset.WebDataset, relative to the output folder."""
    return f"{SHARD_DIR}/mvid-{{000000..{max(n - 1, 0):06d}}}.tar"


def members(rec: dict) -> dict[str, str]:
    """Shard member extension -> media tar member of one clip; `json` is added by the writer."""
    out = {"mp4": rec["clip_path"]}
    if rec.get("audio_path"):
        out["wav"] = rec["audio_path"]
    for i, p in enumerate(rec.get("frame_paths") or []):
        out[f"frame{i:02d}.jpg"] = p
    return out


# Scalar record columns copied into the per-sample index, besides key and shard.
INDEX_COLUMNS = ("video_id", "clip_index", "start", "end", "duration", "fps", "has_audio", "path")


class ShardEntry(BaseModel):
    name: str  # path relative to the output folder
    samples: int
    bytes: int
    sha256: str
    first_key: str | None
    last_key: str | None


class Manifest(BaseModel):
    format: str = FORMAT
    mvid_version: str
    pattern: str  # brace pattern for webdataset, relative to the output folder
    samples: int
    hours: float
    shards: list[ShardEntry]
    videos: int  # videos in the input
    videos_with_clips: int  # videos with at least one sample in the shards
    clips_per_video: dict[str, float]  # min, mean, max over videos_with_clips
    fields: dict[str, int]  # field -> samples that have it
    models: dict[str, str]  # field -> model that made it
    model_sources: dict[str, dict[str, str]] = {}  # model -> {source: package==version or path, license}
    failures: dict[str, int]  # reason code -> count


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


def failures(out: Path):
    """Every failure record of an output folder, shard by shard."""
    for p in sorted((out / FAILURES).glob("*.jsonl")):
        for line in p.read_text().splitlines():
            yield json.loads(line)
