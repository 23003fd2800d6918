"""select: the global selection over the whole run (the paper kept its top 60M clips by CLIP score).

A true barrier: every score is computed first. Keeps the top_n clips, or the top `quantile` fraction, by
clip_score; optionally first drops near-duplicates within a video (cosine of CLIP image embeddings above
dedup). Dropped clips are persisted as drops with their scores."""
from __future__ import annotations

import math
from collections import defaultdict

import numpy as np
from pydantic import Field, model_validator

from pipeline.stage import Result, Stage, StageParams
from stages import register
from stages.clipscore import unpack


class SelectParams(StageParams):
    name: str = "select"
    top_n: int | None = Field(None, ge=0)
    quantile: float | None = Field(None, gt=0, le=1)  # keep this top fraction
    dedup: float | None = Field(None, gt=0, le=1)  # cosine above which a clip duplicates a better one

    @model_validator(mode="after")
    def _one(self):
        if (self.top_n is None) == (self.quantile is None):
            raise ValueError("set exactly one of top_n or quantile")
        return self


def near_duplicates(recs: list[dict], limit: float) -> dict[str, str]:
    """clip_id -> the better-scored clip of the same video it duplicates."""
    by_video, dup = defaultdict(list), {}
    for r in recs:
        by_video[r["video_id"]].append(r)
    for clips in by_video.values():
        kept: list[tuple[dict, np.ndarray]] = []
        for r in sorted(clips, key=rank):
            e = unpack(r["clip_emb"])
            twin = next((k for k, ke in kept if float(e @ ke) > limit), None)
            if twin:
                dup[r["clip_id"]] = twin["clip_id"]
            else:
                kept.append((r, e))
    return dup


def rank(r: dict):
    """Best first; ties broken by id, so a selection never depends on arrival order."""
    s = r.get("clip_score")
    return (s is None, -(s or 0.0), r["clip_id"])


@register
class Select(Stage):
    name = "select"
    Params = SelectParams
    requires = ("clip_id", "clip_score", "clip_emb")
    barrier = True

    def process_all(self, recs):
        p = self.p
        dup = near_duplicates(recs, p.dedup) if p.dedup else {}
        pool = sorted((r for r in recs if r["clip_id"] not in dup and r["clip_score"] is not None), key=rank)
        n = p.top_n if p.top_n is not None else math.ceil(p.quantile * len(pool))
        keep = {r["clip_id"] for r in pool[:n]}
        out = []
        for r in recs:
            cid, score = r["clip_id"], r["clip_score"]
            if cid in keep:
                out.append(Result.ok(r))
            elif cid in dup:
                out.append(Result.reject(r, "near_duplicate", f"duplicates {dup[cid]}", "drop", clip_score=score))
            else:
                why = "no clip_score" if score is None else f"rank beyond {n} of {len(pool)}"
                out.append(Result.reject(r, "not_selected", why, "drop", clip_score=score))
        return out
