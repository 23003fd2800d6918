"""Caption quality: the one check of every generated caption (A, V, S, AV, AVS), which vcaption, acaption,
translate and fuse all use (`keep` below), and the statistics the manifest keeps of them (`tally`).

A caption fails with the first of these reasons: `degenerate_empty` (empty or a sentinel such as "none"),
`degenerate_characters` (U+FFFD, control or private-use characters), `degenerate_echo` (a run of words from its
prompt, or a chat tag or role marker), `degenerate_refusal` ("I'm sorry, I cannot ..."), `degenerate_repetition`
(an n-gram repeated, or too few distinct words), `degenerate_too_short` / `degenerate_too_long` (min_words,
max_words), `degenerate_language` (fastText is confident it is not English). In `remove` mode a failed caption
leaves `captions` (the model's text stays in `raw_captions`) and its reason goes to `reasons`; in `mark` mode it
stays. Either way `quality` names it, and fusion never uses it."""

from __future__ import annotations

import re
import unicodedata
from collections import Counter
from typing import Literal

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from mvid.models.base import ModelSpec
from mvid.models.prompts import ANY_TAG, ROLE_MARK
from mvid.pipeline.records import edit
from mvid.pipeline.stage import StageParams

SENTINELS = {"", "none", "null", "n a", "na", "nan", "unknown", "no caption", "caption", "unk", "empty", "text"}
REFUSAL = re.compile(
    r"\b(?:i'?m sorry|i am sorry|i apologi[sz]e|i cannot|i can'?t|i'?m unable|i am unable|i'?m not able|as an ai"
    r"|(?:cannot|unable to) (?:help|assist|describe|provide|see|view|watch|listen))\b",
    re.IGNORECASE,
)
WORD = re.compile(r"[^\W_]+(?:'[^\W_]+)?")
ECHO = 5  # words in a row shared with the prompt: an echo
BINS = 65  # word-count histogram: 0..63 words, then 64 or more


class CaptionChecks(BaseModel):
    model_config = ConfigDict(extra="forbid")
    action: Literal["remove", "mark"] = "remove"
    min_words: int = Field(2, ge=0)  # InternVideo2's loader drops captions under min_caption_length (2)
    max_words: int = Field(256, ge=1)
    ngram: int = Field(3, ge=1)
    max_repeats: int = Field(5, ge=2)  # an n-gram seen this often is a loop (cosmos-curate: a trigram 5 times)
    min_distinct: float = Field(0.3, ge=0, le=1)  # distinct words over words, in a caption of 12 words or more
    min_lang_conf: float = Field(0.6, ge=0, le=1)  # fastText this confident of another language: not English


class CheckedParams(StageParams):
    """The params of a stage that makes captions: its checks, and the fastText model of the language check."""

    checks: CaptionChecks = CaptionChecks()
    lang: ModelSpec | None = ModelSpec(backend="fasttext", model="lid.176.ftz")


def words(text: str) -> list[str]:
    return WORD.findall(text.lower())


def reason(text: str, c: CaptionChecks, prompt: str = "", lang: dict | None = None) -> str | None:
    """Why a caption fails the checks, or None. `lang`: fastText's {language, confidence} of it."""
    w = words(text)
    if " ".join(w) in SENTINELS:
        return "degenerate_empty"
    if any(ch == "\ufffd" or unicodedata.category(ch) in ("Cc", "Co", "Cs", "Cn") for ch in text if ch not in "\n\t"):
        return "degenerate_characters"
    if ANY_TAG.search(text) or ROLE_MARK.search(text) or shared(w, words(prompt)):
        return "degenerate_echo"
    if REFUSAL.search(text):
        return "degenerate_refusal"
    grams = Counter(tuple(w[i : i + c.ngram]) for i in range(len(w) - c.ngram + 1))
    if (grams and max(grams.values()) >= c.max_repeats) or (len(w) >= 12 and len(set(w)) < c.min_distinct * len(w)):
        return "degenerate_repetition"
    if len(w) < c.min_words:
        return "degenerate_too_short"
    if len(w) > c.max_words:
        return "degenerate_too_long"
    if lang and lang["language"] not in (None, "en") and lang["confidence"] >= c.min_lang_conf:
        return "degenerate_language"
    return None


def shared(w: list[str], prompt: list[str]) -> bool:
    """Whether ECHO words in a row of the caption are also in a row of the prompt."""
    runs = {tuple(prompt[i : i + ECHO]) for i in range(len(prompt) - ECHO + 1)}
    return any(tuple(w[i : i + ECHO]) in runs for i in range(len(w) - ECHO + 1))


def with_caption(
    rec: dict, kind: str, text: str | None, model: str, p: CheckedParams, lid, prompt: str = "", absent="empty_caption"
) -> dict:
    """A copy of the record with caption `kind` made by `model`, checked: raw_captions holds the text and
    caption_lang its language; captions gets it unless it fails and the checks remove it; a failure is named in
    quality (and reasons, when removed). No text: reasons.<kind> = `absent`. `lid`: the stage's fastText adapter
    (None: no language check)."""
    rec = edit(rec)
    if not (text and text.strip()):
        rec["reasons"][kind] = absent
        return rec
    text, checks = text.strip(), p.checks
    rec["models"][kind] = model
    lang = lid([text])[0] if lid else None
    rec["raw_captions"][kind] = text
    if lang:
        rec["caption_lang"][kind] = lang["language"]
    why = reason(text, checks, prompt, lang)
    if why:
        rec["quality"][kind] = why
        if checks.action == "remove":
            rec["reasons"][kind] = why
            return rec
    rec["captions"][kind] = text
    return rec


def usable(rec: dict, kind: str) -> str | None:
    """A caption fusion may use: present and not failed."""
    return None if kind in (rec.get("quality") or {}) else (rec.get("captions") or {}).get(kind)


def tally(recs: list[dict]) -> dict:
    """Per caption type, over records (samples, and the clips fuse dropped): counts per reason (ok for a good
    one), a word-count histogram, distinct-word ratios summed, languages, and up to 3 examples per reason.
    Mergeable: merge() adds two of them."""
    out: dict = {}
    for r in recs:
        raw, quality, langs = r.get("raw_captions") or {}, r.get("quality") or {}, r.get("caption_lang") or {}
        for kind in {k for k, v in raw.items() if v is not None} | set(quality):
            text = raw.get(kind) or ""  # a dropped clip's record holds its reasons only
            t = out.setdefault(kind, {"reasons": {}, "words": [0] * BINS, "distinct": 0.0, "n": 0, "langs": {}})
            why, w = quality.get(kind, "ok"), words(text)
            t["reasons"][why] = t["reasons"].get(why, 0) + 1
            t["words"][min(len(w), BINS - 1)] += 1
            t["distinct"] += len(set(w)) / len(w) if w else 0.0
            t["n"] += 1
            lang = langs.get(kind) or "unknown"
            t["langs"][lang] = t["langs"].get(lang, 0) + 1
            if why != "ok":
                ex = t.setdefault("examples", {}).setdefault(why, [])
                if len(ex) < 3:
                    ex.append(text[:300])
    return out


def merge(a: dict, b: dict) -> dict:
    for kind, t in b.items():
        s = a.setdefault(kind, {"reasons": {}, "words": [0] * BINS, "distinct": 0.0, "n": 0, "langs": {}})
        for f in ("reasons", "langs"):
            for k, v in t[f].items():
                s[f][k] = s[f].get(k, 0) + v
        s["words"] = [x + y for x, y in zip(s["words"], t["words"], strict=True)]
        s["distinct"] += t["distinct"]
        s["n"] += t["n"]
        for why, ex in t.get("examples", {}).items():
            s.setdefault("examples", {}).setdefault(why, [])
            s["examples"][why] = (s["examples"][why] + ex)[:3]
    return a


def summary(t: dict) -> dict:
    """One caption type's tally as the manifest keeps it: counts per reason, word-count quantiles, the mean
    distinct-word ratio, languages, examples."""
    h = np.asarray(t["words"])
    cum = np.cumsum(h)
    q = {f"p{int(p * 100)}": int(np.searchsorted(cum, p * cum[-1])) if cum[-1] else 0 for p in (0.05, 0.5, 0.95)}
    return {
        "captions": t["n"],
        "reasons": dict(sorted(t["reasons"].items())),
        "words": {**q, "max_bin": BINS - 1},
        "distinct_ratio": round(t["distinct"] / t["n"], 4) if t["n"] else None,
        "languages": dict(sorted(t["langs"].items(), key=lambda x: -x[1])[:10]),
        "examples": t.get("examples", {}),
    }
