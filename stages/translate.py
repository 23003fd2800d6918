"""translate: non-English speech to English, and the S caption.

LID confidence >= threshold: SeamlessM4T v2 (transformers; text-to-text from the transcript, or speech-to-text
from the audio). Below it, or a language Seamless does not read: the LLM with the translation prompt.
Makes translation {text, translator, src_lang, confidence}, captions.S (the English speech text, in full, unless
it fails the caption checks, pipeline/captions.py), models.translation. No transcript or no language: no S
caption (the reason came from asr or lid)."""

from __future__ import annotations

from pydantic import Field

from mvid.models import prompts
from mvid.models.base import ModelSpec
from mvid.models.translate import SEAMLESS
from mvid.pipeline.captions import CheckedParams, with_caption
from mvid.pipeline.records import edit
from mvid.pipeline.stage import Result, Stage
from mvid.stages import register


class TranslateParams(CheckedParams):
    name: str = "translate"
    batch_size: int = 16
    threshold: float = Field(0.95, ge=0, le=1)  # LID confidence from which Seamless translates
    seamless: ModelSpec = ModelSpec(backend="seamless-m4t-v2", model="tiny-seamless-m4t-v2")
    llm: ModelSpec = ModelSpec(backend="transformers", model="tiny-llama")


def route(language: str | None, confidence: float, threshold: float = 0.95) -> str:
    """Which translator a transcript needs: "none" (English, or no text), "seamless" (a confident language
    that SeamlessM4T v2 reads) or "llm" (unsure, mixed, or a language Seamless does not read)."""
    if language in (None, "en"):
        return "none"
    return "seamless" if language in SEAMLESS and confidence >= threshold else "llm"


@register
class Translate(Stage[TranslateParams]):
    modality = "S"
    requires = ("clip_id", "transcript", "lid")
    produces = ("translation", "captions")
    media = ("audio_path",)  # read in Seamless's speech mode
    models = {"seamless": "translate", "llm": "llm", "lang": "lid"}

    def process_batch(self, recs):
        recs = [edit(r, translation=None) for r in recs]
        groups: dict[str, list[dict]] = {"none": [], "seamless": [], "llm": []}
        for r in recs:
            if r["transcript"] and r["lid"]:  # no lid: language ID failed, and its reason stays
                groups[route(r["lid"]["language"], r["lid"]["confidence"], self.p.threshold)].append(r)
        sm, llm = self.m["seamless"], self.m["llm"]
        speech = sm.mode == "speech"
        texts = sm(
            [
                {
                    "text": r["transcript"]["text"],
                    "src_lang": r["lid"]["language"],
                    "audio": r["audio_path"] if speech else None,
                }
                for r in groups["seamless"]
            ]
        )
        done = [(r, "none", r["transcript"]["text"], None) for r in groups["none"]]
        done += [(r, "seamless", t, sm.name) for r, t in zip(groups["seamless"], texts, strict=True)]
        done += [(r, "llm", t, llm.name) for r, t in zip(groups["llm"], self.by_llm(groups["llm"]), strict=True)]
        made = {}
        for r, who, text, model in done:
            if text is None:
                r["reasons"]["S"] = "translation_failed"
                continue
            r["translation"] = {
                "text": text,
                "translator": who,
                "src_lang": r["lid"]["language"],
                "confidence": r["lid"]["confidence"],
            }
            if model:
                r["models"]["translation"] = model
            by = model or r["models"].get("transcript") or "input"
            echo = prompts.TRANSLATE_SYSTEM if who == "llm" else ""
            made[id(r)] = with_caption(r, "S", text, by, self.p, self.m.get("lang"), echo)
        return [Result.ok(made.get(id(r), r)) for r in recs]

    def by_llm(self, recs: list[dict]) -> list[str | None]:
        """LLM translation; a malformed answer is retried once, then None."""
        out: list[str | None] = [None] * len(recs)
        todo = list(range(len(recs)))
        for _ in range(2):
            answers = self.m["llm"](
                [prompts.translation(recs[i]["transcript"]["text"], recs[i]["lid"]["language"]) for i in todo],
                stop=[prompts.CLOSE_TRANSLATION],
            )
            for i, a in zip(list(todo), answers, strict=True):
                try:
                    out[i] = prompts.parse_translation(a)
                    todo.remove(i)
                except ValueError:
                    pass
            if not todo:
                break
        return out
