"""Persisted stage outputs: one Parquet part per unit per stage, work/stages/<stage>/<unit>.parquet.

A part's footer holds its cache chain: `in` (the digest of the unit as it came in), `fp` (the stage's
fingerprint: params, code version, model identities) and `out` (the digest of what it made, which the next stage
takes as its `in`). A part is valid when both match; a newer part replaces an older one of the same unit.
While a unit runs, work/attempts/<stage>/<unit> counts its starts in this run, so that an input that kills its
worker is found; the file goes when the part is written."""

from __future__ import annotations

import hashlib
import io
import json
import os
import secrets
import shutil
import socket
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq


def digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def temp(path: Path) -> Path:
    """A temporary name beside path, unique across processes and hosts on shared storage."""
    return path.with_name(f".{path.name}.{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def swap(new: Path, dest: Path) -> None:
    """Put folder new in place of folder dest (on one file system): dest is briefly absent, never mixed."""
    old = temp(dest)
    if dest.exists():
        os.rename(dest, old)
    os.rename(new, dest)
    shutil.rmtree(old, ignore_errors=True)


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temp(path)
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def parquet_bytes(t: pa.Table, meta: dict | None = None) -> bytes:
    if meta:
        t = t.replace_schema_metadata({**(t.schema.metadata or {}), b"mvid": json.dumps(meta).encode()})
    buf = io.BytesIO()
    pq.write_table(t, buf)
    return buf.getvalue()


def footer(path: Path) -> dict | None:
    """The mvid metadata of a Parquet file, read from its footer alone; None when the file is absent."""
    try:
        meta = pq.read_schema(path).metadata or {}
    except FileNotFoundError:
        return None
    return json.loads(meta.get(b"mvid", b"{}"))


class Parts:
    def __init__(self, work: Path, stage: str):
        self.work, self.stage = Path(work), stage
        self.root = self.work / "stages" / stage

    def path(self, unit: str) -> Path:
        return self.root / f"{unit}.parquet"

    def meta(self, unit: str) -> dict | None:
        return footer(self.path(unit))

    def valid(self, unit: str, key_in: str, fp: str) -> dict | None:
        m = self.meta(unit)
        return m if m and m.get("in") == key_in and m.get("fp") == fp else None

    def read(self, unit: str) -> pa.Table:
        return pq.read_table(self.path(unit))

    def write(self, unit: str, t: pa.Table, meta: dict) -> None:
        atomic_write(self.path(unit), parquet_bytes(t, meta))
        self.attempts(unit).unlink(missing_ok=True)

    def attempts(self, unit: str) -> Path:
        return self.work / "attempts" / self.stage / unit

    def starts(self, unit: str, run: str) -> list[str]:
        """What this run (a Ray job: a driver) started on this unit and never stored: 'batch', or an item's key
        per line. Starts of earlier runs were cut short by their driver, not by a worker's death: they do not
        count."""
        try:
            lines = self.attempts(unit).read_text().splitlines()
        except FileNotFoundError:
            return []
        return [w for r, _, w in (x.partition(" ") for x in lines) if r == run]

    def start(self, unit: str, what: str, run: str) -> None:
        p = self.attempts(unit)
        p.parent.mkdir(parents=True, exist_ok=True)
        with open(p, "a") as f:
            f.write(f"{run} {what}\n")
            f.flush()
            os.fsync(f.fileno())
