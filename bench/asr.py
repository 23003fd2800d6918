"""ASR throughput: openai-whisper vs faster-whisper on the same espeak-ng clips with the same tiny random dims,
and the packaged real Whisper base under faster-whisper (transcripts and word error rate) when available.

    python bench/asr.py [--base DIR]   # DIR: a faster-whisper-base folder; default: the one that
                                       # `mvid models packaged` assembles in MVID_MODEL_DIR (or here, in a temp)

Prints a table and writes it into docs/benchmarks.md under "## ASR (Whisper)".
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from report import write_section

from mvid.models import asr, build
from mvid.models.base import ModelSpec, model_dir
from mvid.models.packaged import whisper_base
from mvid.models.samples import speak16k, wer
from mvid.models.testing import tiny_whisper

HEADING = "## ASR (Whisper)"
REPS = 3
CLIPS = {
    "en": "The quick brown fox jumps over the lazy dog. Today we are testing speech recognition on a small computer.",
    "de": "Heute ist ein schöner Tag. Wir gehen in den Park und trinken einen Kaffee.",
    "es": "Hoy hace buen tiempo. Vamos al parque a tomar un café con nuestros amigos.",
}


def make_clips(d: Path) -> dict[str, Path]:
    return {lang: speak16k(text, lang, d / f"{lang}.wav") for lang, text in CLIPS.items()}


def run(backend: str, path: Path, clips: dict[str, Path], opts: dict) -> tuple[float, float, list[dict]]:
    """(load seconds, audio seconds per wall second over all clips: best of REPS runs after one warm-up clip,
    since other work on a shared machine only ever slows a run down, outputs)."""
    a = build("asr", ModelSpec(backend=backend, model=str(path), options={"threads": 2, **opts}))
    t = time.perf_counter()
    a.load()
    load = time.perf_counter() - t
    items = [{"audio": p} for p in clips.values()]
    a(items[:1])
    best = float("inf")
    for _ in range(REPS):
        t = time.perf_counter()
        out = a(items)
        best = min(best, time.perf_counter() - t)
    return load, sum(o["duration"] for o in out) / best, out


def base_folder(arg: str | None, tmp: Path) -> Path:
    p = Path(arg) if arg else model_dir() / "faster-whisper-base"
    return p if (p / "model.bin").exists() else whisper_base(tmp)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--base", help="a faster-whisper-base folder")
    args = ap.parse_args()
    load_avg = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        clips = make_clips(tmp)
        tiny_whisper(tmp)
        total = sum(asr.load_wav(p).size for p in clips.values()) / asr.SR
        rows = ["| model | backend | decoding | load s | audio s / wall s |", "|---|---|---|---|---|"]
        for backend in ("openai-whisper", "faster-whisper"):
            opts = {"beam_size": 1, "temperature": 0, "max_new_tokens": 32}
            load, speed, _ = run(backend, tmp / f"tiny-{backend}", clips, opts)
            rows.append(
                f"| tiny random (2+2 layers, width 64) | {backend} | greedy, T=0, max 32 tokens | "
                f"{load:.2f} | {speed:.1f} |"
            )
        lines = []
        base = base_folder(args.base, tmp)
        for ct, opts, how in (
            ("int8", {"beam_size": 1, "temperature": 0}, "greedy, T=0"),
            ("int8", {}, "beam 5, Whisper's fallback"),
            ("float32", {}, "beam 5, Whisper's fallback"),
        ):
            load, speed, out = run("faster-whisper", base, clips, {"compute_type": ct, **opts})
            rows.append(f"| Whisper base (packaged, real) | faster-whisper {ct} | {how} | {load:.2f} | {speed:.1f} |")
        for (lang, ref), o in zip(CLIPS.items(), out, strict=True):
            lines.append(
                f"| {lang} | {o['language']} ({o['language_prob']:.2f}) | {wer(ref, o['text']):.1%} | {o['text']} |"
            )
        cpu = (
            f"{platform.machine()}, {os.cpu_count()} cores, 2 threads (load average {load_avg:.1f} at the start: "
            "a shared machine, so compare rows of one run only)"
        )
        text = (
            f"`python bench/asr.py` on {cpu}: {len(clips)} espeak-ng clips ({total:.1f} s of en/de/es speech, "
            f"16 kHz), one warm-up clip, then the best of {REPS} runs. Random weights rarely stop by themselves, "
            "so the greedy tiny rows decode up to the 32-token cap: they compare the two runtimes at equal work, "
            "not real speed.\n\n" + "\n".join(rows) + "\n"
        )
        text += (
            "\nReal Whisper base (faster-whisper float32), language detected, word error rate "
            "(lower-cased, punctuation removed):\n\n| clip | detected | WER | transcript |\n"
            "|---|---|---|---|\n" + "\n".join(lines) + "\n"
        )
        print(text)
        write_section(HEADING, text)


if __name__ == "__main__":
    main()
