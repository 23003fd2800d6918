"""`mvid shards inspect` and `mvid shards verify`: read an output folder back through its manifest."""

from __future__ import annotations

from itertools import islice
from pathlib import Path

from mvid.schemas import shard as S
from mvid.schemas.shard import manifest, sha256


def inspect(out: Path, show: int = 200) -> dict:
    """What the manifest says, and the first `show` failure records (the manifest counts them all)."""
    m = manifest(out)
    errors = islice(
        ({k: f.get(k) for k in ("stage", "code", "kind", "path", "id", "message")} for f in S.failures(out)), show
    )
    return {
        "shards": len(m.shards),
        "bytes": sum(s.bytes for s in m.shards),
        "samples": m.samples,
        "hours": m.hours,
        "videos": m.videos,
        "videos_with_clips": m.videos_with_clips,
        "clips_per_video": m.clips_per_video,
        "fields": m.fields,
        "models": m.models,
        "failures": m.failures,
        "failed_items": list(errors),
        "empty": len(m.empty),
    }


def text(info: dict) -> str:
    c = info["clips_per_video"]
    lines = [
        f"shards: {info['shards']} ({info['bytes'] / 2**20:.1f} MiB)   samples: {info['samples']}   "
        f"hours: {info['hours']:.3f}   videos: {info['videos']} ({info['videos_with_clips']} with clips)",
        f"clips per video: min {c['min']}  mean {c['mean']}  max {c['max']}",
        "fields (samples having it):",
    ]
    lines += [f"  {k:<24} {v}" for k, v in info["fields"].items()]
    if info["models"]:
        lines += ["models:"] + [f"  {k:<24} {v}" for k, v in info["models"].items()]
    if info["failures"]:
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
    problems += [
        f"{S.SHARD_DIR}/{p.name}: not in the manifest"
        for p in sorted((out / S.SHARD_DIR).glob("*.tar"))
        if f"{S.SHARD_DIR}/{p.name}" not in listed
    ]
    if sum(s.samples for s in m.shards) != m.samples:
        problems.append(f"{S.MANIFEST}: shard sample counts do not add up to {m.samples}")
    return problems
