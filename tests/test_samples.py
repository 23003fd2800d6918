"""The sample generator: files, streams, exact frame counts, and ground truth that matches the pictures."""

import json
import subprocess

import numpy as np
import pytest

from mvid.models.samples import DEMO_FRAMES, make_cut_video, make_samples


def probe(path) -> dict:
    out = subprocess.run(
        ["ffprobe", "-v", "error", "-count_frames", "-show_streams", "-of", "json", str(path)],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return {s["codec_type"]: s for s in json.loads(out)["streams"]}


def gray(path, w=32, h=18) -> np.ndarray:
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-vf", f"scale={w}:{h}", "-f", "rawvideo", "-pix_fmt", "gray", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return np.frombuffer(out, np.uint8).reshape(-1, h, w).astype(np.float32)


def pcm(path) -> np.ndarray:
    out = subprocess.run(
        ["ffmpeg", "-v", "error", "-i", str(path), "-map", "0:a:0", "-ac", "1", "-f", "s16le", "-"],
        capture_output=True,
        check=True,
        timeout=60,
    ).stdout
    return np.frombuffer(out, np.int16).astype(np.float32) / 32768


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    dest = tmp_path_factory.mktemp("samples")
    return dest, make_samples(dest)


def test_corpus_streams_and_frame_counts(corpus):
    dest, entries = corpus
    names = {e["name"] for e in entries}
    assert names == {
        "transnet.mp4",
        "cuts.mp4",
        "dissolve.mp4",
        "noise.mp4",
        "silence.mp4",
        "noaudio.mp4",
        "speech_en.mp4",
        "speech_de.mp4",
        "speech_es.mp4",
        "speech_fr.mp4",
    }
    for e in entries:
        st = probe(dest / e["name"])
        assert st["video"]["codec_name"] == "h264", e["name"]
        assert int(st["video"]["nb_read_frames"]) == e["frames"], e["name"]
        assert ("audio" in st) == (e["audio"] is not None), e["name"]
        if e["name"] != "transnet.mp4":
            assert (st["video"]["width"], st["video"]["height"]) == (320, 180)
            assert st["video"]["pix_fmt"] == "yuv420p"
            if e["audio"]:
                assert st["audio"]["codec_name"] == "aac"
                assert abs(float(st["audio"]["duration"]) - e["frames"] / e["fps"]) < 0.05, e["name"]
    assert next(e for e in entries if e["name"] == "transnet.mp4")["frames"] == DEMO_FRAMES  # its first minute


def test_truth_and_input_list(corpus):
    dest, entries = corpus
    truth = json.loads((dest / "truth.json").read_text())
    assert truth["cuts.mp4"] == {"audio": "music", "fps": 25, "frames": 195, "cuts": [50, 90, 150], "transitions": []}
    # 50 + 50 + 50 frames, a hard cut then 12 blended frames (scenes 2 and 3 overlap by 13 frames)
    assert truth["dissolve.mp4"]["frames"] == 137
    assert truth["dissolve.mp4"]["cuts"] == [50, 94] and truth["dissolve.mp4"]["transitions"] == [[88, 99]]
    assert truth["speech_de.mp4"]["language"] == "de" and truth["speech_de.mp4"]["cuts"] == []
    rows = [json.loads(line) for line in (dest / "inputs.jsonl").read_text().splitlines()]
    assert [r["path"] for r in rows] == [e["path"] for e in entries]
    assert all((dest / r["path"]).is_file() for r in rows)
    given = [r for r in rows if "transcript" in r]
    assert len(given) == 1 and given[0]["language"] == "en"
    assert given[0]["transcript"] == truth["speech_en.mp4"]["text"]


def test_cuts_match_the_pictures(corpus):
    """Frame differences jump exactly at the true hard cuts and stay low elsewhere (dissolves blend)."""
    dest, _ = corpus
    truth = json.loads((dest / "truth.json").read_text())
    for name in ("cuts.mp4", "dissolve.mp4", "noise.mp4", "noaudio.mp4"):
        t = truth[name]
        d = np.abs(np.diff(gray(dest / name), axis=0)).mean(axis=(1, 2))  # d[i-1]: frame i vs i-1
        hard = set(t["cuts"]) - {a + (b - a + 1) // 2 for a, b in t["transitions"]}
        high = {i + 1 for i in np.flatnonzero(d > 25)}
        assert high == hard, (name, high, hard)
        for a, b in t["transitions"]:
            assert d[a - 1 : b].max() < 25


def test_audio_content(corpus):
    dest, _ = corpus
    rms = {n: float(np.sqrt(np.mean(pcm(dest / n) ** 2))) for n in ("silence.mp4", "noise.mp4", "speech_es.mp4")}
    assert rms["silence.mp4"] < 1e-4
    assert rms["noise.mp4"] > 0.02 and rms["speech_es.mp4"] > 0.02


def test_dissolve_everywhere_and_wav_audio(tmp_path):
    wav = tmp_path / "tone.wav"
    tone = "sine=frequency=440:sample_rate=16000:duration=0.5"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-f", "lavfi", "-i", tone, str(wav)], check=True, timeout=60)
    t = make_cut_video(tmp_path / "v.mp4", [20, 15, 25], fps=10, size=(160, 90), transition=("dissolve", 5), audio=wav)
    assert t == {"fps": 10, "frames": 48, "cuts": [17, 26], "transitions": [[15, 19], [24, 28]]}
    st = probe(tmp_path / "v.mp4")
    assert int(st["video"]["nb_read_frames"]) == 48 and st["video"]["r_frame_rate"] == "10/1"
    assert abs(float(st["audio"]["duration"]) - 4.8) < 0.05  # the 0.5 s wav padded to the video
    a = pcm(tmp_path / "v.mp4")
    assert np.abs(a[: len(a) // 20]).max() > 0.1 and np.abs(a[len(a) // 2 :]).max() < 1e-3


def test_dissolve_range_is_exact(tmp_path):
    """Against the same two scenes joined by a hard cut: the frame before the range is the outgoing
    scene, frames inside are neither scene, the frame after is the incoming one."""
    make_cut_video(tmp_path / "cut.mp4", [20, 15], size=(64, 36))
    t = make_cut_video(tmp_path / "mix.mp4", [20, 15], size=(64, 36), transition=("dissolve", 5))
    assert t["transitions"] == [[15, 19]] and t["frames"] == 29
    cut, mix = gray(tmp_path / "cut.mp4"), gray(tmp_path / "mix.mp4")

    def same(i, j):  # mix frame i vs cut frame j; B's frame k is cut frame 20 + k, mix frame 14 + k
        return np.abs(mix[i] - cut[j]).mean() < 8  # blends differ by 16 or more

    assert all(same(i, i) for i in range(15)) and all(same(i, i + 6) for i in range(20, 29))
    assert not any(same(i, i) or same(i, i + 6) for i in range(15, 20))


def test_deterministic(tmp_path):
    for k in "ab":
        make_cut_video(tmp_path / f"{k}.mp4", [8, 8], size=(64, 36), audio="noise", start=5)
    assert (tmp_path / "a.mp4").read_bytes() == (tmp_path / "b.mp4").read_bytes()


def test_errors(tmp_path):
    with pytest.raises(ValueError, match="dissolve"):
        make_cut_video(tmp_path / "v.mp4", [10, 5], transition=("dissolve", 5))
    with pytest.raises(ValueError, match="transition"):
        make_cut_video(tmp_path / "v.mp4", [10, 5, 5], transition=[None])
    with pytest.raises(RuntimeError, match=r"ffmpeg .*v\.nope"):  # names the failing command
        make_cut_video(tmp_path / "v.nope", [5])
