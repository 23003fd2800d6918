"""Inputs: a folder or glob of videos, or a Parquet/CSV/JSONL list with `path` and optional
`video_id`, `transcript`, `language`. Paths are made absolute, duplicates kept once, ids made stable."""
from __future__ import annotations

import glob
import json
from pathlib import Path

from pipeline.stage import reject_of
from schemas.record import video_id

VIDEO_EXT = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".flv", ".ts", ".mpg", ".mpeg", ".wmv", ".3gp"}
LISTS = {".parquet", ".csv", ".jsonl"}


class InputError(ValueError):
    pass


def _rows(spec: Path) -> list[dict]:
    if spec.suffix == ".jsonl":
        rows = []
        for n, line in enumerate(spec.read_text().splitlines(), 1):
            if line.strip():
                try:
                    rows.append(json.loads(line))
                except json.JSONDecodeError as e:
                    raise InputError(f"{spec}:{n}: not valid JSON: {e}") from None
    else:
        import pyarrow.csv as pcsv
        import pyarrow.parquet as pq
        try:
            rows = (pq.read_table(spec) if spec.suffix == ".parquet" else pcsv.read_csv(spec)).to_pylist()
        except Exception as e:  # noqa: BLE001 - any reader error names the file
            raise InputError(f"{spec}: cannot read the input list: {e}") from None
    for n, r in enumerate(rows, 1):
        if not isinstance(r, dict) or not r.get("path"):
            raise InputError(f"{spec}: row {n} has no 'path'")
        p = Path(str(r["path"])).expanduser()
        r["path"] = str(p if p.is_absolute() else spec.parent / p)
    return rows


def discover(spec: str) -> tuple[list[dict], list[dict]]:
    """Video records to process, and rejects for listed paths that don't exist."""
    p = Path(spec).expanduser()
    if p.is_file() and p.suffix in LISTS:
        rows = _rows(p)
    elif p.is_dir():
        rows = [{"path": str(f)} for f in sorted(p.rglob("*")) if f.suffix.lower() in VIDEO_EXT and f.is_file()]
    else:
        rows = [{"path": f} for f in sorted(glob.glob(str(p), recursive=True))]
        if not rows and p.is_file():
            rows = [{"path": str(p)}]
    if not rows:
        raise InputError(f"{spec}: no videos found (a folder, a glob, or a {'/'.join(sorted(LISTS))} list)")
    recs, rejects, seen = [], [], set()
    for r in rows:
        path = str(Path(r["path"]).resolve())
        if path in seen:
            continue
        seen.add(path)
        rec = {"video_id": video_id(path, r.get("video_id")), "path": path,
               "input_transcript": r.get("transcript"), "input_language": r.get("language")}
        if Path(path).is_file():
            recs.append(rec)
        elif Path(path).exists():  # a folder, a device or a pipe that would block a reader
            rejects.append(reject_of(rec, "not_a_file", f"{path}: not a regular file", stage="input"))
        else:
            rejects.append(reject_of(rec, "missing_file", f"{path}: no such file", stage="input"))
    ids = [r["video_id"] for r in recs]
    if len(set(ids)) != len(ids):
        dup = sorted({i for i in ids if ids.count(i) > 1})
        raise InputError(f"{spec}: video_id used by more than one path: {dup[:5]}")
    return recs, rejects
