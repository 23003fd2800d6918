"""Inputs: a folder or glob of videos, or a Parquet/CSV/JSONL list with `path` and optional `video_id`,
`transcript` (a string, or segments [{start, end, text}] in video seconds) and `language`.

Every entry of the input gets exactly one record, numbered by its `row` (a list's row, or an entry of the folder
walk in sorted order): a video to process, or a failed or dropped input with its reason. A list row is validated
on its own (`bad_input_row`); in a folder every file counts (`not_a_video_extension` is a drop), and a symlink
out of the folder is refused (`outside_input`) before anything opens it, unless `follow_symlinks`. A list names
its files on purpose, so its paths may point anywhere, unless `input_root` confines them.

The listing streams into work/inputs/, one Parquet file per unit of `per_unit` consecutive entries, which every
stage then reads as a Ray Dataset; it is written again only when the input changes (write_units). Duplicates are
found after it, from keys made in Ray tasks (pipeline/dag.py): the same path, the same given video_id, or the same
content (size, first and last MiB); the first by input order stays, the others get a record, kept in
work/duplicates/ and applied by read_unit. The keys also give each video's identity (size, mtime, first and last
MiB), which the unit's digest covers: a video replaced at its path recomputes its unit."""

from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import shutil
import stat
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Annotated

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from pydantic import BaseModel, BeforeValidator, ConfigDict, StrictFloat, StrictInt, StrictStr, ValidationError

from mvid.pipeline.cache import code
from mvid.pipeline.stage import reject_of
from mvid.pipeline.store import Parts, atomic_write, digest, parquet_bytes, swap, temp
from mvid.schemas import record as R

VIDEO_EXT = {".mp4", ".mkv", ".webm", ".mov", ".avi", ".m4v", ".flv", ".ts", ".mpg", ".mpeg", ".wmv", ".3gp"}
LISTS = {".parquet", ".csv", ".jsonl"}
UNITS = "inputs"  # work/inputs/<unit>.parquet: a unit's videos as listed
LISTING = "inputs.json"  # what the listing was made from, and its size
DUPS = "duplicates"  # work/duplicates/<unit>.parquet, for units that hold duplicates
KEYS = "keys"  # the parts of the duplicate keys and identities (work/stages/keys/)
MIB = 1 << 20
NOT_A_FILE = ("not_a_file", "a folder, device or pipe, not a regular file", "error")
# Duplicate kinds, strongest first: an entry that is two kinds of duplicate gets the first one's record.
KINDS = (
    ("path", "duplicate_input", "drop", "the same file as row {row} ({path})"),
    ("video_id", "duplicate_video_id", "error", "video_id {video_id!r} is already used by row {row} ({path})"),
    ("content", "duplicate_content", "drop", "the same bytes as row {row} ({path})"),
)


class InputError(ValueError):
    """The input as a whole cannot be read (a list file that does not parse, nothing found): the run stops."""


def _none_if_empty(v):
    return None if v == "" else v  # CSV has no null: an empty cell is a missing value


Opt = Annotated[StrictStr | None, BeforeValidator(_none_if_empty)]
Number = StrictFloat | StrictInt


class Segment(BaseModel):
    start: Number
    end: Number
    text: StrictStr


class Row(BaseModel):
    """One row of an input list, checked on its own: a bad row becomes a bad_input_row record."""

    model_config = ConfigDict(extra="ignore")
    path: StrictStr
    video_id: Opt = None
    transcript: Annotated[StrictStr | list[Segment] | None, BeforeValidator(_none_if_empty)] = None
    language: Opt = None


def _rows(spec: Path) -> Iterator[tuple[int, object]]:
    """(row number, raw row) of a list; a line that is not JSON is a row too (it fails validation)."""
    if spec.suffix == ".jsonl":
        with open(spec, errors="replace") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    try:
                        yield n, json.loads(line)
                    except json.JSONDecodeError as e:
                        yield n, f"not valid JSON: {e}"
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


def _why(e: ValidationError) -> str:
    err = e.errors()[0]
    where = ".".join(map(str, err["loc"])) or "row"
    return f"{where}: {err['msg']}" + (f" (and {len(e.errors()) - 1} more)" if len(e.errors()) > 1 else "")


def _row(n: int, raw: object, spec: Path) -> dict:
    """An entry of a list: its validated row, or the reason it is bad. A row without a usable path is named by
    the list and its row number (<list>:<row>) in its record."""
    where = {"row": n, "path": None, "where": f"{spec}:{n}"}
    if isinstance(raw, str):
        return {**where, "reject": ("bad_input_row", raw, "error")}
    try:
        r = Row.model_validate(raw)
    except ValidationError as e:
        return {**where, "reject": ("bad_input_row", _why(e), "error")}
    if not r.path.strip() or "\0" in r.path:
        return {**where, "reject": ("bad_input_row", "path: empty, or holds a NUL byte", "error")}
    q = Path(r.path).expanduser()
    return {**where, "path": str(q if q.is_absolute() else spec.parent / q), "given": r}


def _file(path: str) -> tuple | None:
    """Why a path found in a folder or by a glob is not a video to read; None when it is one."""
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        return "missing_file", "a broken symlink", "error"
    if stat.S_ISDIR(mode) or not stat.S_ISREG(mode):
        return NOT_A_FILE
    if Path(path).suffix.lower() not in VIDEO_EXT:
        return "not_a_video_extension", f"not a video extension ({', '.join(sorted(VIDEO_EXT))})", "drop"
    return None


def _walk(folder: Path, root: Path, follow: bool, seen: set[Path]) -> Iterator[tuple[str, tuple | None]]:
    """Every entry under folder, in sorted order: (path, None) for a video, (path, reject) for the rest. A
    symlink to a target outside root is refused unless follow; a folder is entered once."""
    try:
        with os.scandir(folder) as it:
            entries = sorted(it, key=lambda e: e.name)
    except OSError as err:
        yield str(folder), ("unreadable_path", f"cannot list the folder: {err.strerror}", "error")
        return
    for e in entries:
        try:
            target = Path(e.path).resolve(strict=True)
        except FileNotFoundError:
            yield e.path, ("missing_file", "a broken symlink", "error")
            continue
        except (RuntimeError, OSError) as err:  # a symlink loop: RuntimeError before 3.13, OSError(ELOOP) after
            yield e.path, ("symlink_loop", f"cannot resolve: {err}", "error")
            continue
        if e.is_symlink() and not follow and not target.is_relative_to(root):
            yield e.path, ("outside_input", f"a symlink to {target}, outside the input folder {root}", "error")
            continue
        if target.is_dir():
            if Path(e.name).suffix.lower() in VIDEO_EXT:
                yield e.path, NOT_A_FILE
            if target not in seen:
                seen.add(target)
                yield from _walk(Path(e.path), root, follow, seen)
            continue
        yield e.path, _file(e.path)


def listing(spec: str, follow_symlinks: bool = False, input_root: Path | None = None) -> Iterator[dict]:
    """Every entry of the input, in order, one at a time: {row, path, given (a list's Row) or reject}."""
    p = Path(spec).expanduser()
    if p.is_file() and p.suffix in LISTS:
        entries = (_row(n, raw, p) for n, raw in _rows(p))
    elif p.is_dir():
        root = p.resolve()
        walk = _walk(p, root, follow_symlinks, {root})
        entries = ({"row": n, "path": f, "reject": why} for n, (f, why) in enumerate(walk, 1))
        input_root = None  # the folder is the root
    else:
        found = sorted(glob.glob(str(p), recursive=True)) or ([str(p)] if p.is_file() else [])
        entries = ({"row": n, "path": f, "reject": _file(f)} for n, f in enumerate(found, 1))
    confine = input_root.resolve() if input_root else None
    for e in entries:
        if confine and e["path"] and not e.get("reject"):
            target = Path(e["path"]).resolve()
            if not target.is_relative_to(confine):
                e["reject"] = ("outside_input", f"{target} is outside input_root {input_root}", "error")
        yield e


def video(e: dict) -> dict:
    """An entry as a video record; one that is not a video to read is a failed video with its reason."""
    given: Row | None = e.get("given")
    why = e.get("reject")
    path = e["path"] or e["where"]  # as found when refused: the record names the entry, not its target
    if e["path"] and not why:
        try:
            path = str(Path(e["path"]).resolve())
        except (RuntimeError, OSError):  # a symlink loop: RuntimeError before Python 3.13, OSError(ELOOP) after
            why = why or ("symlink_loop", "cannot resolve the path", "error")
    text, gid = (given.transcript, given.video_id) if given else (None, None)
    vid = R.video_id(path, gid)
    rec = {
        "video_id": vid,
        "given_id": gid if gid and gid != vid else None,
        "path": path,
        "row": e["row"],
        "failed": False,
        "clips": [],
        "rejects": [],
        "input_language": given.language if given else None,
        "input_text": text if isinstance(text, str) else None,
        "input_segments": [s.model_dump() for s in text] if isinstance(text, list) else None,
    }
    if not why and given:
        why = _file(path)
        if why and why[0] == "not_a_video_extension":
            why = None  # a list names its files on purpose: probe decides what they hold
        elif why and why[0] == "missing_file":
            why = ("missing_file", "no such file", "error")
    if why:
        code, message, kind = why
        rec["failed"], rec["rejects"] = True, [reject_of(rec, code, message, kind, stage="input")]
    return rec


def signature(spec: str, per_unit: int, follow_symlinks: bool, input_root: Path | None) -> str:
    """What the listing is made from: a list file's path, size and mtime, or every entry of a folder or glob
    (walked), with the listing's options and code."""
    h = hashlib.sha1(json.dumps([spec, per_unit, follow_symlinks, str(input_root), code([__name__])]).encode())
    p = Path(spec).expanduser()
    if p.is_file() and p.suffix in LISTS:
        st = p.stat()
        h.update(f"{p.resolve()}:{st.st_size}:{st.st_mtime_ns}".encode())
    else:
        for e in listing(spec, follow_symlinks, input_root):
            h.update(json.dumps([e["row"], e["path"], e.get("reject")]).encode())
    return h.hexdigest()


def write_units(
    spec: str, work: Path, per_unit: int, follow_symlinks: bool = False, input_root: Path | None = None
) -> tuple[int, int]:
    """Stream the listing into work/inputs/, a file per unit; returns (units, entries). An unchanged input
    (signature) keeps the listing as it is, unread: touch a list file to have it read again."""
    sig = signature(spec, per_unit, follow_symlinks, input_root)
    meta, dest = work / LISTING, work / UNITS
    old = json.loads(meta.read_text()) if meta.exists() else {}
    if old.get("sig") == sig and dest.is_dir():
        return old["units"], old["entries"]
    meta.unlink(missing_ok=True)
    new = temp(dest)
    new.mkdir(parents=True)
    chunk: list[dict] = []
    units = entries = 0

    def flush():
        nonlocal units, chunk
        if chunk:
            t = R.table([{"unit": f"{units:06d}", "_k": digest(chunk), "videos": chunk}])
            atomic_write(new / f"{units:06d}.parquet", parquet_bytes(t))
            units, chunk = units + 1, []

    for e in listing(spec, follow_symlinks, input_root):
        chunk.append(video(e))
        entries += 1
        if len(chunk) == per_unit:
            flush()
    flush()
    if not entries:
        shutil.rmtree(new)
        raise InputError(f"{spec}: no videos found (a folder, a glob, or a {'/'.join(sorted(LISTS))} list)")
    swap(new, dest)
    atomic_write(meta, json.dumps({"sig": sig, "units": units, "entries": entries}).encode())
    return units, entries


def listed(work: Path, i: int, head: bool = False) -> dict:
    """Unit i as the listing wrote it, before duplicates are applied; head: its name and digest only."""
    return R.rows(pq.read_table(work / UNITS / f"{i:06d}.parquet", columns=["unit", "_k"] if head else None))[0]


def read_unit(work: Path, i: int, head: bool = False) -> dict:
    """Unit i with its duplicates failed as work/duplicates/ says; its digest covers them and its videos'
    identities (the keys part's `out`). head: the name and digest alone, which is all that the caches are keyed
    by."""
    u = listed(work, i, head)
    d = work / DUPS / f"{u['unit']}.parquet"
    dups = pq.read_table(d).to_pylist() if d.exists() else []
    ident = Parts(work, KEYS).meta(u["unit"])
    u["_k"] = digest([u["_k"], ident and ident["out"], dups])
    for j in [] if head else dups:  # a duplicate's record is its only one: the rest is for the first to say
        v = u["videos"][j["pos"]]
        v["failed"], v["rejects"] = True, [reject_of(v, j["code"], j["message"], j["kind"], stage="input")]
    return u


def _h64(data: bytes) -> int:
    return int.from_bytes(hashlib.blake2b(data, digest_size=8).digest(), "little")


def content_key(path: str) -> int:
    """64 bits of the file's size, first MiB and last MiB: equal for byte-identical files."""
    with open(path, "rb") as f:
        size = os.fstat(f.fileno()).st_size
        head = f.read(MIB)
        f.seek(max(0, size - MIB))
        return _h64(size.to_bytes(8, "little") + head + f.read(MIB))


def stats(path: str) -> tuple[int, int, int, int] | None:
    """What tells that a file may have changed: size, mtime, inode, ctime (a copy over it changes the last two)."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return st.st_size, st.st_mtime_ns, st.st_ino, st.st_ctime_ns


def keys(u: dict) -> tuple[pa.Table, list]:
    """One row per (video, kind) of a unit: its position and 64-bit key; and each video's identity (size, mtime,
    content key; None when it failed or cannot be read). Content is read only for videos that did not fail (a file
    that vanished meanwhile is left to probe)."""
    rows, ident = [], list[tuple | None]()
    for pos, v in enumerate(u["videos"]):
        rows.append((pos, 0, _h64(v["path"].encode())))
        rows.append((pos, 1, _h64(v["video_id"].encode())))
        ident.append(None)
        if not v["failed"]:
            with contextlib.suppress(OSError):
                st = os.stat(v["path"])
                rows.append((pos, 2, content_key(v["path"])))
                ident[-1] = (st.st_size, st.st_mtime_ns, rows[-1][2])
    cols = list(zip(*rows, strict=True)) if rows else [(), (), ()]
    types = (pa.int32(), pa.int8(), pa.uint64())
    t = pa.table({n: pa.array(c, t) for n, c, t in zip(("pos", "kind", "key"), cols, types, strict=True)})
    return t, ident


def unit_digest(u: dict) -> str:
    """A listed unit and its videos' stats: what its keys, and so every stage's parts, are made from."""
    return digest([u["_k"], [stats(v["path"]) for v in u["videos"]]])


def inputs_digest(work: Path, n: int, threads: int = 16) -> str:
    """Every unit's unit_digest, in unit order, as one digest: the driver reads the listing and stats the videos in
    threads, holding a chunk of units at a time."""
    h = hashlib.sha1()
    with ThreadPoolExecutor(threads) as pool:
        for a in range(0, n, 1024):
            for d in pool.map(lambda i: unit_digest(listed(work, i)), range(a, min(n, a + 1024))):
                h.update(d.encode())
    return h.hexdigest()


def unit_keys(work: Path, i: int, fp: str) -> pa.Table:
    """Unit i's keys, kept as a part (work/stages/keys/) while the listing and its files' stats are unchanged,
    so that a rerun reads no video again; the part's `out` is the digest of the videos' identities."""
    u = listed(work, i)
    k, parts = unit_digest(u), Parts(work, KEYS)
    if parts.valid(u["unit"], k, fp):
        return parts.read(u["unit"])
    t, ident = keys(u)
    parts.write(u["unit"], t, {"in": k, "fp": fp, "out": digest(ident)})
    return t


def write_duplicates(work: Path, per_unit: int, found: Iterator[dict]) -> int:
    """From every key (rows of unit, pos, kind, key), the duplicates: each entry after the first, by input order,
    with the same key, written to work/duplicates/ (a file per unit that holds some) with the record it gets.
    Returns how many. Known limit: the driver holds 17 bytes per key (three keys per entry) while it sorts them."""
    order, kind, key = [], [], []
    for t in found:
        order.append(t["unit"] * per_unit + t["pos"])
        kind.append(t["kind"])
        key.append(t["key"])
    o, k, h = (np.concatenate(x) if x else np.zeros(0, np.int64) for x in (order, kind, key))
    done: dict[int, tuple[int, int]] = {}  # order of a duplicate -> (its kind, the order of the first)
    for kid in range(len(KINDS)):
        sel = k == kid
        oo, hh = o[sel], h[sel].astype(np.uint64)
        idx = np.lexsort((oo, hh))
        oo, hh = oo[idx], hh[idx]
        same = np.flatnonzero(hh[1:] == hh[:-1]) + 1  # an entry with the key of the one before it
        first = oo.copy()
        for i in same:  # runs are sorted by order: each run's first carries forward
            first[i] = first[i - 1]
        for i in same:
            done.setdefault(int(oo[i]), (kid, int(first[i])))
    units: dict[str, list[dict]] = {}
    cache = {}
    for dup in sorted(done):
        kid, f = done[dup]
        ui, pos = divmod(f, per_unit)
        if ui not in cache:
            cache = {ui: listed(work, ui)}  # sorted duplicates mostly name nearby firsts
        v = cache[ui]["videos"][pos]
        _, reason, kind_, text = KINDS[kid]
        du, dp = divmod(dup, per_unit)
        units.setdefault(f"{du:06d}", []).append(
            {
                "pos": dp,
                "code": reason,
                "kind": kind_,
                "message": text.format(row=v["row"], path=v["path"], video_id=v["video_id"]),
            }
        )
    schema = pa.schema([("pos", pa.int32()), ("code", pa.string()), ("kind", pa.string()), ("message", pa.string())])
    new = temp(work / DUPS)
    new.mkdir(parents=True)
    for unit, rows in units.items():
        atomic_write(new / f"{unit}.parquet", parquet_bytes(pa.Table.from_pylist(rows, schema=schema)))
    swap(new, work / DUPS)
    return sum(map(len, units.values()))
