"""Persisted stage outputs under work/stages/<stage>/, one JSON per input key, written atomically."""
from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Iterator


def digest(obj) -> str:
    return hashlib.sha1(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()


def atomic_write(path: Path, data: bytes) -> None:
    """Write to a temporary name, fsync, then rename: readers never see a partial file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(tmp, "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


class Store:
    def __init__(self, work: Path, stage: str):
        self.root = Path(work) / "stages" / stage

    def path(self, key: str) -> Path:
        return self.root / hashlib.sha1(key.encode()).hexdigest()[:2] / f"{key}.json"

    def get(self, key: str) -> dict | None:
        try:
            return json.loads(self.path(key).read_text())
        except FileNotFoundError:
            return None

    def put(self, key: str, input_hash: str, records: list[dict], rejects: list[dict]) -> None:
        entry = {"key": key, "input_hash": input_hash, "records": records, "rejects": rejects}
        atomic_write(self.path(key), json.dumps(entry, sort_keys=True).encode())
        self.started(key).unlink(missing_ok=True)

    def started(self, key: str) -> Path:
        """work/attempts/<stage>/<key>: how often a key was started and not stored (its worker died)."""
        return self.root.parent.parent / "attempts" / self.root.name / key

    def tries(self, key: str) -> int:
        p = self.started(key)
        return int(p.read_text()) if p.exists() else 0

    def start(self, key: str) -> None:
        atomic_write(self.started(key), str(self.tries(key) + 1).encode())

    def entries(self) -> Iterator[dict]:
        for p in sorted(self.root.glob("*/*.json")):
            yield json.loads(p.read_text())
