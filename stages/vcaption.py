"""vcaption: the V caption, a vision-language model (Qwen2-VL / Qwen2.5-VL) on the clip's sampled frames.

Makes raw_captions.V, captions.V (unless it fails the caption checks, pipeline/captions.py) and models.V."""

from __future__ import annotations

from mvid.models.base import ModelSpec
from mvid.pipeline.captions import CheckedParams, with_caption
from mvid.pipeline.stage import Result, Stage
from mvid.stages import register


class VcaptionParams(CheckedParams):
    name: str = "vcaption"
    batch_size: int = 8
    # options: prompt, frame_size / max_pixels (resolution fed to the model), max_new_tokens (models/vision.py)
    model: ModelSpec = ModelSpec(backend="transformers", model="tiny-qwen2-vl")


@register
class Vcaption(Stage[VcaptionParams]):
    modality = "V"
    requires = ("clip_id", "frame_paths")
    produces = ("raw_captions", "captions")
    media = ("frame_paths",)
    models = {"model": "vcaption", "lang": "lid"}

    def process_batch(self, recs):
        m, lid = self.m["model"], self.m.get("lang")
        caps = m([{"frames": r["frame_paths"], "fps": r.get("fps")} for r in recs])
        return [
            Result.ok(with_caption(r, "V", c, m.name, self.p, lid, m.prompt)) for r, c in zip(recs, caps, strict=True)
        ]
