"""fuse: the five MVid captions. A, V and S are the per-modality captions; the LLM fuses AV (from A and V)
and AVS (from A, V and S) into one fluent English description each, using only what the inputs say.

A and V (vcaption, acaption) and S (translate) come in `captions`, each checked where it was made; one that
failed is never used (pipeline/captions.py). A caption whose inputs are missing is left out with its reason,
never invented. A malformed LLM answer is retried once, then recorded as that caption's failure; a fused caption
is checked too. A clip left with no caption at all is dropped (no_caption). Makes captions.AV and AVS."""

from __future__ import annotations

import contextlib

from mvid.models import prompts
from mvid.models.base import ModelSpec
from mvid.pipeline.captions import CheckedParams, usable, with_caption
from mvid.pipeline.records import edit
from mvid.pipeline.stage import Result, Stage
from mvid.stages import register

FUSED = {"AV": ("A", "V"), "AVS": ("A", "V", "S")}


class FuseParams(CheckedParams):
    name: str = "fuse"
    batch_size: int = 32  # all prompts of a batch go to the engine at once (vLLM batches them continuously)
    llm: ModelSpec = ModelSpec(backend="transformers", model="tiny-llama")


def plan(rec: dict) -> tuple[dict, dict, list[str]]:
    """The single-modality captions fusion may use (present, not failed: pipeline/captions.py usable), reasons for
    the missing ones, and the fused captions that can be made."""
    reasons, made = dict(rec.get("reasons") or {}), rec.get("captions") or {}
    caps = {k: c for k in ("A", "V", "S") if (c := usable(rec, k))}
    for k in ("A", "V", "S"):
        if k not in made:
            reasons.setdefault(k, "not_made")
    todo = []
    for kind, need in FUSED.items():
        if missing := [k for k in need if k not in caps]:
            reasons[kind] = "marked_input" if all(k in made for k in missing) else "missing_modality"
        else:
            todo.append(kind)
    return caps, reasons, todo


@register
class Fuse(Stage[FuseParams]):
    requires = ("clip_id",)
    produces = ("captions",)
    models = {"llm": "llm", "lang": "lid"}

    def process_batch(self, recs):
        llm, lid = self.m["llm"], self.m.get("lang")
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
        for i, (r, (_, reasons, todo)) in enumerate(zip(recs, plans, strict=True)):
            r = edit(r)
            r["reasons"] = reasons
            for kind in todo:
                if (i, kind) in answers:
                    r = with_caption(r, kind, answers[(i, kind)], llm.name, self.p, lid, prompts.FUSE_SYSTEM)
                else:
                    r["reasons"][kind] = "fusion_failed"
            if r["captions"]:
                out.append(Result.ok(r))
            else:  # nothing to train on: the clip goes, with each caption's reason
                why = ", ".join(f"{k}: {r['reasons'].get(k)}" for k in ("A", "V", "S"))
                out.append(Result.reject(r, "no_caption", f"no caption is left ({why})", "drop", quality=r["quality"]))
        return out
