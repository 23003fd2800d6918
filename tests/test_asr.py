"""ASR adapters: both Whisper backends with tiny random weights on espeak-ng speech, and the silence path."""

import wave

import numpy as np
import pytest
from whisper.tokenizer import LANGUAGES

from mvid.models import asr, build
from mvid.models.base import ModelSpec
from mvid.models.samples import speak16k
from mvid.models.testing import whisper_tokenizer

BACKENDS = {"openai-whisper": "tiny-openai-whisper", "faster-whisper": "tiny-faster-whisper"}
FAST = {"temperature": 0, "beam_size": 1, "max_new_tokens": 12}  # random weights rarely stop by themselves


def write_wav(path, x: np.ndarray, rate=16000, channels=1):
    with wave.open(str(path), "wb") as w:
        w.setnchannels(channels)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes((np.clip(x, -1, 1) * 32767).astype("<i2").tobytes())


@pytest.fixture(scope="module")
def clips(tmp_path_factory):
    d = tmp_path_factory.mktemp("asr")
    speak16k("The quick brown fox jumps over the lazy dog.", "en", d / "speech.wav")
    write_wav(d / "silence.wav", np.zeros(16000 * 2))
    write_wav(d / "hum.wav", 3e-4 * np.sin(np.arange(16000) * 0.1))  # below the -60 dBFS floor
    return d


@pytest.fixture(scope="module")
def tiny_dir(weights):
    return weights


def loaded(backend, tiny_dir, **opts):
    spec = ModelSpec(backend=backend, model=str(tiny_dir / BACKENDS[backend]), options={**FAST, **opts})
    a = build("asr", spec)
    a.load()
    return a


@pytest.mark.parametrize("backend", BACKENDS)
def test_speech_output_shape(backend, tiny_dir, clips):
    a = loaded(backend, tiny_dir)
    assert a.name == "tiny-random/whisper"
    [r] = a([{"audio": clips / "speech.wav"}])
    assert set(r) == {"text", "language", "language_prob", "segments", "no_speech_prob", "duration", "reason"}
    assert r["language"] in list(LANGUAGES)[:99]  # detected: one of the multilingual model's codes
    assert 0 < r["language_prob"] <= 1 and 0 <= r["no_speech_prob"] <= 1
    assert r["duration"] == pytest.approx(2.5, abs=1.0)
    assert isinstance(r["segments"], list)
    for s in r["segments"]:
        assert set(s) == {"start", "end", "text", "no_speech_prob", "avg_logprob"}
        assert 0 <= s["start"] <= s["end"] <= r["duration"] + 1e-6
        assert isinstance(s["text"], str) and np.isfinite(s["avg_logprob"])
    assert r["text"] == "".join(s["text"] for s in r["segments"]).strip()
    assert (r["reason"] is None) == bool(r["text"])


@pytest.mark.parametrize("backend", BACKENDS)
def test_forced_language(backend, tiny_dir, clips):
    [r] = loaded(backend, tiny_dir, language="de")([{"audio": clips / "speech.wav"}])
    assert (r["language"], r["language_prob"]) == ("de", 1.0)


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_speech_rule(backend, tiny_dir, clips):
    """A threshold every window passes: Whisper's no-speech rule drops all segments, the probability stays."""
    a = loaded(backend, tiny_dir, language="en", no_speech_threshold=-1.0, logprob_threshold=None)
    [r] = a([{"audio": clips / "speech.wav"}])
    assert (r["reason"], r["text"], r["segments"]) == ("no_speech", "", [])
    assert 0 <= r["no_speech_prob"] < 1  # the model's own value, not the 1.0 of an empty decode


@pytest.mark.parametrize("backend", BACKENDS)
def test_silence_skips_the_model(backend, tiny_dir, clips):
    a = loaded(backend, tiny_dir)
    a.model = None  # any model call would now fail
    out = a([{"audio": clips / "silence.wav"}, {"audio": clips / "hum.wav"}])
    assert [r["reason"] for r in out] == ["silence", "silence"]
    assert all(r["text"] == "" and r["segments"] == [] and r["no_speech_prob"] == 1.0 for r in out)
    assert [r["duration"] for r in out] == [2.0, 1.0]


def test_load_wav(tmp_path):
    x = np.sin(np.arange(1600) * 0.05) * 0.5
    write_wav(tmp_path / "st.wav", np.repeat(x, 2), channels=2)
    y = asr.load_wav(tmp_path / "st.wav")
    assert y.dtype == np.float32 and y.shape == (1600,) and np.abs(y - x).max() < 1e-4
    write_wav(tmp_path / "r.wav", x, rate=22050)
    with pytest.raises(ValueError, match="16000 Hz"):
        asr.load_wav(tmp_path / "r.wav")


def test_tokenizer_matches_openai_whisper(tmp_path):
    """The tiny faster-whisper tokenizer encodes like openai-whisper's own tiktoken tokenizer, same special ids."""
    from whisper.tokenizer import get_tokenizer

    ref = get_tokenizer(multilingual=True, num_languages=99)
    tok = whisper_tokenizer(tmp_path)
    for text in [" The quick brown fox.", " Heute ist ein schöner Tag.", " ¿Vamos al café?", " 今天天气很好。"]:
        assert tok.encode(text, add_special_tokens=False) == ref.encode(text)
    for t in [
        "<|endoftext|>",
        "<|startoftranscript|>",
        "<|en|>",
        "<|de|>",
        "<|su|>",
        "<|transcribe|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]:
        assert tok.convert_tokens_to_ids(t) == ref.encoding.encode_single_token(t)
