"""The stage contract: every file in stages/ defines one subclass of Stage."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar, get_args

from pydantic import BaseModel, ConfigDict, Field, PositiveInt, field_validator


class Resources(BaseModel):
    model_config = ConfigDict(extra="forbid")
    cpus: float = Field(1.0, ge=0)
    gpus: float = Field(0.0, ge=0)
    # Actor pool size for model stages: a fixed count or (min, max) for autoscaling.
    actors: PositiveInt | tuple[PositiveInt, PositiveInt] = 1
    # Host RAM per worker that Ray reserves when it places one (the peak RSS in work/timings/ is a guide).
    memory_gb: float | None = Field(None, gt=0)
    # Extra Ray custom resources, e.g. {"accel": 1} to pin a stage to some nodes.
    custom: dict[str, float] = {}

    @field_validator("actors")
    @classmethod
    def _bounds(cls, v):
        if isinstance(v, tuple) and v[0] > v[1]:
            raise ValueError(f"actors [min, max] needs min <= max, got {list(v)}")
        return v

    @property
    def least(self) -> int:
        """The actor pool's minimum size."""
        return self.actors if isinstance(self.actors, int) else self.actors[0]

    @property
    def memory_bytes(self) -> int:
        """memory_gb as Ray counts it; 0 when unset."""
        return int((self.memory_gb or 0) * 2**30)

    @field_validator("gpus")
    @classmethod
    def _whole(cls, v):
        if v > 1 and v != int(v):
            raise ValueError(f"Ray shares a GPU in fractions up to 1; above 1 it needs whole GPUs, got {v}")
        return v


class StageParams(BaseModel):
    """Config of one stage; subclasses add the stage's own knobs."""

    model_config = ConfigDict(extra="forbid", validate_default=True)  # 60 and 60.0 must fingerprint alike
    name: str
    batch_size: int = Field(1, ge=1)
    resources: Resources = Resources()


class HaltError(RuntimeError):
    """The run must stop: a bug in mvid or in a stage (a broken invariant, a contract), or a stage failing on too
    many items (the failure breaker). One line; `mvid run` exits 3."""


class StageError(Exception):
    """A per-item failure with a reason code: recorded, never raised to the user."""

    def __init__(self, code: str, message: str):
        super().__init__(f"{code}: {message}")
        self.code, self.message = code, message


@dataclass
class Result:
    """What one input item became: records that go on, and rejects with reasons."""

    records: list[dict] = field(default_factory=list)
    rejects: list[dict] = field(default_factory=list)

    @classmethod
    def ok(cls, rec: dict) -> Result:
        return cls(records=[rec])

    @classmethod
    def reject(
        cls, rec: dict, code: str, message: str, kind: Literal["error", "drop"] = "error", **extra: Any
    ) -> Result:
        return cls(rejects=[reject_of(rec, code, message, kind, **extra)])


def reject_of(rec: dict, code: str, message: str, kind: str = "error", **extra: Any) -> dict:
    """A failure record: which item, from which file, why. `kind` is error or drop (policy)."""
    return {
        "id": rec.get("clip_id") or rec.get("video_id"),
        "video_id": rec.get("video_id"),
        "path": rec.get("path"),
        "row": rec.get("row"),
        "code": code,
        "message": message,
        "kind": kind,
        **extra,
    }


@dataclass(frozen=True)
class Ctx:
    """Run-wide paths handed to every stage."""

    work: Path
    out: Path

    def media(self, video_id: str) -> Path:
        """The video's media tar (pipeline/media.py), in one of 256 folders."""
        return self.work / "media" / hashlib.sha1(video_id.encode()).hexdigest()[:2] / f"{video_id}.tar"


P = TypeVar("P", bound=StageParams)


class Stage(Generic[P]):
    # Set from the class header `class X(Stage[XParams])`: Params, name (XParams.name's default), uses_model.
    name: ClassVar[str]
    Params: ClassVar[type[StageParams]] = StageParams
    # The cache key covers the stage's code by itself (pipeline/cache.py); raising version forces a recompute.
    version: ClassVar[int] = 1
    # Distributions ("ffmpeg": its binary) whose versions shape what it makes, besides its models' (cache key).
    libs: ClassVar[tuple[str, ...]] = ()
    # video_id: process_batch gets videos (their clips in "clips"); clip_id: clips joined with their video's fields.
    key: ClassVar[Literal["video_id", "clip_id"]] = "clip_id"
    requires: ClassVar[tuple[str, ...]] = ()
    produces: ClassVar[tuple[str, ...]] = ()
    # Clip fields naming media members that the stage reads: the runner unpacks them and passes file paths.
    media: ClassVar[tuple[str, ...]] = ()
    # The caption (A, V or S) that an item's failure in this stage costs: the clip goes on without it, with the
    # reason <stage>_failed. None: a failure rejects the item.
    modality: ClassVar[str | None] = None
    # Model stages (those with models) run in a Ray actor pool (setup once per actor); others run as tasks.
    uses_model: ClassVar[bool] = False
    # A barrier stage needs every score first (global top-N); the sink writes one shard per unit, then finish().
    barrier: ClassVar[bool] = False
    sink: ClassVar[bool] = False
    # Params fields that hold a ModelSpec -> the model role they fill (see models/__init__.py).
    models: ClassVar[dict[str, str]] = {}

    def __init_subclass__(cls, **kw):
        super().__init_subclass__(**kw)
        cls.Params = get_args(cls.__orig_bases__[0])[0]  # type: ignore[attr-defined]
        cls.name = cls.Params.model_fields["name"].default
        cls.uses_model = bool(cls.models)

    def __init__(self, params: P, ctx: Ctx):
        self.p, self.ctx = params, ctx

    def adapters(self) -> dict:
        """This stage's model adapters, files resolved but not loaded (ModelMissingError names the role); an
        optional model that is not configured (None) has none."""
        from mvid.models import build

        out = {f: build(role, spec) for f, role in self.models.items() if (spec := getattr(self.p, f)) is not None}
        for a in out.values():
            a.gpus = self.p.resources.gpus  # "auto" runs on CUDA when the stage reserves a GPU
        return out

    def preflight(self) -> None:
        """Cheap checks on the driver before any video is touched: every model's files resolve and look sane."""
        for a in self.adapters().values():
            a.check()

    def setup(self) -> None:
        """Load models once per actor: self.m[field] is the loaded adapter."""
        from mvid.models.base import ModelLoadError

        self.m = self.adapters()
        for a in self.m.values():
            try:
                a.load()
            except Exception as e:  # noqa: BLE001 - one line that names the role, the path and what was expected
                cause = " ".join(f"{type(e).__name__}: {e}".split())[:500]
                raise ModelLoadError(
                    f"stage {self.name}: role '{a.role}' ({a.spec.backend}) could not load "
                    f"{a.path}: {cause}; expected {a.files}"
                ) from None

    def process_batch(self, recs: list[dict]) -> list[Result]:
        """One Result per input record, in order."""
        raise NotImplementedError

    def fingerprint(self) -> str:
        """The cache key of what the stage makes, besides its input (pipeline/cache.py): params, version, code,
        libraries, and each model's files, device and dtype."""
        from mvid.pipeline import cache
        from mvid.pipeline.store import digest

        ads = self.adapters()
        return digest(
            {
                "params": self.p.model_dump(exclude={"batch_size", "resources"}),
                "version": self.version,
                "code": cache.code([type(self).__module__, *(type(a).__module__ for a in ads.values())]),
                "libs": cache.libraries([*self.libs, *(n for a in ads.values() for n in a.libs)]),
                "models": {f: a.identity() for f, a in ads.items()},
            }
        )
