"""Common interface of model adapters: one adapter per model role, no pipeline logic."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, ClassVar

from pydantic import BaseModel, ConfigDict

TINY_MARKER = "mvid-tiny.json"  # written by `mvid models tiny` into every tiny model folder
PROVENANCE = "mvid-model.json"  # written by `mvid models packaged`: source package and licence


class ModelSpec(BaseModel):
    """Config of one model role: which backend runs which weights."""

    model_config = ConfigDict(extra="forbid")
    backend: str
    model: str  # a local path, a folder name under MVID_MODEL_DIR, or a hub id
    allow_hub: bool = False
    device: str = "auto"  # auto, cpu, cuda
    options: dict[str, Any] = {}


class ModelMissingError(RuntimeError):
    pass


class ModelLoadError(ModelMissingError):
    """A model's files are there but do not load: names the role, the path and what was expected."""


def model_dir() -> Path:
    return Path(os.environ.get("MVID_MODEL_DIR", "weights")).expanduser()


def resolve(role: str, spec: ModelSpec, files: str = "the model's weights") -> str:
    """Local path, then MVID_MODEL_DIR/<model>, then the hub id when allowed."""
    for cand in (Path(spec.model).expanduser(), model_dir() / spec.model):
        if cand.exists():
            return str(cand)
    if spec.allow_hub:
        return spec.model
    raise ModelMissingError(
        f"role '{role}' ({spec.backend}) needs {files} for '{spec.model}': not a local path and not in "
        f"MVID_MODEL_DIR={model_dir()}. Run `mvid models fetch PROFILE` with internet access, "
        f"`mvid models tiny {model_dir()}` for tiny test models, or set allow_hub: true."
    )


class Adapter:
    """Load once per actor with load(), then call with a batch; returns one output per input."""

    role: ClassVar[str]
    backend: ClassVar[str]
    files: ClassVar[str] = "the model's weights"
    # The distributions whose versions shape its output (the cache key, pipeline/cache.py).
    libs: ClassVar[tuple[str, ...]] = ("torch", "transformers")
    gpu_dtype: ClassVar[str] = "bfloat16"  # the weights' dtype on CUDA unless options.dtype says otherwise
    # GPUs its stage reserves per worker (set by Stage.adapters); None outside a stage: any visible GPU is used.
    gpus: float | None = None

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.path = resolve(self.role, spec, self.files)

    @property
    def name(self) -> str:
        """Provenance: the model id, prefixed tiny-random/ for untrained test models."""
        marker = Path(self.path) / TINY_MARKER
        if marker.exists():
            return "tiny-random/" + json.loads(marker.read_text())["arch"]
        return self.spec.model

    def provenance(self) -> dict[str, str]:
        """Where the weights came from and under which licence, for the manifest."""
        p = Path(self.path)
        if (p / PROVENANCE).exists():
            info = json.loads((p / PROVENANCE).read_text())
            return {"source": info["source"], "license": info["license"]}
        if (p / TINY_MARKER).exists():
            return {"source": "mvid models tiny", "license": "none: random weights"}
        return {"source": self.path if p.exists() else f"hub: {self.spec.model}", "license": "see the model's card"}

    def check(self) -> None:
        """A cheap look at the resolved files before any video is touched; load() does the real work."""
        p = Path(self.path)
        problem = (
            "is an empty file"
            if p.is_file() and not p.stat().st_size
            else "is an empty folder"
            if p.is_dir() and not any(p.iterdir())
            else None
        )
        if not problem and (p / "config.json").is_file():
            try:
                json.loads((p / "config.json").read_text())
            except ValueError as e:
                problem = f"has a config.json that is not valid JSON ({e})"
        if problem:
            raise ModelLoadError(f"role '{self.role}' ({self.spec.backend}): {p} {problem}; expected {self.files}")

    @property
    def device(self) -> str:
        """spec.device, or for "auto": CUDA when the stage reserves a GPU (outside a stage, when one is visible)."""
        if self.spec.device != "auto":
            return self.spec.device
        if self.gpus is not None:
            return "cuda" if self.gpus > 0 else "cpu"
        import torch

        return "cuda" if torch.cuda.is_available() else "cpu"

    @property
    def dtype_name(self) -> str:
        """The dtype the weights run in: options.dtype, else gpu_dtype on CUDA and float32 on the CPU."""
        return self.spec.options.get("dtype", self.gpu_dtype if self.device == "cuda" else "float32")

    def identity(self) -> dict:
        """What the cache key holds of this model: its files, device and dtype."""
        from mvid.pipeline.cache import files

        return {"files": files(self.path), "device": self.device, "dtype": self.dtype_name}

    def load(self) -> None:
        raise NotImplementedError

    @property
    def hub(self) -> dict:
        """from_pretrained's keywords: local files only, unless the spec allows the hub."""
        return {"local_files_only": not self.spec.allow_hub}

    def dtype(self) -> Any:
        """The weights' torch dtype (dtype_name)."""
        import torch

        return getattr(torch, self.dtype_name)

    def left_tokenizer(self) -> Any:
        """The folder's transformers tokenizer, padding on the left (generation continues each row's end)."""
        from transformers import AutoTokenizer

        tok = AutoTokenizer.from_pretrained(self.path, **self.hub)
        tok.padding_side = "left"
        return tok

    def __call__(self, batch: Any) -> Any:
        raise NotImplementedError


def greedy(a: Any, inp: dict, decoder: Any) -> list[str]:
    """Greedy generate on a prepared transformers batch (a.model, a.torch, a.max_new); the new text, stripped."""
    with a.torch.inference_mode():
        out = a.model.generate(**inp, max_new_tokens=a.max_new, do_sample=False)
    return [t.strip() for t in decoder.batch_decode(out[:, inp["input_ids"].shape[1] :], skip_special_tokens=True)]
