"""acaption: the A caption, an audio-language model (Qwen2-Audio) describing the non-speech sounds.

Makes raw_captions.A, captions.A (unless it fails the caption checks, pipeline/captions.py) and models.A; a clip
without audio gets reasons.A."""

from __future__ import annotations

from mvid.models.base import ModelSpec
from mvid.pipeline.captions import CheckedParams, with_caption
from mvid.pipeline.stage import Result, Stage
from mvid.stages import register


class AcaptionParams(CheckedParams):
    name: str = "acaption"
    batch_size: int = 8
    # options: prompt (asks for music, environment and events, not the words), max_new_tokens (models/audio.py)
    model: ModelSpec = ModelSpec(backend="transformers", model="tiny-qwen2-audio")


@register
class Acaption(Stage[AcaptionParams]):
    modality = "A"
    requires = ("clip_id", "has_audio", "audio_path")
    produces = ("raw_captions", "captions")
    media = ("audio_path",)
    models = {"model": "acaption", "lang": "lid"}

    def process_batch(self, recs):
        m, lid = self.m["model"], self.m.get("lang")
        todo = [r for r in recs if r["has_audio"]]
        caps = dict(zip((r["clip_id"] for r in todo), m([{"audio": r["audio_path"]} for r in todo]), strict=True))
        return [
            Result.ok(
                with_caption(r, "A", caps[r["clip_id"]], m.name, self.p, lid, m.prompt)
                if r["clip_id"] in caps
                else with_caption(
                    r, "A", None, m.name, self.p, lid, absent=(r.get("reasons") or {}).get("audio", "no_audio")
                )
            )
            for r in recs
        ]
