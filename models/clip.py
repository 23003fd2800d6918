"""CLIP-score role ("clip"): cosine similarity between a clip's frames and each of its captions.

Backends: open_clip (open_clip_torch; it needs a working torchvision) and transformers (CLIPModel).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import numpy as np

from mvid.models.base import Adapter, ModelMissingError, ModelSpec
from mvid.models.vision import subsample

AGGREGATE: dict[str, Callable[..., np.ndarray]] = {"mean": np.mean, "max": np.max, "median": np.median}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class ClipScorer(Adapter):
    role = "clip"
    gpu_dtype = "float16"

    def _setup(self) -> None:
        import torch

        o = self.spec.options
        self.torch, self.dev = torch, self.device
        self.aggregate = o.get("aggregate", "mean")
        if self.aggregate not in AGGREGATE:
            raise ValueError(f"clip aggregate must be one of {sorted(AGGREGATE)}, got {self.aggregate!r}")
        self.max_frames = int(o.get("max_frames", 8))
        self.batch = int(o.get("batch_size", 64))

    def embed_images(self, images: list) -> np.ndarray:
        raise NotImplementedError

    def embed_texts(self, texts: list[str]) -> np.ndarray:
        raise NotImplementedError

    def _chunked(self, fn, xs: list) -> np.ndarray:
        with self.torch.inference_mode():
            parts = [fn(xs[i : i + self.batch]).float().cpu().numpy() for i in range(0, len(xs), self.batch)]
        return unit(np.concatenate(parts)) if parts else np.zeros((0, 0), np.float32)

    def __call__(self, items: list[dict]) -> list[dict]:
        """Per item: {"scores": {text key: frame-aggregated cosine}, "image_emb": unit mean of the frame embeddings}.

        Empty texts (a caption that could not be made) get no score.
        """
        from PIL import Image

        paths = [subsample(it["frames"], self.max_frames) for it in items]
        if any(not p for p in paths):
            raise ValueError("clip scoring needs at least one frame per item")
        keys = [[k for k, v in it["texts"].items() if v] for it in items]
        img = self._chunked(self.embed_images, [Image.open(p).convert("RGB") for ps in paths for p in ps])
        txt = self._chunked(self.embed_texts, [it["texts"][k] for it, ks in zip(items, keys, strict=True) for k in ks])
        out, i, j = [], 0, 0
        for ps, ks in zip(paths, keys, strict=True):
            e, t = img[i : i + len(ps)], txt[j : j + len(ks)]
            i, j = i + len(ps), j + len(ks)
            sim = np.clip(AGGREGATE[self.aggregate](e @ t.T, axis=0), -1.0, 1.0) if ks else np.zeros(0)
            out.append(
                {
                    "scores": {k: float(s) for k, s in zip(ks, sim, strict=True)},
                    "image_emb": unit(e.mean(0)).astype(np.float32),
                }
            )
        return out


class OpenClip(ClipScorer):
    """model: a local open_clip folder (open_clip_config.json + weights, the hub layout), or a built-in
    architecture name (e.g. ViT-L-14) with options.pretrained: a checkpoint file, or a tag fetched when allow_hub."""

    backend = "open_clip"
    libs = ("torch", "open_clip_torch")

    @property
    def dtype_name(self) -> str:
        return self.spec.options.get("precision", "fp32")

    def __init__(self, spec: ModelSpec):
        pre = spec.options.get("pretrained")
        if not pre:
            super().__init__(spec)
            return
        self.spec, self.path = spec, spec.model
        if not Path(pre).expanduser().is_file() and not spec.allow_hub:
            raise ModelMissingError(
                f"role 'clip' (open_clip): pretrained '{pre}' is not a local checkpoint file; "
                f"set allow_hub: true to download the tag"
            )

    def load(self) -> None:
        import open_clip

        self._setup()
        pre = self.spec.options.get("pretrained")
        name = self.path if pre else "local-dir:" + self.path
        if pre and Path(pre).expanduser().is_file():
            pre = str(Path(pre).expanduser())
        self.model, self.preprocess = open_clip.create_model_from_pretrained(
            name, pretrained=pre, device=self.dev, precision=self.dtype_name
        )
        self.model.eval()
        self.tok = open_clip.get_tokenizer(name)

    def embed_images(self, images: list):
        x = self.torch.stack([self.preprocess(im) for im in images]).to(self.dev)
        return self.model.encode_image(x)

    def embed_texts(self, texts: list[str]):
        return self.model.encode_text(self.tok(texts).to(self.dev))


class TransformersClip(ClipScorer):
    backend = "transformers"

    def load(self) -> None:
        from transformers import AutoImageProcessor, AutoTokenizer, CLIPModel

        self._setup()
        # PIL preprocessing by default: the same pixels with or without torchvision
        self.ip = AutoImageProcessor.from_pretrained(
            self.path, backend=self.spec.options.get("image_backend", "pil"), **self.hub
        )
        self.tok = AutoTokenizer.from_pretrained(self.path, **self.hub)
        self.model = CLIPModel.from_pretrained(self.path, dtype=self.dtype(), **self.hub).to(self.dev).eval()
        self.max_len = self.model.config.text_config.max_position_embeddings

    def _pooled(self, out):
        return out if self.torch.is_tensor(out) else out.pooler_output  # transformers 4 returns the tensor itself

    def embed_images(self, images: list):
        px = self.ip(images, return_tensors="pt")["pixel_values"].to(self.dev, self.model.dtype)
        return self._pooled(self.model.get_image_features(pixel_values=px))

    def embed_texts(self, texts: list[str]):
        enc = self.tok(texts, padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")
        return self._pooled(self.model.get_text_features(**enc.to(self.dev)))
