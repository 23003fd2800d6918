"""fuse: the five MVid captions. A, V and S are the per-modality captions; the LLM fuses AV (from A and V)
and AVS (from A, V and S) into one fluent English description each, using only what the inputs say.

A caption whose inputs are missing is left out with its reason, never invented. A malformed LLM answer is
retried once, then recorded as that caption's failure. A clip left with no caption at all is dropped
(no_caption). Makes captions.{A,V,S,AV,AVS} and models.{AV,AVS}."""

from __future__ import annotations

import contextlib

from mvid.models import prompts
from mvid.models.base import ModelSpec
from mvid.pipeline.stage import Result, Stage, StageParams
from mvid.stages import register

FUSED = {"AV": ("A", "V"), "AVS": ("A", "V", "S")}


class FuseParams(StageParams):
    name: str = "fuse"
    batch_size: int = 32  # all prompts of a batch go to the engine at once (vLLM batches them continuously)
    llm: ModelSpec = ModelSpec(backend="transformers", model="tiny-llama")


def plan(rec: dict) -> tuple[dict, dict, list[str]]:
    """Single-modality captions, reasons for the missing ones, and the fused captions that can be made."""
    raw = {
        **(rec.get("raw_captions") or {}),
        **({"S": rec["captions"]["S"]} if (rec.get("captions") or {}).get("S") else {}),
    }
    reasons = dict(rec.get("reasons") or {})
    caps = {k: raw[k] for k in ("A", "V", "S") if raw.get(k)}
    for k in ("A", "V", "S"):
        if k not in caps:
            reasons.setdefault(k, "not_made")
    todo = []
    for kind, need in FUSED.items():
        missing = [k for k in need if k not in caps]
        if missing:
            reasons[kind] = "missing_modality"
        else:
            todo.append(kind)
    return caps, reasons, todo


@register
class Fuse(Stage[FuseParams]):
    requires = ("clip_id",)
    produces = ("captions",)
    models = {"llm": "llm"}

    def process_batch(self, recs):
        llm = self.m["llm"]
        plans = [plan(r) for r in recs]
        jobs = [(i, kind) for i, (caps, _, todo) in enumerate(plans) for kind in todo]
        answers: dict[tuple[int, str], str] = {}
        for _ in range(2):  # one retry for malformed answers
            ask = [j for j in jobs if j not in answers]
            if not ask:
                break
            convs = [prompts.fusion(kind, plans[i][0]) for i, kind in ask]
            for (i, kind), a in zip(ask, llm(convs, stop=[prompts.CLOSE_CAPTION]), strict=True):
                with contextlib.suppress(ValueError):  # malformed: asked again
                    answers[(i, kind)] = prompts.parse_caption(a, tuple(plans[i][0][k] for k in FUSED[kind]))
        out = []
        for i, (r, (caps, reasons, todo)) in enumerate(zip(recs, plans, strict=True)):
            caps, models = dict(caps), dict(r.get("models") or {})
            for kind in todo:
                if (i, kind) in answers:
                    caps[kind], models[kind] = answers[(i, kind)], llm.name
                else:
                    reasons[kind] = "fusion_failed"
            r = {**r, "captions": caps, "reasons": reasons, "models": models}
            if caps:
                out.append(Result.ok(r))
            else:  # nothing to train on: the clip goes, with each caption's reason
                why = ", ".join(f"{k}: {reasons.get(k)}" for k in ("A", "V", "S"))
                out.append(Result.reject(r, "no_caption", f"no caption is left ({why})", "drop"))
        return out
