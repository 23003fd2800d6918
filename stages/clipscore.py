"""clipscore: CLIP similarity between the clip's frames and its captions (at least V and AVS), aggregated
over frames as configured; an optional fixed threshold drops clips in the stream.

Makes clip_scores {caption: score}, clip_score (the score selection uses), clip_emb (the image embedding,
float32, for near-duplicate removal; kept in the work folder, not in the shards) and models.clip_scores."""

from __future__ import annotations

from pydantic import Field

from mvid.models.base import ModelSpec
from mvid.pipeline.stage import Result, Stage, StageParams
from mvid.stages import register


class ClipscoreParams(StageParams):
    name: str = "clipscore"
    batch_size: int = 16
    captions: list[str] = ["V", "AVS", "AV"]  # scored when present
    select_on: list[str] = ["AVS", "V"]  # clip_score: the first of these that has a score
    threshold: float | None = Field(None, ge=-1, le=1)  # drop clips scoring below, in the stream
    # options: aggregate (mean, max, median over frames), max_frames (models/clip.py)
    model: ModelSpec = ModelSpec(backend="transformers", model="tiny-clip")


@register
class Clipscore(Stage[ClipscoreParams]):
    requires = ("clip_id", "frame_paths", "captions")
    produces = ("clip_scores", "clip_score", "clip_emb")
    media = ("frame_paths",)
    models = {"model": "clip"}

    def process_batch(self, recs):
        m, p = self.m["model"], self.p
        res = m([{"frames": r["frame_paths"], "texts": {k: r["captions"].get(k) for k in p.captions}} for r in recs])
        out = []
        for r, s in zip(recs, res, strict=True):
            scores = {k: round(float(v), 6) for k, v in s["scores"].items()}
            score = next((scores[k] for k in p.select_on if k in scores), None)
            r = {
                **r,
                "clip_scores": scores,
                "clip_score": score,
                "clip_emb": [float(x) for x in s["image_emb"]],
                "models": {**(r.get("models") or {}), "clip_scores": m.name},
            }
            if p.threshold is not None and (score is None or score < p.threshold):
                out.append(
                    Result.reject(r, "below_threshold", f"clip_score {score} < {p.threshold}", "drop", clip_score=score)
                )
            else:
                out.append(Result.ok(r))
        return out
