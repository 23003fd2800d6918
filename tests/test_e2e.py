"""End to end on a local Ray: the sample corpus becomes shards that webdataset and wids read as they are;
a killed driver resumes to the same shards; one stage reruns alone."""
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pytest
import webdataset as wds
import wids

from pipeline.config import load
from pipeline.dag import Pipeline
from pipeline.executor import LocalExecutor
from schemas import shard as S

SUBSET = ["cuts.mp4", "speech_de.mp4", "noaudio.mp4"]


def manifest(out):
    return json.loads((out / S.MANIFEST).read_text())


@pytest.fixture(scope="module")
def full(samples, tmp_path_factory, mvid):
    dest, entries = samples
    d = tmp_path_factory.mktemp("e2e")
    p = mvid("run", "--input", dest / "inputs.jsonl", "--work", d / "work", "--out", d / "out")
    return d / "out", entries, p.stdout


def stage_records(out, stage):
    """Every record a stage persisted in the run's work folder, by clip id."""
    saved = [json.loads(p.read_text()) for p in (out.parent / "work/stages" / stage).glob("*/*.json")]
    return {r["clip_id"]: r for e in saved for r in e["records"]}


def test_summary_and_manifest(full):
    out, entries, stdout = full
    assert f"videos in: {len(entries)}" in stdout
    m = manifest(out)
    assert m["samples"] > len(entries) and m["shards"]
    # every sample video gave clips: in the shards, or all dropped by the global selection
    scored = {r["video_id"] for r in stage_records(out, "clipscore").values()}
    assert len(scored) == len(entries) and set(m["clips_per_video"]) <= scored
    assert len(m["clips_per_video"]) >= len(entries) - 2
    assert m["failures"].get("not_selected") and m["hours"] > 0.01
    per_video = Counter(r["video_id"] for r in stage_records(out, "split").values())
    assert max(per_video.values()) >= 20  # the 212 s shipped video, cut into shots


def test_webdataset_reads_every_sample_with_all_fields(full):
    out, _, _ = full
    m = manifest(out)
    keys = []
    for s in wds.WebDataset(str(out / m["pattern"]), shardshuffle=False).decode("rgb"):
        meta = s["json"]
        keys.append(s["__key__"])
        assert s["__key__"] == meta["clip_id"] and "." not in s["__key__"]
        assert isinstance(s["mp4"], bytes) and len(s["mp4"]) > 1000
        frames = [s[f"frame{i:02d}.jpg"] for i in range(8)]
        assert all(f.shape == (224, f.shape[1], 3) or f.shape == (f.shape[0], 224, 3) for f in frames)
        assert ("wav" in s) == meta["has_audio"]
        if not meta["has_audio"]:
            assert meta["reasons"]["audio"] == "no_audio_stream"
        for k in ("video_id", "start", "end", "duration", "fps", "probe", "start_frame", "end_frame"):
            assert k in meta, k
    assert len(keys) == m["samples"] == len(set(keys))
    assert keys == sorted(keys)


def samples_meta(out):
    m = manifest(out)
    return [json.loads(s["json"]) for s in wds.WebDataset(str(out / m["pattern"]), shardshuffle=False)]


def test_speech_clips_have_s_captions_with_provenance(full):
    out, _, _ = full
    scored = stage_records(out, "clipscore")  # every clip, before the global selection
    speech = [x for x in scored.values() if "/speech_" in x["path"]]
    assert len(speech) >= 4
    for x in speech:
        t = x["translation"]
        assert x["captions"]["S"] == t["text"] and t["translator"] in ("none", "seamless", "llm")
        assert x["lid"]["language"] and 0 <= x["lid"]["confidence"] <= 1
        assert x["transcript"]["source"] in ("asr", "input") and x["models"]["transcript"]
    given = [x for x in speech if x["path"].endswith("speech_en.mp4")]
    assert given and all(x["transcript"]["source"] == "input" and x["models"]["transcript"] == "input" for x in given)
    metas = samples_meta(out)
    assert sum("/speech_" in x["path"] for x in metas) >= 2
    for x in metas:  # what the shards hold is what the stages made
        for k in ("captions", "reasons", "transcript", "lid", "translation", "models"):
            assert x.get(k) == scored[x["clip_id"]].get(k), (x["clip_id"], k)
        if not x["has_audio"]:
            assert x["reasons"]["S"] == "no_audio" and "S" not in x["captions"] and "A" not in x["captions"]


def test_five_captions_or_reasons_and_selection(full):
    out, _, _ = full
    metas = samples_meta(out)
    for x in metas:
        for k in ("A", "V", "S", "AV", "AVS"):
            assert (k in x["captions"]) != (k in x["reasons"]), (x["clip_id"], k)
        assert x["models"]["V"].startswith("tiny-random/") and "clip_emb" not in x
        assert set(x["clip_scores"]) >= {"V"} and x["clip_score"] is not None
    # the shards hold the selected clips only; the select stage kept every score
    saved = [json.loads(p.read_text()) for p in (out.parent / "work/stages/select").glob("*/*.json")]
    kept = {r["clip_id"] for e in saved for r in e["records"]}
    dropped = [j for e in saved for j in e["rejects"]]
    assert kept == {x["clip_id"] for x in metas} and dropped
    assert all(j["kind"] == "drop" and "clip_score" in j for j in dropped)
    assert min(x["clip_score"] for x in metas) >= max((j["clip_score"] for j in dropped
                                                     if j["code"] == "not_selected"), default=-1)
    fails = [json.loads(x) for x in (out / S.FAILURES).read_text().splitlines()]
    assert {j["id"] for j in dropped} <= {j["id"] for j in fails}


def test_wids_and_index(full):
    import pyarrow.parquet as pq
    out, _, _ = full
    m = manifest(out)
    ds = wids.ShardListDataset(str(out / S.WIDS))
    assert len(ds) == m["samples"]
    first, last = ds[0], ds[len(ds) - 1]
    assert {".mp4", ".json", ".frame00.jpg"} <= set(first)
    index = pq.read_table(out / S.INDEX).to_pylist()
    assert [r["key"] for r in index] == sorted(r["key"] for r in index)
    assert index[0]["key"] == first["__key__"] and index[-1]["key"] == last["__key__"]
    assert len({r["shard"] for r in index}) == len(m["shards"])


def test_clips_are_frame_accurate(full):
    out, _, _ = full
    m = manifest(out)
    for s in list(wds.WebDataset(str(out / m["pattern"]), shardshuffle=False))[:6]:
        meta = json.loads(s["json"])
        n = subprocess.run(["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0", "-show_entries",
                            "stream=nb_read_frames", "-of", "csv=p=0", "pipe:"], input=s["mp4"],
                           capture_output=True, check=True).stdout.decode().strip()
        assert int(n) == meta["end_frame"] - meta["start_frame"], meta["clip_id"]


def test_inspect_and_verify(full, mvid):
    out, _, _ = full
    info = json.loads(mvid("shards", "inspect", out, "--json").stdout)
    m = manifest(out)
    assert info["samples"] == m["samples"] and info["videos"] == len(m["clips_per_video"])
    assert info["fields"]["mp4"] == info["samples"] and info["fields"]["frame07.jpg"] == info["samples"]
    assert "clips per video" in mvid("shards", "inspect", out).stdout
    assert mvid("shards", "verify", out).stdout.strip().endswith("ok")


def test_resume_after_killed_driver_equals_uninterrupted(samples, tmp_path, mvid, invariants):
    dest, _ = samples
    lst = tmp_path / "in.jsonl"
    lst.write_text("".join(json.dumps({"path": str(dest / n)}) + "\n" for n in SUBSET))
    args = lambda tag: ["run", "--input", lst, "--work", tmp_path / tag / "work", "--out", tmp_path / tag / "out"]
    mvid(*args("a"))
    # Kill the driver (and the local Ray it started) once some clips are extracted, before any shard exists.
    proc = subprocess.Popen([sys.executable, "-m", "pipeline.cli", *map(str, args("b"))], start_new_session=True,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while not list((tmp_path / "b/work/stages/extract").glob("*/*.json")) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b/out" / S.MANIFEST).exists(), "the run finished before it could be killed"
    mvid(*args("b"))
    a, b = manifest(tmp_path / "a/out"), manifest(tmp_path / "b/out")
    assert a["samples"] == b["samples"] > len(SUBSET)
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    for sa, sb in zip(wds.WebDataset(str(tmp_path / "a/out" / a["pattern"]), shardshuffle=False),
                      wds.WebDataset(str(tmp_path / "b/out" / b["pattern"]), shardshuffle=False)):
        assert sa["__key__"] == sb["__key__"]
        assert {k: v for k, v in sa.items() if not k.startswith("__")} == {k: v for k, v in sb.items()
                                                                            if not k.startswith("__")}
    invariants(tmp_path / "b/out", [dest / n for n in SUBSET], tmp_path / "b/work")


def test_stage_rerun_replaces_only_that_stage(samples, tmp_path):
    dest, _ = samples
    (tmp_path / "bad.mp4").write_text("not a video")
    lst = tmp_path / "in.jsonl"
    lst.write_text("".join(json.dumps({"path": str(p)}) + "\n" for p in [dest / "cuts.mp4", dest / "noise.mp4",
                                                                         tmp_path / "bad.mp4"]))
    cfg = load("demo", [f"input={lst}", f"work_dir={tmp_path / 'work'}", f"output_dir={tmp_path / 'out'}"])
    pipe, ex = Pipeline(cfg), LocalExecutor()
    pipe.run(ex)
    snap = lambda: {p.relative_to(tmp_path): (p.stat().st_mtime_ns, p.read_bytes())
                    for p in (tmp_path / "work/stages").rglob("*.json")}
    before = snap()
    pipe.rerun(ex, "extract", "all")
    after = snap()
    changed = {p.parts[2] for p in before if before[p][0] != after[p][0]}
    assert changed == {"extract"}
    assert all(before[p][1] == after[p][1] for p in before)  # same inputs, same outputs
    before = after
    assert pipe.rerun(ex, "probe", "failed") == 0  # only bad.mp4 reruns, and fails again
    after = snap()
    assert [p.name for p in before if before[p][0] != after[p][0]] == [p.name for p in before if "bad_" in p.name]
    vid = next(p.stem for p in before if p.parts[2] == "split" and "cuts_" in p.name)
    pipe.rerun(ex, "split", ids=[vid])
    changed = [p for p in before if snap()[p][0] != after[p][0]]
    assert [p.stem for p in changed] == [vid] and changed[0].parts[2] == "split"
