"""Model adapters, one module per role (see base.py for the contract); `build` picks one from a ModelSpec."""

from __future__ import annotations

import importlib
import inspect
from pathlib import Path

from mvid.models.base import Adapter, ModelSpec

ROLES = {
    "shots": "mvid.models.shots",
    "asr": "mvid.models.asr",
    "lid": "mvid.models.lid",
    "translate": "mvid.models.translate",
    "llm": "mvid.models.llm",
    "vcaption": "mvid.models.vision",
    "acaption": "mvid.models.audio",
    "clip": "mvid.models.clip",
}


def backends(role: str) -> dict[str, type[Adapter]]:
    mod = importlib.import_module(ROLES[role])
    return {
        c.backend: c
        for _, c in inspect.getmembers(mod, inspect.isclass)
        if issubclass(c, Adapter) and getattr(c, "role", None) == role and getattr(c, "backend", None)
    }


def build(role: str, spec: ModelSpec) -> Adapter:
    """The adapter for `role` and `spec.backend`; resolving its files raises ModelMissing, loading is load()."""
    found = backends(role)
    if spec.backend not in found:
        raise ValueError(f"role '{role}': unknown backend {spec.backend!r}; known: {sorted(found)}")
    return found[spec.backend](spec)


def tiny(dest: Path) -> list[str]:
    """Build the tiny random-weight models of every role that has no shipped weights."""
    made = []
    for role, name in ROLES.items():
        fn = getattr(importlib.import_module(name), "tiny", None)
        if fn:
            fn(Path(dest))
            made.append(role)
    return made
