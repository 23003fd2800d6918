"""select: the global selection over the whole run (the paper kept its top 60M clips by CLIP score).

A barrier: every score is computed first. Keeps the top_n clips, or the top `quantile` fraction, by clip_score,
ties broken by clip_id; optionally first drops near-duplicates within a video (cosine of CLIP image embeddings
above dedup). Distributed: dedup needs one video at a time (a video's clips travel together); the cut is found
from the score column alone (`cutoff`), and each unit then applies it on its own. Dropped clips keep their
scores in their drop records."""

from __future__ import annotations

import math
from collections.abc import Callable

import numpy as np
from pydantic import Field, model_validator

from mvid.pipeline.stage import Result, Stage, StageParams, reject_of
from mvid.stages import register


class SelectParams(StageParams):
    name: str = "select"
    top_n: int | None = Field(None, ge=0)
    quantile: float | None = Field(None, gt=0, le=1)  # keep this top fraction
    dedup: float | None = Field(None, gt=0, le=1)  # CLIP image cosine above which a clip duplicates a better one
    # Without a trained CLIP: the mean Hamming distance of the clips' frame dHashes (of 64 bits) at or below which
    # a clip duplicates a better one.
    dedup_hash: int | None = Field(None, ge=0, le=64)
    # The most candidates fetched to the driver: passes over the score column narrow the cut until so few share it.
    fetch_limit: int = Field(100_000, ge=1)

    @model_validator(mode="after")
    def _one(self):
        if (self.top_n is None) == (self.quantile is None):
            raise ValueError("set exactly one of top_n or quantile")
        if self.dedup is not None and self.dedup_hash is not None:
            raise ValueError("set at most one of dedup (CLIP embeddings) or dedup_hash (frame hashes)")
        return self


def rank(c: dict):
    """Best first; ties broken by id, so a selection never depends on arrival order."""
    s = c.get("clip_score")
    return (s is None, -(s or 0.0), c["clip_id"])


def order(scores) -> np.ndarray:
    """uint64 keys whose ascending order is descending score (float64 bits made monotone)."""
    b = (0.0 - np.asarray(scores, np.float64)).view(np.uint64)  # 0.0 - x: no -0.0, so 0.0 ties with -0.0
    return np.where(b >> np.uint64(63), ~b, b | np.uint64(1 << 63))


def _high(u: np.ndarray, shift: int) -> np.ndarray:
    return u >> np.uint64(shift) if shift < 64 else np.zeros_like(u)


def bins(u: np.ndarray, prefix: int, shift: int) -> tuple[np.ndarray, np.ndarray]:
    """Counts of order keys by their 16 bits below `shift`, among keys whose bits above shift + 16 are prefix."""
    b, n = np.unique(
        (u[_high(u, shift + 16) == np.uint64(prefix)] >> np.uint64(shift)) & np.uint64(0xFFFF), return_counts=True
    )
    return b.astype(np.int64), n.astype(np.int64)


def within(u: np.ndarray, prefix: int, shift: int) -> np.ndarray:
    """Which order keys have bits above `shift` equal to prefix."""
    return _high(u, shift) == np.uint64(prefix)


def near_duplicates(clips: list[dict], close: Callable[[int, list[int]], np.ndarray]) -> dict[str, str]:
    """clip_id -> the better-scored clip of the same video it duplicates (clips of one video). close(i, kept):
    which of the kept clips (indices) clip i duplicates, as a boolean array."""
    kept: list[int] = []
    dup: dict[str, str] = {}
    for i in sorted(range(len(clips)), key=lambda i: rank(clips[i])):
        hit = np.flatnonzero(close(i, kept)) if kept else np.zeros(0, np.int64)
        if len(hit):
            dup[clips[i]["clip_id"]] = clips[kept[hit[0]]]["clip_id"]
        else:
            kept.append(i)
    return dup


def cosine_above(limit: float, clips: list[dict]) -> Callable[[int, list[int]], np.ndarray]:
    """Near-duplicates by CLIP image embeddings (unit norm): cosine above limit."""
    e = np.asarray([c["clip_emb"] for c in clips], np.float32)
    return lambda i, kept: e[kept] @ e[i] > limit


def hashes_within(bits: int, clips: list[dict]) -> Callable[[int, list[int]], np.ndarray]:
    """Near-duplicates by the mean Hamming distance of their frames' dHashes (frame i against frame i, over the
    frames both have): at most `bits`."""
    n = max((len(c["frame_hashes"] or ()) for c in clips), default=0)
    h = np.zeros((len(clips), n), np.uint64)
    have = np.zeros((len(clips), n), bool)
    for i, c in enumerate(clips):
        f = np.asarray(c["frame_hashes"] or [], np.int64).view(np.uint64)
        h[i, : len(f)], have[i, : len(f)] = f, True

    def close(i: int, kept: list[int]) -> np.ndarray:
        both = have[kept] & have[i]
        d = np.bitwise_count(h[kept] ^ h[i]).astype(np.float64)
        frames = both.sum(1)
        return (frames > 0) & ((d * both).sum(1) <= bits * np.maximum(frames, 1))

    return close


def cutoff(count, hist, fetch, n: int, limit: int) -> tuple[int, str] | None:
    """The n-th best (order key, clip_id) of the pool, exactly, in a few passes over the score column:
    radix select, 16 bits of the order key a pass, until at most `limit` candidates share the prefix (a small pool
    at once); those are fetched and sorted. count() is the pool size; hist(prefix, shift) counts pool clips by the
    16 bits below `shift` among those whose key >> (shift + 16) == prefix; fetch(prefix, shift) returns
    (key, clip_id) of the clips whose key >> shift == prefix. None: keep the whole pool."""
    total = count()
    if n >= total:
        return None
    if n <= 0:
        return (-1, "")  # before every key: keep nothing
    prefix, need, shift = 0, n, 64  # need: rank within the current prefix, 1-based
    while total > limit:
        shift -= 16
        h = hist(prefix, shift)
        cum = np.cumsum(h)
        b = int(np.searchsorted(cum, need))
        need -= int(cum[b - 1]) if b else 0
        prefix = (prefix << 16) | b
        if h[b] <= limit or shift == 0:
            break
    cands = sorted(fetch(prefix, shift))
    return cands[need - 1]


@register
class Select(Stage[SelectParams]):
    requires = ("clip_id", "clip_score")  # and clip_emb or frame_hashes for near-duplicates
    barrier = True

    def n(self, pool: int) -> int:
        p = self.p
        return p.top_n if p.top_n is not None else math.ceil((p.quantile or 1.0) * pool)

    def dups(self, video: dict) -> dict[str, str]:
        p = self.p
        if p.dedup is not None:
            return near_duplicates(video["clips"], cosine_above(p.dedup, video["clips"]))
        if p.dedup_hash is not None:
            return near_duplicates(video["clips"], hashes_within(p.dedup_hash, video["clips"]))
        return {}

    def pool(self, video: dict) -> list[dict]:
        """The clips of a video that compete for the global cut (scored, not near-duplicates)."""
        dup = self.dups(video)
        return [c for c in video["clips"] if c["clip_id"] not in dup and c["clip_score"] is not None]

    def decide(self, video: dict, cut: tuple[int, str] | None, n: int, pool: int) -> Result:
        """The video with its kept clips; drop records for the others, with their scores."""
        dup, keep, res = self.dups(video), [], Result()
        for c in video["clips"]:
            rec, score = {**video, **c}, c["clip_score"]
            key = None if score is None else (int(order([score])[0]), c["clip_id"])
            if c["clip_id"] in dup:
                res.rejects.append(
                    reject_of(rec, "near_duplicate", f"duplicates {dup[c['clip_id']]}", "drop", clip_score=score)
                )
            elif key is not None and (cut is None or key <= cut):
                keep.append(c)
            else:
                why = "no clip_score" if score is None else f"rank beyond {n} of {pool}"
                res.rejects.append(reject_of(rec, "not_selected", why, "drop", clip_score=score))
        res.records.append({**video, "clips": keep})
        return res
