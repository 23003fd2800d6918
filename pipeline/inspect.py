"""`mvid shards inspect` and `mvid shards verify`: read an output folder back through its manifest."""
from __future__ import annotations

import json
from pathlib import Path

from schemas import shard as S
from stages.shard import sha256


def manifest(out: Path) -> S.Manifest:
    path = out / S.MANIFEST
    if not path.exists():
        raise FileNotFoundError(f"{path}: no manifest (not an mvid output folder, or the run has not finished)")
    return S.Manifest.model_validate_json(path.read_text())


def inspect(out: Path) -> dict:
    m = manifest(out)
    fails = [json.loads(x) for x in (out / S.FAILURES).read_text().splitlines()] if (out / S.FAILURES).exists() else []
    per = list(m.clips_per_video.values())
    return {
        "shards": len(m.shards), "bytes": sum(s.bytes for s in m.shards), "samples": m.samples, "hours": m.hours,
        "videos": len(per), "clips_per_video": {"min": min(per, default=0), "max": max(per, default=0),
                                                "mean": round(sum(per) / len(per), 2) if per else 0},
        "per_video": m.clips_per_video, "fields": m.fields, "models": m.models, "failures": m.failures,
        "failed_items": [{k: f.get(k) for k in ("stage", "code", "kind", "path", "id", "message")} for f in fails],
        "pattern": m.pattern,
    }


def text(info: dict) -> str:
    c = info["clips_per_video"]
    lines = [f"shards: {info['shards']} ({info['bytes'] / 2**20:.1f} MiB)   samples: {info['samples']}   "
             f"hours: {info['hours']:.3f}   videos: {info['videos']}",
             f"clips per video: min {c['min']}  mean {c['mean']}  max {c['max']}",
             "fields (samples having it):"]
    lines += [f"  {k:<24} {v}" for k, v in info["fields"].items()]
    if info["models"]:
        lines += ["models:"] + [f"  {k:<24} {v}" for k, v in info["models"].items()]
    if info["failed_items"]:
        lines.append("failures and drops: " + ", ".join(f"{k}={v}" for k, v in info["failures"].items()))
        lines += [f"  [{f['stage']}] {f['code']:<18} {f['path']}: {f['message']}" for f in info["failed_items"]]
    return "\n".join(lines)


def verify(out: Path) -> list[str]:
    """Problems found: a missing, resized or altered shard, or a stray shard the manifest does not list."""
    m, problems = manifest(out), []
    for s in m.shards:
        p = out / s.name
        if not p.exists():
            problems.append(f"{s.name}: missing")
        elif p.stat().st_size != s.bytes:
            problems.append(f"{s.name}: {p.stat().st_size} bytes, manifest says {s.bytes}")
        elif sha256(p) != s.sha256:
            problems.append(f"{s.name}: sha256 differs from the manifest (corrupted)")
    listed = {s.name for s in m.shards}
    problems += [f"{S.SHARD_DIR}/{p.name}: not in the manifest" for p in sorted((out / S.SHARD_DIR).glob("*.tar"))
                 if f"{S.SHARD_DIR}/{p.name}" not in listed]
    if sum(s.samples for s in m.shards) != m.samples:
        problems.append(f"{S.MANIFEST}: shard sample counts do not add up to {m.samples}")
    return problems
