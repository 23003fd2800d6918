"""Model adapters, one module per role (see base.py for the contract); `build` picks one from a ModelSpec."""

from __future__ import annotations

import importlib
import inspect

from mvid.models.base import Adapter, ModelSpec

ROLES = {
    "vad": "vad",
    "shots": "shots",
    "asr": "asr",
    "lid": "lid",
    "translate": "translate",
    "llm": "llm",
    "vcaption": "vision",
    "acaption": "audio",
    "clip": "clip",
}  # role -> module of mvid.models


def backends(role: str) -> dict[str, type[Adapter]]:
    mod = importlib.import_module(f"mvid.models.{ROLES[role]}")
    return {
        c.backend: c
        for _, c in inspect.getmembers(mod, inspect.isclass)
        if issubclass(c, Adapter) and getattr(c, "role", None) == role and getattr(c, "backend", None)
    }


def build(role: str, spec: ModelSpec) -> Adapter:
    """The adapter for `role` and `spec.backend`; resolving its files raises ModelMissingError, loading is load()."""
    found = backends(role)
    if spec.backend not in found:
        raise ValueError(f"role '{role}': unknown backend {spec.backend!r}; known: {sorted(found)}")
    return found[spec.backend](spec)
