"""ASR role: Whisper through openai-whisper or faster-whisper, with language detection and segments.

Input items are {"audio": path to a 16 kHz mono wav}; each output is
{"text", "language", "language_prob", "segments": [{"start", "end", "text", "no_speech_prob", "avg_logprob"}],
 "no_speech_prob", "duration", "reason"}. reason is "silence" (RMS below options.silence_rms: the model is not
run), "no_speech" (Whisper judged every window silent or wrote nothing) or None. no_speech_prob is the lowest
Whisper no-speech probability over the clip's windows (1.0 when nothing was decoded).

Options: language (None: detect), task ("transcribe"|"translate"), beam_size (5), temperature (Whisper's
fallback schedule), no_speech_threshold (0.6), logprob_threshold (-1.0), compression_ratio_threshold (2.4),
condition_on_previous_text (True), max_new_tokens (None), silence_rms (1e-3, about -60 dBFS), threads,
compute_type (faster-whisper: int8 on the CPU, float16 on CUDA).
"""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np

from mvid.models.base import Adapter, model_dir

SR = 16000
TEMPS = (0.0, 0.2, 0.4, 0.6, 0.8, 1.0)


def load_wav(path: str | Path) -> np.ndarray:
    """A 16 kHz PCM wav as float32 in [-1, 1]; channels are averaged."""
    with wave.open(str(path), "rb") as w:
        if w.getframerate() != SR:
            raise ValueError(f"{path}: {w.getframerate()} Hz, Whisper needs {SR} Hz")
        width, ch, raw = w.getsampwidth(), w.getnchannels(), w.readframes(w.getnframes())
    x: np.ndarray
    if width == 1:
        x = (np.frombuffer(raw, np.uint8).astype(np.float32) - 128) / 128
    elif width in (2, 4):
        x = np.frombuffer(raw, f"<i{width}").astype(np.float32) / float(2 ** (8 * width - 1))
    else:
        raise ValueError(f"{path}: {8 * width}-bit samples are not supported")
    return x.reshape(-1, ch).mean(1) if ch > 1 else x


def seconds(path: str | Path) -> float:
    """A wav's length, from its header."""
    with wave.open(str(path), "rb") as w:
        return w.getnframes() / w.getframerate()


def rms(x: np.ndarray) -> float:
    return float(np.sqrt(np.mean(np.square(x, dtype=np.float64)))) if len(x) else 0.0


def silent(duration: float) -> dict:
    return {
        "text": "",
        "language": None,
        "language_prob": 0.0,
        "segments": [],
        "no_speech_prob": 1.0,
        "duration": duration,
        "reason": "silence",
    }


class Whisper(Adapter):
    """Shared logic of both backends: wav loading, the silence floor, Whisper's no-speech rule."""

    role = "asr"
    files = "Whisper weights"

    def load(self) -> None:
        o = self.spec.options
        self.lang, self.task = o.get("language"), o.get("task", "transcribe")
        self.beam = int(o.get("beam_size", 5))
        t = o.get("temperature", TEMPS)
        self.temps = tuple(t) if isinstance(t, (list, tuple)) else (float(t),)
        self.ns_thr = float(o.get("no_speech_threshold", 0.6))
        self.lp_thr = o.get("logprob_threshold", -1.0)
        self.cr_thr = o.get("compression_ratio_threshold", 2.4)
        self.prev = bool(o.get("condition_on_previous_text", True))
        self.max_tokens = o.get("max_new_tokens")
        self.floor = float(o.get("silence_rms", 1e-3))
        self.dev = self.device
        self._load()

    def __call__(self, items: list[dict]) -> list[dict]:
        return [self.one(load_wav(it["audio"])) for it in items]

    def one(self, audio: np.ndarray) -> dict:
        dur = len(audio) / SR
        if rms(audio) < self.floor:
            return silent(dur)
        lang, prob, segs = self._run(audio)
        for s in segs:  # random or confused models can place timestamps past the end
            s["start"], s["end"] = min(s["start"], dur), min(s["end"], dur)
        ns = min((s["no_speech_prob"] for s in segs), default=1.0)
        # Whisper's own rule, applied here so that no_speech_prob survives for windows it drops
        keep = [
            s
            for s in segs
            if not (s["no_speech_prob"] > self.ns_thr and (self.lp_thr is None or s["avg_logprob"] < self.lp_thr))
        ]
        text = "".join(s["text"] for s in keep).strip()
        return {
            "text": text,
            "language": lang,
            "language_prob": prob,
            "segments": keep,
            "no_speech_prob": ns,
            "duration": dur,
            "reason": None if text else "no_speech",
        }

    def _load(self) -> None:
        raise NotImplementedError

    def _run(self, audio: np.ndarray) -> tuple[str, float, list[dict]]:
        raise NotImplementedError


def seg(start, end, text, no_speech_prob, avg_logprob) -> dict:
    return {
        "start": float(start),
        "end": float(end),
        "text": text,
        "no_speech_prob": float(no_speech_prob),
        "avg_logprob": float(avg_logprob),
    }


class OpenAIWhisper(Whisper):
    """spec.model: a checkpoint .pt, a folder holding one, or a Whisper name (tiny, base, ...) with allow_hub."""

    backend = "openai-whisper"
    libs = ("torch", "openai-whisper")
    gpu_dtype = "float16"  # transcribe(fp16=True) on CUDA

    def _load(self) -> None:
        import torch
        import whisper

        self.torch, self.whisper = torch, whisper
        if self.spec.options.get("threads"):
            torch.set_num_threads(int(self.spec.options["threads"]))
        p = Path(self.path)
        if p.is_dir():
            pts = sorted(p.glob("*.pt"))
            if len(pts) != 1:
                raise FileNotFoundError(f"{p}: expected one Whisper checkpoint (*.pt), found {len(pts)}")
            p = pts[0]
        self.model = whisper.load_model(
            str(p) if p.exists() else self.path, device=self.dev, download_root=str(model_dir())
        )

    def _run(self, audio):
        w, m = self.whisper, self.model
        lang, prob = self.lang, 1.0
        if lang is None:
            if m.is_multilingual:
                mel = w.log_mel_spectrogram(w.pad_or_trim(audio), m.dims.n_mels).to(m.device)
                with self.torch.inference_mode():
                    _, probs = m.detect_language(mel)
                lang = max(probs, key=probs.get)
                prob = float(probs[lang])
            else:
                lang = "en"
        opts = {"sample_len": int(self.max_tokens)} if self.max_tokens else {}
        r = w.transcribe(
            m,
            audio,
            language=lang,
            task=self.task,
            beam_size=self.beam if self.beam > 1 else None,
            temperature=self.temps,
            no_speech_threshold=None,
            logprob_threshold=self.lp_thr,
            compression_ratio_threshold=self.cr_thr,
            condition_on_previous_text=self.prev,
            fp16=self.dev == "cuda",
            verbose=None,
            **opts,
        )
        return (
            lang,
            prob,
            [seg(s["start"], s["end"], s["text"], s["no_speech_prob"], s["avg_logprob"]) for s in r["segments"]],
        )


class FasterWhisper(Whisper):
    """spec.model: a CTranslate2 Whisper folder (model.bin, config.json, tokenizer.json), or a name with allow_hub."""

    backend = "faster-whisper"
    libs = ("faster-whisper", "ctranslate2")

    @property
    def dtype_name(self) -> str:
        return self.spec.options.get("compute_type", "float16" if self.device == "cuda" else "int8")

    def _load(self) -> None:
        from faster_whisper import WhisperModel

        threads = int(self.spec.options.get("threads", 0))
        self.model = WhisperModel(self.path, device=self.dev, compute_type=self.dtype_name, cpu_threads=threads)

    def _run(self, audio):
        segs, info = self.model.transcribe(
            audio,
            language=self.lang,
            task=self.task,
            beam_size=self.beam,
            temperature=list(self.temps),
            no_speech_threshold=None,
            log_prob_threshold=self.lp_thr,
            compression_ratio_threshold=self.cr_thr,
            condition_on_previous_text=self.prev,
            max_new_tokens=self.max_tokens,
            vad_filter=False,
        )
        segs = [seg(s.start, s.end, s.text, s.no_speech_prob, s.avg_logprob) for s in segs]
        return info.language, float(info.language_probability), segs
