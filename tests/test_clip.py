"""CLIP scorer: a tiny random CLIPModel through transformers, and a tiny open_clip model through open_clip (in the
torchvision environment, .venv-tv), on real jpg frames."""

import numpy as np
import pytest
from recipe import recipe

from mvid.models import backends
from mvid.models.base import ModelSpec
from mvid.models.samples import source_frames
from mvid.models.testing import clip_tokenizer

TEXTS = {"V": "a dog walks in the park", "AVS": "a red car drives down the street at night while music plays", "S": ""}


@pytest.fixture(scope="module")
def env(tmp_path_factory, weights):
    root = tmp_path_factory.mktemp("clip")
    a, b = source_frames(root / "a", "testsrc2", 5, "96x64"), source_frames(root / "b", "mandelbrot", 3, "96x64")
    return weights / "tiny-clip", a, b


def scorer(path, backend="transformers", **options):
    s = backends("clip")[backend](ModelSpec(backend=backend, model=str(path), device="cpu", options=options))
    s.load()
    return s


def check(s, a, b):
    items = [{"frames": a, "texts": TEXTS}, {"frames": b, "texts": {"V": TEXTS["V"]}}]
    out = s(items)
    assert len(out) == 2
    assert set(out[0]["scores"]) == {"V", "AVS"}  # the empty caption gets no score
    assert set(out[1]["scores"]) == {"V"}
    for o in out:
        assert all(isinstance(v, float) and -1 <= v <= 1 for v in o["scores"].values())
        assert o["image_emb"].dtype == np.float32 and abs(np.linalg.norm(o["image_emb"]) - 1) < 1e-5
    assert out[0]["scores"]["V"] != out[0]["scores"]["AVS"]  # different texts, different scores
    assert out[0]["scores"]["V"] != out[1]["scores"]["V"]  # different frames, different scores
    again = s(items)
    assert again[0]["scores"] == out[0]["scores"]
    np.testing.assert_array_equal(again[0]["image_emb"], out[0]["image_emb"])
    return out


def test_transformers_scores(env):
    path, a, b = env
    s = scorer(path)
    assert s.name == "tiny-random/clip"
    check(s, a, b)


def test_scores_are_frame_text_cosines(env):
    """Scores are the aggregate over frames of each frame's cosine with the text, per options.aggregate."""
    path, a, _ = env
    s = scorer(path, batch_size=2)  # batching must not change the result
    from PIL import Image

    img = s._chunked(s.embed_images, [Image.open(p).convert("RGB") for p in a])
    txt = s._chunked(s.embed_texts, [TEXTS["AVS"]])
    cos = (img @ txt.T)[:, 0]
    assert np.ptp(cos) > 0  # frames differ
    for agg, fn in (("mean", np.mean), ("max", np.max), ("median", np.median)):
        s.aggregate = agg
        got = s([{"frames": a, "texts": {"AVS": TEXTS["AVS"]}}])[0]
        assert got["scores"]["AVS"] == pytest.approx(float(fn(cos)), abs=1e-6)
        emb = img.mean(0)
        np.testing.assert_allclose(got["image_emb"], emb / np.linalg.norm(emb), atol=1e-6)


def test_bad_aggregate(env):
    with pytest.raises(ValueError):
        scorer(env[0], aggregate="sum")


def test_tokenizer_round_trip():
    tok = clip_tokenizer()
    ids = tok("A Dog walks")["input_ids"]
    assert ids[0] == tok.bos_token_id and ids[-1] == tok.eos_token_id and len(ids) == 5
    assert tok.decode(ids, skip_special_tokens=True) == "a dog walks"


@pytest.mark.torchvision
def test_open_clip_scores(env, tmp_path):
    from mvid.models.testing import tiny_open_clip

    tiny_open_clip(tmp_path)
    s = scorer(tmp_path / "tiny-open-clip", backend="open_clip")
    assert s.name == "tiny-random/open-clip"
    check(s, env[1], env[2])


STAGES = """
  - name: probe
    resources: {{cpus: 0.5}}
  - name: split
    min_clip_s: 0.5
    resources: {{cpus: 0.5, actors: 1}}
  - name: extract
    frames: 4
    frame_size: 96
    resources: {{cpus: 0.5}}
  - name: vcaption
    model: {{backend: transformers, model: tiny-qwen2-vl, options: {{max_pixels: 50176, max_new_tokens: 8}}}}
    checks: {{action: mark}}  # the tiny model's captions fail the checks: kept, to be scored
    resources: {{cpus: 0.25, actors: 1}}
  - name: fuse
    llm: {{backend: transformers, model: tiny-llama, options: {{max_tokens: 8}}}}
    resources: {{cpus: 0.25, actors: 1}}
  - name: clipscore
    model: {{backend: open_clip, model: {clip}}}
    resources: {{cpus: 0.25, actors: 1}}
  - name: select
    quantile: 0.5
  - name: shard
    videos: 1
"""


@pytest.mark.torchvision
@pytest.mark.e2e
def test_pipeline_scores_with_open_clip(cut_videos, tmp_path, mvid, persisted):
    """A pipeline run whose clipscore stage is the production profile's open_clip backend: every clip with a V
    caption scored by it, and the global quantile keeps the better half."""
    import json

    import pyarrow.parquet as pq

    from mvid.models.testing import tiny_open_clip

    tiny_open_clip(tmp_path)
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"path": str(p)}) + "\n" for p, _ in cut_videos[:2]))
    cfg = tmp_path / "recipe.yaml"
    cfg.write_text(recipe(tmp_path, STAGES.format(clip=tmp_path / "tiny-open-clip")))
    mvid("run", "--config", cfg)
    scored = [c for c in persisted[1](tmp_path / "work", "clipscore").values() if c["captions"]["V"]]
    assert len(scored) >= 4 and all(c["models"]["clip_scores"] == "tiny-random/open-clip" for c in scored)
    scores = sorted(c["clip_score"] for c in scored)
    kept = pq.read_table(tmp_path / "out" / "index").column("clip_score").to_pylist()
    assert 0 < len(kept) < len(scores) and min(kept) >= scores[len(scores) // 2 - 1]
