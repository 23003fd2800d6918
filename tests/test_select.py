"""Selection: global top-N / quantile and near-duplicates, exactly right on synthetic scores. The cut is found the
way the run finds it (stages.select.cutoff over the order keys); here the pool is one array, not a Dataset."""

import numpy as np
import pytest
from pydantic import ValidationError

from mvid.stages.select import Select, SelectParams, bins, cutoff, order, rank, within


def video(scores, vid="v", embs=None):
    rng = np.random.default_rng(0)
    clips = []
    for i, s in enumerate(scores):
        e = embs[i] if embs is not None else rng.normal(size=16)
        clips.append({"clip_id": f"{vid}-{i:04d}", "clip_score": s, "clip_emb": list(e / np.linalg.norm(e))})
    return {"video_id": vid, "path": f"/{vid}.mp4", "clips": clips, "rejects": []}


def select(videos, **kw):
    """Kept clip ids in order, and drop records by id."""
    sel = Select(SelectParams(**kw), None)
    pool = [c for v in videos for c in sel.pool(v)]
    u, ids = order([c["clip_score"] for c in pool]), [c["clip_id"] for c in pool]
    n = sel.n(len(pool))

    def hist(prefix, shift):
        h = np.zeros(1 << 16, np.int64)
        b, k = bins(u, prefix, shift)
        h[b] += k
        return h

    def fetch(prefix, shift):
        return [(int(x), c) for x, c, m in zip(u, ids, within(u, prefix, shift), strict=True) if m]

    cut = cutoff(lambda: len(pool), hist, fetch, n, sel.p.fetch_limit)
    res = [sel.decide(v, cut, n, len(pool)) for v in videos]
    kept = sorted((c for r in res for c in r.records[0]["clips"]), key=rank)
    return [c["clip_id"] for c in kept], {j["id"]: j for r in res for j in r.rejects}


def old_rule(scores, n):
    """The rule as it stood before selection was distributed: sort every scored clip, keep the first n."""
    pool = sorted((s, f"v-{i:04d}") for i, s in enumerate(scores) if s is not None)
    return [c for _, c in sorted(pool, key=lambda x: (-x[0], x[1]))[:n]]


def test_top_n_is_exact_and_keeps_scores_of_dropped():
    scores = [0.31, 0.12, 0.55, None, 0.55, 0.20, 0.41]
    kept, dropped = select([video(scores)], top_n=3)
    assert kept == ["v-0002", "v-0004", "v-0006"]  # 0.55, 0.55, 0.41
    assert set(dropped) == {"v-0000", "v-0001", "v-0003", "v-0005"}
    assert dropped["v-0000"]["clip_score"] == 0.31 and dropped["v-0000"]["kind"] == "drop"
    assert select([video(scores)], top_n=1)[0] == ["v-0002"]  # a tie is broken by id
    assert dropped["v-0003"]["message"] == "no clip_score"


def test_quantile():
    scores = list(np.linspace(0, 1, 10))
    kept, _ = select([video(scores)], quantile=0.3)
    assert kept == ["v-0009", "v-0008", "v-0007"]
    assert sorted(select([video(scores)], quantile=1.0)[0]) == [f"v-{i:04d}" for i in range(10)]


@pytest.mark.parametrize("limit", [100_000, 1])
def test_same_kept_set_as_the_old_rule_with_ties(limit):
    """Many ties, negative scores and near-equal values; limit=1 forces every radix pass down to exact ties."""
    rng = np.random.default_rng(1)
    scores = [round(float(x), 2) for x in rng.normal(0.2, 0.3, 3000)] + [0.3, 0.3 + 1e-12, -0.0, 0.0, None]
    for q in (0.9, 0.5, 0.01):
        kept, dropped = select([video(scores)], quantile=q, fetch_limit=limit)
        assert kept == old_rule(scores, int(np.ceil(q * (len(scores) - 1))))
        assert len(kept) + len(dropped) == len(scores)
    assert select([video(scores)], top_n=0, fetch_limit=limit)[0] == []


def test_near_duplicates_within_a_video_only():
    e = np.eye(4)
    embs = [e[0], e[0] * 0.99 + e[1] * 0.01, e[2], e[3]]
    kept, dropped = select([video([0.5, 0.9, 0.3, 0.2], "a", embs), video([0.4], "b", [e[0]])], top_n=10, dedup=0.95)
    assert dropped["a-0000"]["code"] == "near_duplicate" and "a-0001" in dropped["a-0000"]["message"]
    assert "b-0000" in kept  # the same picture in another video is not a duplicate
    assert dropped["a-0000"]["clip_score"] == 0.5


def test_near_duplicates_by_frame_hashes():
    """The mean Hamming distance over the frames both clips have, frame i against frame i."""
    base = [0x0F0F_0F0F_0F0F_0F0F, 0x1234_5678_9ABC_DEF0, -1]
    clips = [
        {"clip_id": "v-0000", "clip_score": 0.9, "frame_hashes": base},
        {"clip_id": "v-0001", "clip_score": 0.8, "frame_hashes": [base[0] ^ 0b111, base[1] ^ 0b1, base[2] ^ 0b11]},
        {"clip_id": "v-0002", "clip_score": 0.7, "frame_hashes": [~base[0], base[1]]},  # far on one of two frames
        {"clip_id": "v-0003", "clip_score": 0.6, "frame_hashes": base[:1]},  # one frame, the same
        {"clip_id": "v-0004", "clip_score": 0.5, "frame_hashes": []},  # no frames: never a duplicate
    ]
    sel = Select(SelectParams(top_n=9, dedup_hash=2), None)
    assert sel.dups({"clips": clips}) == {"v-0001": "v-0000", "v-0003": "v-0000"}  # mean 2 bits; 0 bits


def test_params_need_exactly_one_rule():
    with pytest.raises(ValidationError):
        SelectParams()
    with pytest.raises(ValidationError):
        SelectParams(top_n=3, quantile=0.5)
