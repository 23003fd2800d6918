"""Audio-caption role ("acaption"): Qwen2-Audio describes a clip's non-speech sounds.

Also `fbank`, the paper's audio-encoder input (BEATs-style Kaldi log-Mel filterbanks), in numpy.
"""

from __future__ import annotations

import subprocess
import wave
from pathlib import Path

import numpy as np

from mvid.models.base import Adapter, greedy

SR = 16000
PROMPT = (
    "Describe the sounds in this audio other than speech: the music, the environment and the events. "
    "Do not transcribe the words that are spoken."
)
AUDIO = "<|AUDIO|>"


def read_wav(path: str | Path) -> np.ndarray:
    """Mono float32 samples in [-1, 1] at 16 kHz; other formats are converted by ffmpeg."""
    with wave.open(str(path)) as w:
        if (w.getframerate(), w.getnchannels(), w.getsampwidth()) == (SR, 1, 2):
            return np.frombuffer(w.readframes(w.getnframes()), "<i2").astype(np.float32) / 32768
    raw = subprocess.run(
        ["ffmpeg", "-nostdin", "-loglevel", "error", "-i", str(path), "-f", "s16le", "-ac", "1", "-ar", str(SR), "-"],
        check=True,
        capture_output=True,
        timeout=600,
    ).stdout
    return np.frombuffer(raw, "<i2").astype(np.float32) / 32768


# Kaldi fbank as torchaudio.compliance.kaldi.fbank computes it for BEATs: 16-bit-scaled samples, 25 ms frames,
# 10 ms shift, snip_edges, no dither, DC removal, pre-emphasis 0.97, 512-point FFT power spectrum, triangular
# mel bins on Kaldi's mel scale from 20 Hz to Nyquist, natural log floored at float32 eps.
FRAME, SHIFT, NFFT, LOW_HZ, PREEMPH = 400, 160, 512, 20.0, 0.97
EPS = float(np.finfo(np.float32).eps)


def mel(f):
    return 1127.0 * np.log(1.0 + np.asarray(f) / 700.0)


def mel_banks(bins: int) -> np.ndarray:
    """Kaldi's triangular filters, (bins, NFFT // 2 + 1); the Nyquist column is zero as in Kaldi."""
    lo, hi = mel(LOW_HZ), mel(SR / 2)
    delta = (hi - lo) / (bins + 1)
    left = lo + np.arange(bins)[:, None] * delta
    m = mel(np.arange(NFFT // 2) * SR / NFFT)[None]
    up, down = (m - left) / delta, (left + 2 * delta - m) / delta
    return np.pad(np.maximum(0.0, np.minimum(up, down)), ((0, 0), (0, 1)))


def kaldi_fbank(x: np.ndarray, bins: int = 64, window: str = "hamming") -> np.ndarray:
    """Log-Mel filterbank of 16-bit-scaled samples: (1 + (len - 400) // 160, bins), float32."""
    n = 1 + (len(x) - FRAME) // SHIFT
    if n < 1:
        return np.zeros((0, bins), np.float32)
    f = np.lib.stride_tricks.sliding_window_view(np.asarray(x, np.float64), FRAME)[::SHIFT][:n].copy()
    f -= f.mean(1, keepdims=True)
    f[:, 1:] -= PREEMPH * f[:, :-1].copy()
    f[:, 0] *= 1 - PREEMPH
    k = np.arange(FRAME)
    if window == "hamming":
        w = 0.54 - 0.46 * np.cos(2 * np.pi * k / (FRAME - 1))
    elif window == "povey":
        w = (0.5 - 0.5 * np.cos(2 * np.pi * k / (FRAME - 1))) ** 0.85
    else:
        raise ValueError(f"window must be hamming or povey, got {window!r}")
    power = np.abs(np.fft.rfft(f * w, NFFT)) ** 2
    return np.log(np.maximum(power @ mel_banks(bins).T, EPS)).astype(np.float32)


def fbank(wav_path: str | Path, seconds: float = 10.0, bins: int = 64) -> np.ndarray:
    """The audio encoder's input: 10 s windows (the last zero-padded) -> (windows, 998, 64) log-Mel features."""
    x = read_wav(wav_path) * 32768
    seg = int(seconds * SR)
    n = max(1, -(-len(x) // seg))
    x = np.pad(x, (0, n * seg - len(x)))
    return np.stack([kaldi_fbank(w, bins) for w in x.reshape(n, seg)])


class TransformersAudio(Adapter):
    role, backend = "acaption", "transformers"

    def load(self) -> None:
        import torch
        from transformers import AutoProcessor, Qwen2AudioForConditionalGeneration

        o = self.spec.options
        self.prompt = o.get("prompt", PROMPT)
        self.max_new = int(o.get("max_new_tokens", 128))
        self.torch, self.dev = torch, self.device
        self.proc = AutoProcessor.from_pretrained(self.path, **self.hub)
        self.proc.tokenizer.padding_side = "left"
        self.limit = int(self.proc.feature_extractor.n_samples)  # the encoder's 30 s window
        self.model = Qwen2AudioForConditionalGeneration.from_pretrained(self.path, dtype=self.dtype(), **self.hub)
        self.model.to(self.dev).eval()

    def inputs(self, items: list[dict]) -> dict:
        conv = [{"role": "user", "content": [{"type": "audio"}, {"type": "text", "text": self.prompt}]}]
        text = self.proc.apply_chat_template(conv, add_generation_prompt=True, tokenize=False)
        audio = [read_wav(it["audio"])[: self.limit] for it in items]
        enc = self.proc(text=[text] * len(items), audio=audio, sampling_rate=SR, return_tensors="pt", padding=True)
        enc["input_features"] = enc["input_features"].to(self.model.dtype)
        return {k: v.to(self.dev) for k, v in enc.items()}

    def __call__(self, items: list[dict]) -> list[str]:
        if not items:
            return []
        return greedy(self, self.inputs(items), self.proc)
