"""Run config: one YAML file (a packaged profile or the user's), validated before any work starts."""

from __future__ import annotations

import importlib
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, SerializeAsAny, ValidationError, field_validator

from mvid.pipeline.stage import StageParams

PROFILES = Path(__file__).parent / "profiles"


class ConfigError(ValueError):
    pass


class RayConfig(BaseModel):
    model_config = ConfigDict(extra="forbid")
    address: str | None = None  # None: RAY_ADDRESS from the environment, else a local Ray
    num_cpus: int | None = Field(None, ge=1)  # local Ray only
    object_store_mb: int | None = Field(None, ge=64)  # local Ray only: bounds memory held in flight


class BreakerConfig(BaseModel):
    """The failure breaker: a stage whose unexpected failures (exceptions, OOM, dead workers; not a bad input's
    own reason codes) pass max_error_rate of its items, once it has run min_items, stops the run (exit 3)."""

    model_config = ConfigDict(extra="forbid")
    max_error_rate: float = Field(0.2, gt=0, le=1)
    min_items: int = Field(50, ge=1)


class Config(BaseModel):
    model_config = ConfigDict(extra="forbid")
    profile: str = "custom"
    # Modules imported before the stages are looked up: your own stages, each registered with @register. They
    # must import on every Ray worker too (installed, or on the PYTHONPATH that the workers inherit).
    plugins: list[str] = []
    input: str | None = None  # folder, glob, or a .parquet/.csv/.jsonl list
    # A folder's symlinks to targets outside it are refused (outside_input) unless follow_symlinks.
    follow_symlinks: bool = False
    # A list's or a glob's paths may point anywhere, unless input_root confines them (outside_input).
    input_root: Path | None = None
    work_dir: Path = Path("work")
    output_dir: Path = Path("out")
    ray: RayConfig = RayConfig()
    breaker: BreakerConfig = BreakerConfig()
    stages: list[SerializeAsAny[StageParams]]  # each serialized as its own stage's Params, with every knob

    @field_validator("plugins")
    @classmethod
    def _plugins(cls, v: list[str]) -> list[str]:
        for m in v:
            try:
                importlib.import_module(m)
            except ImportError as e:
                raise ValueError(f"plugin {m!r} does not import: {e}") from None
        return v

    @field_validator("stages", mode="before")
    @classmethod
    def _stages(cls, v: Any) -> list[StageParams]:
        from mvid.schemas.record import makers
        from mvid.stages import REGISTRY

        if not isinstance(v, list) or not v:
            raise ValueError("must be a non-empty list of stages")
        out = []
        for i, s in enumerate(v):
            name = s.get("name") if isinstance(s, dict) else None
            if name not in REGISTRY:
                raise ValueError(f"stages[{i}]: unknown stage {name!r}; known: {sorted(REGISTRY)}")
            try:
                out.append(REGISTRY[name].Params(**s))
            except ValidationError as e:
                raise ValueError(f"stages[{i}] ({name}): {_explain(e)}") from None
        names = [s.name for s in out]
        if len(set(names)) != len(names):
            raise ValueError(f"a stage is listed twice: {names}")
        if [REGISTRY[n].sink for n in names].count(True) != 1 or not REGISTRY[names[-1]].sink:
            raise ValueError("the last stage, and only it, must be the sink (shard)")
        bar = [i for i, n in enumerate(names) if REGISTRY[n].barrier]
        if bar and bar != [len(names) - 2]:
            raise ValueError("a barrier stage (select) may appear once, right before the sink")
        made = {"input", "any"}  # stage names (a column's makers in schemas/record.py) and columns made so far
        for i, n in enumerate(names):
            for c in REGISTRY[n].requires:
                if c not in made and not makers(c) & made:
                    raise ValueError(
                        f"stages[{i}] ({n}) needs column {c!r}, which {'/'.join(sorted(makers(c)))} makes, and no "
                        f"stage before it in the recipe does"
                    )
            made |= {n, *REGISTRY[n].produces}
        return out

    def stage(self, name: str) -> StageParams:
        for s in self.stages:
            if s.name == name:
                return s
        raise ConfigError(f"stage {name!r} is not in this config: {[s.name for s in self.stages]}")


def _explain(e: ValidationError) -> str:
    return "; ".join(": ".join(filter(None, (".".join(map(str, err["loc"])), err["msg"]))) for err in e.errors())


def load(source: str, overrides: Sequence[str] = ()) -> Config:
    """A profile name (demo, production) or a YAML path, then KEY=VALUE overrides such as
    `stages.split.threshold=0.4` or `output_dir=/data/out`."""
    path = PROFILES / f"{source}.yaml" if (PROFILES / f"{source}.yaml").exists() else Path(source)
    if not path.exists():
        raise ConfigError(f"{source}: no such profile ({[p.stem for p in PROFILES.glob('*.yaml')]}) or file")
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as e:
        raise ConfigError(f"{path}: not valid YAML: {e}") from None
    for o in overrides:
        _override(raw, o, path)
    try:
        return Config(**raw)
    except ValidationError as e:
        raise ConfigError(f"{path}: {_explain(e)}") from None


def _override(raw: dict, item: str, path: Path) -> None:
    key, sep, value = item.partition("=")
    if not sep:
        raise ConfigError(f"override {item!r}: expected KEY=VALUE")
    parts, node = key.split("."), raw
    if parts[0] == "stages" and len(parts) > 2:
        match = [s for s in raw.get("stages", []) if s.get("name") == parts[1]]
        if not match:
            raise ConfigError(f"override {item!r}: {path} has no stage {parts[1]!r}")
        node, parts = match[0], parts[2:]
    for p in parts[:-1]:
        node = node.setdefault(p, {})
    node[parts[-1]] = yaml.safe_load(value)
