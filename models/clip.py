"""CLIP-score role ("clip"): cosine similarity between a clip's frames and each of its captions.

Backends: open_clip (open_clip_torch; it needs a working torchvision) and transformers (CLIPModel).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mvid.models.base import TINY_MARKER, Adapter, ModelMissing, ModelSpec, device
from mvid.models.vision import subsample

AGGREGATE = {"mean": np.mean, "max": np.max, "median": np.median}


def unit(x: np.ndarray) -> np.ndarray:
    return x / np.maximum(np.linalg.norm(x, axis=-1, keepdims=True), 1e-12)


class ClipScorer(Adapter):
    role = "clip"

    def _setup(self) -> None:
        import torch

        o = self.spec.options
        self.torch, self.dev = torch, device(self.spec)
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
        txt = self._chunked(self.embed_texts, [it["texts"][k] for it, ks in zip(items, keys) for k in ks])
        out, i, j = [], 0, 0
        for ps, ks in zip(paths, keys):
            e, t = img[i : i + len(ps)], txt[j : j + len(ks)]
            i, j = i + len(ps), j + len(ks)
            sim = np.clip(AGGREGATE[self.aggregate](e @ t.T, axis=0), -1.0, 1.0) if ks else []
            out.append(
                {"scores": {k: float(s) for k, s in zip(ks, sim)}, "image_emb": unit(e.mean(0)).astype(np.float32)}
            )
        return out


class OpenClip(ClipScorer):
    """model: a local open_clip folder (open_clip_config.json + weights, the hub layout), or a built-in
    architecture name (e.g. ViT-L-14) with options.pretrained: a checkpoint file, or a tag fetched when allow_hub."""

    backend = "open_clip"

    def __init__(self, spec: ModelSpec):
        pre = spec.options.get("pretrained")
        if not pre:
            super().__init__(spec)
            return
        self.spec, self.path = spec, spec.model
        if not Path(pre).expanduser().is_file() and not spec.allow_hub:
            raise ModelMissing(
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
            name, pretrained=pre, device=self.dev, precision=self.spec.options.get("precision", "fp32")
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
        hub = {"local_files_only": not self.spec.allow_hub}
        # PIL preprocessing by default: the same pixels with or without torchvision
        self.ip = AutoImageProcessor.from_pretrained(
            self.path, backend=self.spec.options.get("image_backend", "pil"), **hub
        )
        self.tok = AutoTokenizer.from_pretrained(self.path, **hub)
        dtype = getattr(self.torch, self.spec.options.get("dtype", "float16" if self.dev == "cuda" else "float32"))
        self.model = CLIPModel.from_pretrained(self.path, dtype=dtype, **hub).to(self.dev).eval()
        self.max_len = self.model.config.text_config.max_position_embeddings

    def _pooled(self, out):
        return out if self.torch.is_tensor(out) else out.pooler_output  # transformers 4 returns the tensor itself

    def embed_images(self, images: list):
        px = self.ip(images, return_tensors="pt")["pixel_values"].to(self.dev, self.model.dtype)
        return self._pooled(self.model.get_image_features(pixel_values=px))

    def embed_texts(self, texts: list[str]):
        enc = self.tok(texts, padding=True, truncation=True, max_length=self.max_len, return_tensors="pt")
        return self._pooled(self.model.get_text_features(**enc.to(self.dev)))


BACKENDS = {c.backend: c for c in (OpenClip, TransformersClip)}

WORDS = (
    "a the of and in on with is are while to video person people dog car street park music plays sound "
    "walks drives night talk red blue green scene colour colors bars test pattern moving"
).split()


def clip_tokenizer():
    """CLIP's byte-level BPE (words end in </w>) over a tiny vocabulary: every byte, plus merges for a few words."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    merges = {}
    for w in WORDS:
        parts = [*w[:-1], w[-1] + "</w>"]
        cur = parts[0]
        for p in parts[1:]:
            merges.setdefault((cur, p), None)
            cur += p
            vocab.setdefault(cur, len(vocab))
    for s in ("<|startoftext|>", "<|endoftext|>"):
        vocab[s] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=list(merges), model_max_length=77)


def tiny(dest: Path) -> None:
    """A tiny random CLIPModel (small text and vision towers) with a local CLIP tokenizer and image processor."""
    import torch
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    out = Path(dest) / "tiny-clip"
    tok = clip_tokenizer()
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(out)
    tok.save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    (out / TINY_MARKER).write_text(json.dumps({"arch": "clip"}))


def tiny_open_clip(dest: Path) -> None:
    """A tiny random open_clip CLIP in the hub folder layout (needs open_clip_torch, hence torchvision)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    out = Path(dest) / "tiny-open-clip"
    out.mkdir(parents=True, exist_ok=True)
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    torch.manual_seed(0)
    model = open_clip.create_model("local-dir:" + str(out), load_weights=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "open_clip_model.safetensors")
    (out / TINY_MARKER).write_text(json.dumps({"arch": "open-clip"}))
