"""Audio captioner (tiny random Qwen2-Audio through transformers) and Kaldi fbank features, on wavs made by ffmpeg."""

import subprocess

import numpy as np
import pytest

from mvid.models import backends
from mvid.models.audio import EPS, LOW_HZ, SR, fbank, kaldi_fbank, mel, read_wav
from mvid.models.base import ModelSpec


def wav(path, src, seconds, rate=SR, channels=1):
    subprocess.run(
        [
            "ffmpeg",
            "-loglevel",
            "error",
            "-f",
            "lavfi",
            "-i",
            f"{src}:sample_rate={rate}:duration={seconds}",
            "-ac",
            str(channels),
            "-c:a",
            "pcm_s16le",
            str(path),
        ],
        check=True,
    )
    return str(path)


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("audio")
    return {
        "sine": wav(d / "sine.wav", "sine=frequency=1000", 12),
        "noise": wav(d / "noise.wav", "anoisesrc=seed=1:amplitude=0.3", 3),
        "short": wav(d / "short.wav", "sine=frequency=440", 3),
        "d": d,
    }


def test_read_wav_converts(wavs):
    x = read_wav(wav(wavs["d"] / "cd.wav", "sine=frequency=440", 2, rate=44100, channels=2))
    assert x.dtype == np.float32 and abs(len(x) - 2 * SR) < 100 and 0.05 < np.abs(x).max() <= 1


def test_fbank_windows_and_padding(wavs):
    f = fbank(wavs["sine"])  # 12 s: two 10 s windows, the second holding 2 s of tone then zeros
    assert f.shape == (2, 998, 64) and f.dtype == np.float32  # 1 + (160000 - 400) // 160 frames
    assert np.all(f[1, 200:] == np.float32(np.log(EPS)))  # frames wholly inside the zero padding
    assert np.all(f[1, :198].max(1) > 0)
    assert fbank(wavs["short"]).shape == (1, 998, 64)


def test_fbank_tone_peaks_in_its_mel_bin(wavs):
    f = fbank(wavs["sine"])[0]
    lo, hi = mel(LOW_HZ), mel(SR / 2)
    centers = lo + (np.arange(64) + 1) * (hi - lo) / 65
    assert f.mean(0).argmax() == np.abs(centers - mel(1000)).argmin()
    low = fbank(wavs["short"])[0]  # 440 Hz peaks in a lower bin
    assert low.mean(0).argmax() == np.abs(centers - mel(440)).argmin() < f.mean(0).argmax()


@pytest.mark.parametrize("window", ["hamming", "povey"])
def test_fbank_matches_kaldi_native_fbank(wavs, window):
    knf = pytest.importorskip("kaldi_native_fbank", reason="kaldi-native-fbank (the reference) is not installed")
    x = read_wav(wavs["noise"]) * 32768
    o = knf.FbankOptions()
    o.frame_opts.dither, o.frame_opts.window_type, o.mel_opts.num_bins = 0.0, window, 64
    ref = knf.OnlineFbank(o)
    ref.accept_waveform(SR, x.tolist())
    ref.input_finished()
    ref = np.stack([ref.get_frame(i) for i in range(ref.num_frames_ready)])
    mine = kaldi_fbank(x, 64, window)
    assert mine.shape == ref.shape == (298, 64)
    np.testing.assert_allclose(mine, ref, atol=2e-3)


@pytest.fixture(scope="module")
def captioner(weights):
    spec = ModelSpec(
        backend="transformers", model=str(weights / "tiny-qwen2-audio"), device="cpu", options={"max_new_tokens": 8}
    )
    a = backends("acaption")["transformers"](spec)
    a.load()
    return a


def test_captions(captioner, wavs):
    assert captioner.name == "tiny-random/qwen2-audio"
    items = [{"audio": wavs["sine"]}, {"audio": wavs["noise"]}]
    out = captioner(items)
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
    assert captioner(items) == out  # greedy
    assert captioner(items[1:]) == out[1:]  # each item's caption is its own: batching, padding, order
    assert captioner([]) == []


def test_audio_reaches_the_model(captioner, wavs):
    inp = captioner.inputs([{"audio": wavs["sine"]}, {"audio": wavs["noise"]}])
    n = (inp["input_ids"] == captioner.model.config.audio_token_id).sum(1).tolist()
    assert n == [300, 75]  # 12 s and 3 s of 10 ms frames, pooled 4x by the encoder
    logits = captioner.model(**inp).logits[:, -1].detach().numpy()
    assert not np.allclose(logits[0], logits[1])
