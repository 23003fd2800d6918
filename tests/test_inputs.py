"""Inputs: every entry of a folder, glob or list gets exactly one record (a video, or a failure or drop with its
reason); bad rows, symlinks and duplicates never stop the listing; ids are stable, safe WebDataset keys."""

import json
import os
import re
import shutil
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from mvid.pipeline.dag import _keys
from mvid.pipeline.inputs import InputError, read_unit, write_duplicates, write_units
from mvid.schemas.record import clip_id, video_id

SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


def entries(spec, per_unit: int = 2, **opts) -> list[dict]:
    """Every entry's record as the stages see it: the listing, then its duplicates from the keys that the
    Ray tasks make (called here directly, one unit at a time)."""
    work = Path(spec).parent / f"work-{Path(spec).name}-{per_unit}"
    n, count = write_units(str(spec), work, per_unit, **opts)
    cols = ({c: t[c].to_numpy() for c in t.column_names} for t in (_keys(i, work, "fp") for i in range(n)))
    write_duplicates(work, per_unit, cols)
    vs = [v for i in range(n) for v in read_unit(work, i)["videos"]]
    assert len(vs) == count and [v["row"] for v in vs] == sorted(v["row"] for v in vs)
    return vs


def outcome(v: dict) -> str:
    return "ok" if not v["failed"] else v["rejects"][-1]["code"]


@pytest.fixture
def videos(tmp_path):
    names = ["a.mp4", "b c.mp4", "-lead.mp4", "quo'te\".mp4", "ünï.cödé.mp4", "x.y.z.mkv", "notes.txt"]
    for i, n in enumerate(names):
        (tmp_path / n).write_bytes(b"x%d" % i)  # distinct contents
    return tmp_path


def test_folder_gives_every_file_a_record_with_safe_stable_ids(videos):
    vs = entries(videos)
    ok = [v for v in vs if not v["failed"]]
    assert len(ok) == 6 and [outcome(v) for v in vs if v["failed"]] == ["not_a_video_extension"]
    assert next(v for v in vs if v["failed"])["rejects"][0]["kind"] == "drop"
    for r in ok:
        assert SAFE.match(r["video_id"]), r["video_id"]
        assert SAFE.match(clip_id(r["video_id"], 3)) and "." not in clip_id(r["video_id"], 3)
    assert [r["video_id"] for r in entries(videos)] == [r["video_id"] for r in vs]
    assert len({r["video_id"] for r in vs}) == 7 and [v["row"] for v in vs] == list(range(1, 8))


def test_glob(videos):
    vs = entries(videos / "*.mkv", per_unit=1)
    assert [r["path"] for r in vs] == [str(videos / "x.y.z.mkv")]


def test_odd_folder_entries(tmp_path):
    """A FIFO and a folder named like videos, a symlink loop, a broken link, and symlinks in and out of the
    folder: each gets a record before any tool opens it; a folder is walked once."""
    d, outside = tmp_path / "in", tmp_path / "outside"
    (d / "sub").mkdir(parents=True)
    outside.mkdir()
    (d / "sub" / "v.mp4").write_bytes(b"v")
    (outside / "secret.mp4").write_bytes(b"s")
    (d / "folder.mp4").mkdir()
    (d / "folder.mp4" / "inner.mp4").write_bytes(b"i")
    os.mkfifo(d / "fifo.mp4")
    (d / "image.png").write_bytes(b"png")
    os.symlink(d / "loop_b.mp4", d / "loop_a.mp4")
    os.symlink(d / "loop_a.mp4", d / "loop_b.mp4")
    os.symlink(d / "gone.mp4", d / "broken.mp4")
    os.symlink(outside / "secret.mp4", d / "out.mp4")
    os.symlink("/etc/passwd", d / "passwd.mp4")
    os.symlink(d / "sub" / "v.mp4", d / "in_link.mp4")
    os.symlink(d, d / "sub" / "up")  # a cycle back to the root
    vs = entries(d)
    got = [(str(Path(v["path"]).relative_to(d)) if v["path"].startswith(str(d)) else v["path"], outcome(v)) for v in vs]
    assert got == [
        ("broken.mp4", "missing_file"),
        ("fifo.mp4", "not_a_file"),
        ("folder.mp4", "not_a_file"),
        ("folder.mp4/inner.mp4", "ok"),
        ("image.png", "not_a_video_extension"),
        ("sub/v.mp4", "ok"),  # in_link.mp4, read as its target inside the folder
        ("loop_a.mp4", "symlink_loop"),
        ("loop_b.mp4", "symlink_loop"),
        ("out.mp4", "outside_input"),
        ("passwd.mp4", "outside_input"),
        ("sub/v.mp4", "duplicate_input"),  # the same file as row 6
    ], got
    assert "row 6" in vs[-1]["rejects"][-1]["message"] and str(outside) in vs[8]["rejects"][-1]["message"]
    followed = entries(d, follow_symlinks=True)
    assert {Path(v["path"]).name for v in followed if not v["failed"]} == {"inner.mp4", "v.mp4", "secret.mp4", "passwd"}


def test_bad_rows_become_records_and_the_listing_goes_on(videos, tmp_path):
    rows = [
        '{"path": "a.mp4", "transcript": "hello", "language": "en"}',
        '{"path": "a.mp4", "video_id": 123}',
        '{"path": "a\\u0000b.mp4"}',
        '{"path": "b c.mp4", "transcript": 5}',
        "not json",
        '{"file": "a.mp4"}',
        '{"path": "x.y.z.mkv", "video_id": "same"}',
        '{"path": "-lead.mp4", "video_id": "same"}',
        '{"path": "gone.mp4"}',
        f'{{"path": "{videos / "a.mp4"}"}}',
    ]
    (tmp_path / "in.jsonl").write_text("\n".join(rows) + "\n")
    vs = entries(tmp_path / "in.jsonl")
    assert [outcome(v) for v in vs] == [
        "ok",
        "bad_input_row",
        "bad_input_row",
        "bad_input_row",
        "bad_input_row",
        "bad_input_row",
        "ok",
        "duplicate_video_id",
        "missing_file",
        "duplicate_input",
    ]
    msg = [v["rejects"][-1]["message"] if v["failed"] else "" for v in vs]
    assert "video_id: Input should be a valid string" in msg[1] and "NUL" in msg[2] and "transcript" in msg[3]
    assert "not valid JSON" in msg[4] and "path: Field required" in msg[5]
    assert "already used by row 7" in msg[7] and "the same file as row 1" in msg[9]
    assert vs[4]["path"] == f"{tmp_path / 'in.jsonl'}:5"  # no path: named by the list and its row
    assert vs[0]["input_text"] == "hello" and vs[0]["input_language"] == "en"
    assert [v["row"] for v in vs] == list(range(1, 11))


def test_lists_carry_transcripts_in_every_format(videos, tmp_path):
    rows = [
        {"path": "a.mp4", "transcript": "hello", "language": "en"},
        {"path": str(videos / "a.mp4")},  # the same file again
        {"path": "b c.mp4", "video_id": "my.id/1"},
        {"path": "gone.mp4"},
    ]
    table = pa.Table.from_pylist([{**{"transcript": None, "language": None, "video_id": None}, **r} for r in rows])
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    pq.write_table(table, tmp_path / "in.parquet")
    pcsv.write_csv(table, tmp_path / "in.csv")
    for f in ("in.jsonl", "in.parquet", "in.csv"):
        vs = entries(tmp_path / f)
        assert [outcome(v) for v in vs] == ["ok", "duplicate_input", "ok", "missing_file"], f
        assert vs[0]["input_text"] == "hello" and vs[0]["input_language"] == "en"
        assert SAFE.match(vs[2]["video_id"]) and vs[2]["video_id"].startswith("my_id_1_")


def test_content_duplicates_keep_the_first_by_input_order(tmp_path):
    d = tmp_path / "in"
    d.mkdir()
    (d / "c.mp4").write_bytes(os.urandom(3 << 20))  # longer than the first and last MiB read
    for n in ("a.mp4", "e.mp4", "b.mp4", "d.mp4"):
        shutil.copy(d / "c.mp4", d / n)
    (d / "f.mp4").write_bytes((d / "c.mp4").read_bytes()[:-1] + b"!")  # one byte differs in the last MiB
    vs = entries(d, per_unit=2)
    assert [(Path(v["path"]).name, outcome(v)) for v in vs] == [
        ("a.mp4", "ok"),
        ("b.mp4", "duplicate_content"),
        ("c.mp4", "duplicate_content"),
        ("d.mp4", "duplicate_content"),
        ("e.mp4", "duplicate_content"),
        ("f.mp4", "ok"),
    ]
    assert all("row 1 (" + str(d / "a.mp4") in v["rejects"][-1]["message"] for v in vs[1:5])
    assert all(v["rejects"][-1]["kind"] == "drop" for v in vs[1:5])


def test_input_root_confines_a_list(videos, tmp_path):
    elsewhere = tmp_path.parent / f"{tmp_path.name}-elsewhere.mp4"
    elsewhere.write_bytes(b"e")
    (tmp_path / "in.jsonl").write_text(json.dumps({"path": "a.mp4"}) + "\n" + json.dumps({"path": str(elsewhere)}))
    assert [outcome(v) for v in entries(tmp_path / "in.jsonl")] == ["ok", "ok"]  # a list may point anywhere
    confined = entries(tmp_path / "in.jsonl", input_root=videos)
    assert [outcome(v) for v in confined] == ["ok", "outside_input"]


def test_duplicates_are_recomputed_each_listing(videos):
    """work/duplicates/ follows the listing: a duplicate that goes away leaves no record behind, and the
    unit's digest changes with its duplicates (its stages recompute)."""
    shutil.copy(videos / "a.mp4", videos / "z.mp4")
    z = lambda: next(v for v in entries(videos, per_unit=8) if v["path"].endswith("z.mp4"))
    unit = lambda: read_unit(videos.parent / f"work-{videos.name}-8", 0)["_k"]
    assert outcome(z()) == "duplicate_content"
    before = unit()
    (videos / "z.mp4").write_bytes(b"now different")
    assert outcome(z()) == "ok" and unit() != before


def test_given_safe_id_is_kept():
    assert video_id("/x/a.mp4", "clip_01-a") == "clip_01-a"
    assert video_id("/x/a.mp4") == video_id("/x/a.mp4") != video_id("/y/a.mp4")


def test_a_long_or_odd_given_id_is_mapped_to_a_short_key_the_record_keeps(videos, tmp_path):
    """A given id over 64 characters, or outside [A-Za-z0-9_-], becomes a short stable key; the member names of
    its clips' samples then fit a USTAR tar, which write_tar uses."""
    from mvid.pipeline.media import write_tar

    ids = ["x" * 65, "a.b/../c", "ok_id", "y" * 64]
    (tmp_path / "in.jsonl").write_text(
        "".join(
            json.dumps({"path": n, "video_id": i}) + "\n"
            for n, i in zip(["a.mp4", "b c.mp4", "-lead.mp4", "x.y.z.mkv"], ids, strict=True)
        )
    )
    vs = entries(tmp_path / "in.jsonl")
    assert [v["video_id"] for v in vs][2:] == ["ok_id", "y" * 64] and [v["given_id"] for v in vs] == [
        *ids[:2],
        None,
        None,
    ]
    for v in vs[:2]:
        assert (
            SAFE.match(v["video_id"])
            and len(v["video_id"]) <= 64
            and v["video_id"] == entries(tmp_path / "in.jsonl")[vs.index(v)]["video_id"]
        )
    names = [f"{clip_id(v['video_id'], 9999)}.frame07.jpg" for v in vs]
    write_tar(tmp_path / "t.tar", ((n, b"x") for n in names))  # raises ValueError past USTAR's 100 bytes


def test_only_an_unreadable_list_or_nothing_found_stops_the_run(tmp_path):
    with pytest.raises(InputError, match="no videos found"):
        entries(tmp_path / "nothing*")
    (tmp_path / "l.parquet").write_bytes(b"not parquet")
    with pytest.raises(InputError, match=r"l\.parquet: cannot read the input list"):
        entries(tmp_path / "l.parquet")
    assert np.all([outcome(v) == "bad_input_row" for v in entries(_write(tmp_path / "m.jsonl", "not json\n"))])


def _write(p: Path, text: str) -> Path:
    p.write_text(text)
    return p


def test_the_listing_is_written_again_only_when_the_input_changes(videos):
    lst, work = videos / "in.jsonl", videos.parent / f"{videos.name}-work"
    lst.write_text(json.dumps({"path": "a.mp4"}) + "\n")
    stamp = lambda: (work / "inputs.json").stat().st_mtime_ns
    assert write_units(str(lst), work, 2) == (1, 1)
    first = stamp()
    lst.write_text(json.dumps({"path": "a.mp4"}) + "\n" + json.dumps({"path": "b c.mp4"}) + "\n")
    assert write_units(str(lst), work, 2) == (1, 2) and stamp() != first  # a list: its size and mtime
    again = stamp()
    assert write_units(str(lst), work, 2) == (1, 2) and stamp() == again
    n = write_units(str(videos), work, 2)  # a folder: its entries, walked
    again = stamp()
    assert write_units(str(videos), work, 2) == n and stamp() == again
    (videos / "new.mp4").write_bytes(b"n")
    assert write_units(str(videos), work, 2)[1] == n[1] + 1 and stamp() != again
