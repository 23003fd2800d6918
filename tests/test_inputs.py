"""Inputs and ids: folders, globs, Parquet/CSV/JSONL lists; stable ids that are safe WebDataset keys."""

import json
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv
import pyarrow.parquet as pq
import pytest

from mvid.pipeline.inputs import InputError, read_unit, write_units
from mvid.schemas.record import clip_id, video_id

SAFE = re.compile(r"^[A-Za-z0-9_][A-Za-z0-9_-]*$")


def discover(spec: str, per_unit: int = 2) -> tuple[list[dict], list[dict]]:
    """The listing as write_units stores it: videos to process, and the rejects of failed ones."""
    work = Path(spec).parent / f"work{per_unit}"
    n, count = write_units(spec, work, per_unit)
    units = [read_unit(work, i) for i in range(n)]
    assert [len(u["videos"]) for u in units[:-1]] == [per_unit] * (n - 1)
    assert sum(len(u["videos"]) for u in units) == count
    vs = [v for u in units for v in u["videos"]]
    return [v for v in vs if not v["failed"]], [j for v in vs for j in v["rejects"]]


@pytest.fixture
def videos(tmp_path):
    names = ["a.mp4", "b c.mp4", "-lead.mp4", "quo'te\".mp4", "ünï.cödé.mp4", "x.y.z.mkv", "notes.txt"]
    for n in names:
        (tmp_path / n).write_bytes(b"x")
    return tmp_path


def test_folder_finds_videos_with_safe_stable_ids(videos):
    recs, rejects = discover(str(videos))
    assert len(recs) == 6 and not rejects  # notes.txt is not a video
    for r in recs:
        assert SAFE.match(r["video_id"]), r["video_id"]
        assert SAFE.match(clip_id(r["video_id"], 3)) and "." not in clip_id(r["video_id"], 3)
    assert [r["video_id"] for r in discover(str(videos))[0]] == [r["video_id"] for r in recs]
    assert len({r["video_id"] for r in recs}) == 6


def test_glob(videos):
    recs, _ = discover(str(videos / "*.mkv"), per_unit=1)
    assert [r["path"] for r in recs] == [str(videos / "x.y.z.mkv")]


def test_lists_carry_transcripts_dedupe_and_report_missing(videos, tmp_path):
    rows = [
        {"path": "a.mp4", "transcript": "hello", "language": "en"},
        {"path": str(videos / "a.mp4")},  # the same file again: processed once
        {"path": "b c.mp4", "video_id": "my.id/1"},
        {"path": "gone.mp4"},
    ]
    (tmp_path / "in.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    table = pa.Table.from_pylist([{**{"transcript": None, "language": None, "video_id": None}, **r} for r in rows])
    pq.write_table(table, tmp_path / "in.parquet")
    pcsv.write_csv(table, tmp_path / "in.csv")
    for f in ("in.jsonl", "in.parquet", "in.csv"):
        recs, rejects = discover(str(tmp_path / f))
        assert [r["path"] for r in recs] == [str(videos / "a.mp4"), str(videos / "b c.mp4")], f
        assert recs[0]["input_text"] == "hello" and recs[0]["input_language"] == "en"
        assert SAFE.match(recs[1]["video_id"]) and recs[1]["video_id"].startswith("my_id_1_")
        assert [(j["code"], j["path"]) for j in rejects] == [("missing_file", str(videos / "gone.mp4"))]


def test_given_safe_id_is_kept():
    assert video_id("/x/a.mp4", "clip_01-a") == "clip_01-a"
    assert video_id("/x/a.mp4") == video_id("/x/a.mp4") != video_id("/y/a.mp4")


def test_bad_inputs_name_the_file(tmp_path):
    with pytest.raises(InputError, match="no videos found"):
        discover(str(tmp_path / "nothing*"))
    (tmp_path / "l.jsonl").write_text('{"path": "a.mp4"}\nnot json\n')
    with pytest.raises(InputError, match=r"l.jsonl:2: not valid JSON"):
        discover(str(tmp_path / "l.jsonl"))
    (tmp_path / "m.jsonl").write_text('{"file": "a.mp4"}\n')
    with pytest.raises(InputError, match=r"m.jsonl: row 1 has no 'path'"):
        discover(str(tmp_path / "m.jsonl"))
