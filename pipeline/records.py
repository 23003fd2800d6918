"""Record helpers that every stage may use. A clip's dict fields are copied before a stage changes them (a
record may be shared with the stage's input), and an absent field is explained by a code of
schemas/record.py REASONS."""

from __future__ import annotations

DICTS = ("captions", "raw_captions", "reasons", "models", "quality", "caption_lang")


def edit(rec: dict, **fields) -> dict:
    """A copy of rec whose dict fields (DICTS) may be changed in place, with `fields` set."""
    return {**rec, **{k: dict(rec.get(k) or {}) for k in DICTS}, **fields}
