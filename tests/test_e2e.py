"""End to end on a local Ray: the sample corpus becomes shards that webdataset and wids read as they are;
a killed driver resumes to the same shards; one stage reruns alone."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter

import pyarrow.parquet as pq
import pytest
import webdataset as wds
import wids

from mvid.models.samples import frame_count, wer
from mvid.pipeline.config import load
from mvid.pipeline.dag import Pipeline
from mvid.pipeline.executor import RayExecutor
from mvid.schemas import record as R
from mvid.schemas import shard as S
from mvid.stages.shard import compact
from mvid.stages.translate import route

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

SUBSET = ["cuts.mp4", "speech_de.mp4", "noaudio.mp4"]


def manifest(out):
    return json.loads((out / S.MANIFEST).read_text())


@pytest.fixture(scope="module")
def stage_records(persisted):
    """Every clip a stage persisted in the run's work folder, by clip id."""
    return lambda out, stage: persisted[1](out.parent / "work", stage)


def test_summary_and_manifest(full, stage_records):
    out, entries, stdout, stderr = full
    assert f"videos in: {len(entries)}" in stdout
    # Ray's own lines (Ray Data's progress, resource warnings, core worker errors) are in the run's log only
    for noise in (
        "streaming_executor",
        "logging_progress",
        "core_worker",
        "Cluster resources",
        "(MapWorker",
        "(raylet)",
    ):
        assert noise not in stdout + stderr, noise
    assert "Ray's own log lines go to" in stderr and "shards: 100%" in stderr  # mvid's progress
    assert "Starting execution" in (out.parent / "work/logs/ray.log").read_text()
    m = manifest(out)
    assert m["samples"] > len(entries) and m["shards"]
    # every sample video gave clips: in the shards, or all dropped by the global selection
    scored = {r["video_id"] for r in stage_records(out, "clipscore").values()}
    assert len(scored) == len(entries) == m["videos"]
    assert len(entries) - 2 <= m["videos_with_clips"] <= len(entries)
    assert m["failures"].get("not_selected") and m["hours"] > 0.01
    per_video = Counter(r["video_id"] for r in stage_records(out, "split").values())
    assert max(per_video.values()) >= 15  # the shipped video's first minute, cut into shots


def test_webdataset_reads_every_sample_with_all_fields(full, samples):
    out = full[0]
    m = manifest(out)
    keys, seen = [], []
    for s in wds.WebDataset(S.urls(out), shardshuffle=False).decode("rgb"):
        meta = s["json"]
        keys.append(s["__key__"])
        seen.append((meta["path"], meta["clip_index"]))
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
    # input order: the videos as listed, each video's clips in order
    listed = [json.loads(x)["path"] for x in (samples[0] / "inputs.jsonl").read_text().splitlines()]
    assert seen == sorted(seen, key=lambda x: (listed.index(x[0]), x[1]))


def samples_meta(out):
    return [json.loads(s["json"]) for s in wds.WebDataset(S.urls(out), shardshuffle=False)]


def test_speech_clips_have_s_captions_with_provenance(full, stage_records):
    out = full[0]
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
            assert x.get(k) == compact(scored[x["clip_id"]]).get(k), (x["clip_id"], k)
        if not x["has_audio"]:
            assert x["reasons"]["S"] == "no_audio" and "S" not in x["captions"] and "A" not in x["captions"]


def test_real_speech_models(full, stage_records):
    """The demo's real Whisper base, VAD and fastText: right language, confident, few word errors on each
    speech sample; the paper's translator rule; no transcript where there is no speech; fused English text from
    the real LLM."""
    out, entries = full[0], full[1]
    scored = stage_records(out, "clipscore")
    by = {
        e["name"]: sorted((x for x in scored.values() if x["path"] == e["path"]), key=lambda x: x["clip_index"])
        for e in entries
    }
    for e in entries:
        clips = by[e["name"]]
        if e["name"] == "speech_en.mp4":  # its transcript comes with the input
            continue
        if e["audio"] == "speech":
            said = " ".join(x["transcript"]["text"] for x in clips)
            assert all(x["transcript"]["source"] == "asr" for x in clips)
            assert wer(e["text"], said) <= 0.3, (e["name"], said)
            for x in clips:
                lid = x["lid"]
                assert lid["language"] == e["language"] and lid["confidence"] >= 0.95, (e["name"], lid)
                assert x["translation"]["translator"] == route(lid["language"], lid["confidence"]) == "seamless"
                assert "whisper-base" in x["models"]["transcript"] and "/" not in x["models"]["lid"]
        elif e["audio"] != "original":  # music, noise, silence, no audio: no speech caption, and why
            for x in clips:
                assert not x["captions"].get("S") and x["reasons"]["S"] in ("no_speech", "silence", "no_audio"), x
    # Fed the tiny captioners' noise, SmolLM2 mostly fails (copies an input or writes tags): recorded, not kept
    for x in scored.values():
        for k in ("AV", "AVS"):
            if x["captions"].get(k):
                parts = [x["captions"].get(m) for m in ("A", "V", "S")]
                assert x["models"][k] == "smollm2-135m-instruct" and x["captions"][k] not in parts
            else:
                assert x["reasons"][k] in ("missing_modality", "marked_input", "fusion_failed")


def test_five_captions_or_reasons_and_selection(full, stage_records):
    out = full[0]
    metas = samples_meta(out)
    for x in metas:
        for k in ("A", "V", "S", "AV", "AVS"):
            assert (k in x["captions"]) != (k in x["reasons"]), (x["clip_id"], k)
        assert x["models"]["V"].startswith("tiny-random/") and "clip_emb" not in x
        assert set(x["clip_scores"]) >= {"V"} and x["clip_score"] is not None
    # the shards hold the selected clips only; every dropped clip keeps its score in its drop record
    dropped = [j for j in S.failures(out) if j["stage"] == "select"]
    scored = stage_records(out, "clipscore")
    assert dropped and {x["clip_id"] for x in metas} | {j["id"] for j in dropped} == set(scored)
    assert not {x["clip_id"] for x in metas} & {j["id"] for j in dropped}
    assert all(j["kind"] == "drop" and j["clip_score"] == scored[j["id"]]["clip_score"] for j in dropped)
    assert min(x["clip_score"] for x in metas) >= max(
        (j["clip_score"] for j in dropped if j["code"] == "not_selected"), default=-1
    )


def test_wids_and_index(full):
    import pyarrow.parquet as pq

    out = full[0]
    m = manifest(out)
    ds = wids.ShardListDataset(str(out / S.WIDS))
    assert len(ds) == m["samples"]
    first, last = ds[0], ds[len(ds) - 1]
    assert {".mp4", ".json", ".frame00.jpg"} <= set(first)
    index = pq.read_table(out / S.INDEX).to_pylist()
    assert len(index) == m["samples"] and index[0]["key"] == first["__key__"] and index[-1]["key"] == last["__key__"]
    assert [r["key"] for r in index] == [s["__key__"] for s in wds.WebDataset(S.urls(out), shardshuffle=False)]
    assert {r["shard"] for r in index} <= {s["name"] for s in m["shards"]}


def test_clips_are_frame_accurate(full):
    out = full[0]
    for s in list(wds.WebDataset(S.urls(out), shardshuffle=False))[:6]:
        meta = json.loads(s["json"])
        assert frame_count(s["mp4"]) == meta["end_frame"] - meta["start_frame"], meta["clip_id"]


def test_inspect_and_verify(full, mvid):
    out = full[0]
    info = json.loads(mvid("shards", "inspect", out, "--json").stdout)
    m = manifest(out)
    assert info["samples"] == m["samples"] and info["videos"] == m["videos"]
    assert info["fields"]["mp4"] == info["samples"] and info["fields"]["frame07.jpg"] == info["samples"]
    assert "clips per video" in mvid("shards", "inspect", out).stdout
    assert mvid("shards", "verify", out).stdout.strip().endswith("ok")


@pytest.mark.timeout(1800)  # three pipeline runs; on a loaded 2-core machine one may take ten minutes
def test_resume_after_killed_driver_equals_uninterrupted(samples, tmp_path, mvid, invariants):
    dest, _ = samples
    lst = tmp_path / "in.jsonl"
    lst.write_text("".join(json.dumps({"path": str(dest / n)}) + "\n" for n in SUBSET))
    args = lambda tag: ["run", "--input", lst, "--work", tmp_path / tag / "work", "--out", tmp_path / tag / "out"]
    mvid(*args("a"))
    # Kill the driver (and the local Ray it started) once some clips are extracted, before any shard exists.
    proc = subprocess.Popen(
        [sys.executable, "-m", "mvid.pipeline.cli", *map(str, args("b"))],
        start_new_session=True,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while not list((tmp_path / "b/work/stages/extract").glob("*.parquet")) and time.time() < deadline:
        time.sleep(0.2)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()
    assert not (tmp_path / "b/out" / S.MANIFEST).exists(), "the run finished before it could be killed"
    mvid(*args("b"))
    a, b = manifest(tmp_path / "a/out"), manifest(tmp_path / "b/out")
    assert a["samples"] == b["samples"] > len(SUBSET)
    assert [s["sha256"] for s in a["shards"]] == [s["sha256"] for s in b["shards"]]
    for sa, sb in zip(
        wds.WebDataset(S.urls(tmp_path / "a/out"), shardshuffle=False),
        wds.WebDataset(S.urls(tmp_path / "b/out"), shardshuffle=False),
        strict=True,
    ):
        assert sa["__key__"] == sb["__key__"]
        assert {k: v for k, v in sa.items() if not k.startswith("__")} == {
            k: v for k, v in sb.items() if not k.startswith("__")
        }
    invariants(tmp_path / "b/out", [dest / n for n in SUBSET], tmp_path / "b/work")


def test_stage_rerun_replaces_only_that_stage(samples, tmp_path, persisted):
    videos = persisted[0]
    dest, _ = samples
    (tmp_path / "bad.mp4").write_text("not a video")
    lst = tmp_path / "in.jsonl"
    lst.write_text(
        "".join(
            json.dumps({"path": str(p)}) + "\n" for p in [dest / "cuts.mp4", dest / "noise.mp4", tmp_path / "bad.mp4"]
        )
    )
    cfg = load("demo", [f"input={lst}", f"work_dir={tmp_path / 'work'}", f"output_dir={tmp_path / 'out'}"])
    pipe, ex = Pipeline(cfg), RayExecutor(num_cpus=2, object_store_mb=256)
    pipe.run(ex)
    work = tmp_path / "work"
    snap = lambda: {
        p.relative_to(work / "stages"): (p.stat().st_mtime_ns, p.read_bytes())
        for p in (work / "stages").rglob("*.parquet")
    }
    unit = {
        v["path"]: u["unit"]
        for p in (work / "stages/probe").glob("*.parquet")
        for u in R.rows(pq.read_table(p))
        for v in u["videos"]
    }
    before = snap()
    assert pipe.rerun(ex, "extract", "all") == 3
    after = snap()
    assert {p.parts[0] for p in before if before[p][0] != after[p][0]} == {"extract"}
    assert all(before[p][1] == after[p][1] for p in before)  # same inputs, same outputs
    before = after
    pipe.rerun(ex, "probe", "failed")  # only bad.mp4 reruns, and fails again
    after = snap()
    assert [str(p) for p in before if before[p][0] != after[p][0]] == [
        f"probe/{unit[str(tmp_path / 'bad.mp4')]}.parquet"
    ]
    vid = next(v for v in videos(work, "split") if v.startswith("cuts_"))
    pipe.rerun(ex, "split", ids=[vid])
    changed = [str(p) for p in before if snap()[p][0] != after[p][0]]
    assert changed == [f"split/{unit[str(dest / 'cuts.mp4')]}.parquet"]
