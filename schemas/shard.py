"""Shard layout and manifest format: what lands in the output folder and how it is described."""
from __future__ import annotations

from pydantic import BaseModel

MANIFEST = "manifest.json"  # Manifest below
INDEX = "index.parquet"  # one row per sample: INDEX_COLUMNS
WIDS = "shards.json"  # wids descriptor, shard urls relative to the output folder
WDS = "shards.yaml"  # webdataset.WebDataset spec
FAILURES = "failures.jsonl"  # every reject of the run (failures and policy drops), one JSON per line
SHARD_DIR = "shards"
FORMAT = "mvid-manifest-v1"


def shard_name(i: int) -> str:
    return f"mvid-{i:06d}.tar"


def pattern(n: int) -> str:
    """Brace pattern of n shards for webdataset.WebDataset, relative to the output folder."""
    return f"{SHARD_DIR}/mvid-{{000000..{max(n - 1, 0):06d}}}.tar"


def members(rec: dict) -> dict[str, str]:
    """Member extension -> source file (relative to the work dir) of one sample; `json` is added by the writer."""
    out = {"mp4": rec["clip_path"]}
    if rec.get("audio_path"):
        out["wav"] = rec["audio_path"]
    for i, p in enumerate(rec.get("frame_paths") or []):
        out[f"frame{i:02d}.jpg"] = p
    for ext, p in (rec.get("extra_members") or {}).items():
        out[ext] = p
    return out


# Scalar record columns copied into the per-sample index, besides key and shard.
INDEX_COLUMNS = ("video_id", "clip_index", "start", "end", "duration", "fps", "has_audio", "path")


class ShardEntry(BaseModel):
    name: str  # path relative to the output folder
    samples: int
    bytes: int
    sha256: str
    first_key: str
    last_key: str


class Manifest(BaseModel):
    format: str = FORMAT
    mvid_version: str
    pattern: str  # brace pattern for webdataset, relative to the output folder
    samples: int
    hours: float
    shards: list[ShardEntry]
    fields: dict[str, int]  # field -> samples that have it
    clips_per_video: dict[str, int]
    models: dict[str, str]  # field -> model that made it
    failures: dict[str, int]  # reason code -> count
