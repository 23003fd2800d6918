"""Inputs: a folder or glob of videos, or a Parquet/CSV/JSONL list with `path` and optional `video_id`,
`transcript` (a string, or segments [{start, end, text}] in video seconds) and `language`.

The listing streams once into work/inputs.parquet: one row group per unit of `per_unit` consecutive videos,
which every stage then reads as a Ray Dataset. Paths are made absolute, duplicates kept once, ids made stable;
a listed file that is missing or not a regular file is a failed video of its unit, with its reason."""

from __future__ import annotations

import glob
import json
import os
from collections.abc import Iterator
from pathlib import Path

import pyarrow.parquet as pq

from mvid.pipeline.stage import reject_of
from mvid.pipeline.store import digest
from mvid.schemas import record as R

VIDEO_EXT = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".flv", ".ts", ".mpg", ".mpeg", ".wmv", ".3gp"}
LISTS = {".parquet", ".csv", ".jsonl"}
FILE = "inputs.parquet"


class InputError(ValueError):
    pass


def _rows(spec: Path) -> Iterator[tuple[int, dict]]:
    if spec.suffix == ".jsonl":
        with open(spec) as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield n, json.loads(line)
                    except json.JSONDecodeError as e:
                        raise InputError(f"{spec}:{n}: not valid JSON: {e}") from None
        return
    import pyarrow.csv as pcsv

    try:
        batches = pq.ParquetFile(spec).iter_batches() if spec.suffix == ".parquet" else pcsv.open_csv(spec)
        n = 0
        for b in batches:
            for r in b.to_pylist():
                n += 1
                yield n, r
    except Exception as e:  # noqa: BLE001 - any reader error names the file
        raise InputError(f"{spec}: cannot read the input list: {e}") from None


def listing(spec: str) -> Iterator[dict]:
    """Input rows, in order, one at a time: nothing is held for the whole corpus."""
    p = Path(spec).expanduser()
    if p.is_file() and p.suffix in LISTS:
        for n, r in _rows(p):
            if not isinstance(r, dict) or not r.get("path"):
                raise InputError(f"{p}: row {n} has no 'path'")
            q = Path(str(r["path"])).expanduser()
            yield {**r, "path": str(q if q.is_absolute() else p.parent / q)}
    elif p.is_dir():
        yield from ({"path": f} for f in _walk(p))
    else:
        found = sorted(glob.glob(str(p), recursive=True)) or ([str(p)] if p.is_file() else [])
        yield from ({"path": f} for f in found)


def _walk(root: Path) -> Iterator[str]:
    """Video files under root, in sorted order, one folder at a time."""
    with os.scandir(root) as it:
        entries = sorted(it, key=lambda e: e.name)
    for e in entries:
        if e.is_dir():
            yield from _walk(Path(e.path))
        elif Path(e.name).suffix.lower() in VIDEO_EXT and e.is_file():
            yield e.path


def video(r: dict) -> dict:
    """The input row as a video record; a missing or odd file becomes a failed video with its reason."""
    path = str(Path(r["path"]).resolve())
    given = r.get("transcript")
    rec = {
        "video_id": R.video_id(path, r.get("video_id")),
        "path": path,
        "failed": False,
        "clips": [],
        "rejects": [],
        "input_language": r.get("language"),
        "input_text": given if isinstance(given, str) else None,
        "input_segments": given if isinstance(given, list) else None,
    }
    if not Path(path).is_file():
        code, why = ("not_a_file", "not a regular file") if Path(path).exists() else ("missing_file", "no such file")
        rec["failed"], rec["rejects"] = True, [reject_of(rec, code, f"{path}: {why}", stage="input")]
    return rec


def write_units(spec: str, work: Path, per_unit: int) -> tuple[int, int]:
    """Stream the listing into work/inputs.parquet, a row group per unit; returns (units, videos).
    Known limit: the duplicate check holds one short hash per path and per id on the driver."""
    path = work / FILE
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{FILE}.{os.getpid()}.tmp")
    seen: set[str] = set()
    ids: dict[str, str] = {}
    chunk: list[dict] = []
    units = videos = 0

    def flush(w):
        nonlocal units, chunk
        if chunk:
            name = f"{units:06d}"
            w.write_table(R.table([{"unit": name, "_k": digest(chunk), "videos": chunk}]))
            units, chunk = units + 1, []

    with pq.ParquetWriter(tmp, R.UNIT) as w:
        for r in listing(spec):
            v = video(r)
            h = digest(v["path"])[:16]
            if h in seen:
                continue
            seen.add(h)
            if ids.setdefault(digest(v["video_id"])[:16], h) != h:
                raise InputError(f"{spec}: video_id {v['video_id']!r} is used by more than one path ({v['path']})")
            chunk.append(v)
            videos += 1
            if len(chunk) == per_unit:
                flush(w)
        flush(w)
    if not videos:
        tmp.unlink()
        raise InputError(f"{spec}: no videos found (a folder, a glob, or a {'/'.join(sorted(LISTS))} list)")
    os.replace(tmp, path)
    return units, videos


def read_unit(work: Path, i: int) -> dict:
    return R.rows(pq.ParquetFile(work / FILE).read_row_group(i))[0]
