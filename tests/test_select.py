"""Selection: fixed threshold, global top-N / quantile and near-duplicates, exactly right on synthetic scores."""
import numpy as np
import pytest
from pydantic import ValidationError

from pipeline.stage import Ctx
from stages.clipscore import pack
from stages.select import Select, SelectParams


def recs(scores, video="v", embs=None):
    rng = np.random.default_rng(0)
    out = []
    for i, s in enumerate(scores):
        e = embs[i] if embs is not None else rng.normal(size=16)
        out.append({"clip_id": f"{video}-{i:04d}", "video_id": video, "clip_score": s,
                    "clip_emb": pack(e / np.linalg.norm(e))})
    return out


def select(rs, tmp_path, **kw):
    res = Select(SelectParams(**kw), Ctx(tmp_path, tmp_path)).process_all(rs)
    kept = [r["clip_id"] for x in res for r in x.records]
    dropped = {j["id"]: j for x in res for j in x.rejects}
    return kept, dropped


def test_top_n_is_exact_and_keeps_scores_of_dropped(tmp_path):
    scores = [0.31, 0.12, 0.55, None, 0.55, 0.20, 0.41]
    kept, dropped = select(recs(scores), tmp_path, top_n=3)
    assert kept == ["v-0002", "v-0004", "v-0006"]  # 0.55, 0.55, 0.41
    assert set(dropped) == {"v-0000", "v-0001", "v-0003", "v-0005"}
    assert dropped["v-0000"]["clip_score"] == 0.31 and dropped["v-0000"]["kind"] == "drop"
    assert select(recs(scores), tmp_path, top_n=1)[0] == ["v-0002"]  # a tie is broken by id
    assert dropped["v-0003"]["message"] == "no clip_score"


def test_quantile(tmp_path):
    scores = list(np.linspace(0, 1, 10))
    kept, _ = select(recs(scores), tmp_path, quantile=0.3)
    assert kept == ["v-0007", "v-0008", "v-0009"]
    assert select(recs(scores), tmp_path, quantile=1.0)[0] == [f"v-{i:04d}" for i in range(10)]


def test_near_duplicates_within_a_video_only(tmp_path):
    e = np.eye(4)
    embs = [e[0], e[0] * 0.99 + e[1] * 0.01, e[2], e[3]]
    rs = recs([0.5, 0.9, 0.3, 0.2], "a", embs) + recs([0.4], "b", [e[0]])
    kept, dropped = select(rs, tmp_path, top_n=10, dedup=0.95)
    assert dropped["a-0000"]["code"] == "near_duplicate" and "a-0001" in dropped["a-0000"]["message"]
    assert "b-0000" in kept  # the same picture in another video is not a duplicate


def test_params_need_exactly_one_rule():
    with pytest.raises(ValidationError):
        SelectParams()
    with pytest.raises(ValidationError):
        SelectParams(top_n=3, quantile=0.5)
