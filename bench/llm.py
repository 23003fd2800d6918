"""LLM engine throughput: vLLM vs transformers on the same tiny random Llama and chat prompts.

    python bench/llm.py [--eager]

Prints a table and writes it into docs/benchmarks.md under "## LLM engine". Random tiny weights only show each
engine's overhead (scheduling, batching, kernels), not the speed of a real model.
"""

from __future__ import annotations

import argparse
import os
import platform
import tempfile
import time
from pathlib import Path

from report import write_section

from mvid.models import backends
from mvid.models.base import ModelSpec
from mvid.models.prompts import translation
from mvid.models.testing import tiny_llama

HEADING = "## LLM engine"
MAX_TOKENS = 64
BATCHES = (1, 8, 32)
TEXTS = [
    "Hallo Welt, wie geht es dir heute?",
    "Il fait très beau aujourd'hui, alors nous allons au parc.",
    "Hoy hace buen tiempo, vamos al parque a tomar un café.",
    "今天天气很好，所以我们带孩子们去公园。",
]


def chats(n: int) -> list[list[dict]]:
    caption = "Describe the video: a dog runs after a red ball in a park while children laugh."
    return [
        translation(TEXTS[i % 4], ["de", "fr", "es", "zh"][i % 4])
        if i % 2
        else [{"role": "user", "content": f"{caption} Clip {i}."}]
        for i in range(n)
    ]


def generated(a, convs: list[list[dict]]) -> int:
    """Tokens the adapter's engine generates for convs (counted once, untimed; greedy runs repeat it exactly)."""
    ids = a.encode(convs)
    if a.backend == "vllm":
        outs = a.llm.generate([{"prompt_token_ids": i} for i in ids], a.sampling, use_tqdm=False)
        return sum(len(o.outputs[0].token_ids) for o in outs)
    import torch

    enc = a.tok.pad({"input_ids": ids}, return_tensors="pt")
    with torch.inference_mode():
        out = a.model.generate(**enc, max_new_tokens=a.max_tokens, do_sample=False, pad_token_id=a.tok.pad_token_id)
    new = out[:, enc["input_ids"].shape[1] :]
    eos = (new == a.tok.eos_token_id).int()
    # tokens up to and including the first EOS; a row without EOS ran to max_new_tokens
    return int(sum(int(r.argmax()) + 1 if r.any() else len(r) for r in eos))


def run(backend: str, path: Path, **options) -> list[tuple]:
    spec = ModelSpec(
        backend=backend,
        model=str(path),
        device="cpu",
        options={"max_tokens": MAX_TOKENS, "dtype": "float32", **options},
    )
    a = backends("llm")[backend](spec)
    t = time.perf_counter()
    a.load()
    load = time.perf_counter() - t
    rows = []
    for n in BATCHES:
        convs = chats(n)
        a(convs)  # warm-up
        tokens = generated(a, convs)
        best = min(timed(a, convs) for _ in range(3))
        rows.append((n, tokens, best, load))
    lens = [len(i) for i in a.encode(chats(max(BATCHES)))]
    if backend == "vllm":
        a.close()
    return rows, (min(lens), max(lens))


def timed(a, convs) -> float:
    t = time.perf_counter()
    a(convs)
    return time.perf_counter() - t


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--eager", action="store_true", help="vLLM without torch.compile (faster start)")
    args = ap.parse_args()
    load_avg = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as d:
        tiny_llama(Path(d))
        path = Path(d) / "tiny-llama"
        results = {"transformers": run("transformers", path)[0]}
        vopts = {"max_model_len": 1024, "kv_cache_memory_bytes": 256 << 20, "enforce_eager": args.eager}
        results["vllm"], (lo, hi) = run("vllm", path, **vopts)
    mode = "eager" if args.eager else "torch.compile"
    rows = ["| engine | load s | batch | tokens out | wall s | tokens / s |", "|---|---|---|---|---|---|"]
    for name, res in results.items():
        label = f"vLLM {mode}" if name == "vllm" else "transformers generate"
        for n, tokens, wall, load in res:
            rows.append(f"| {label} | {load:.1f} | {n} | {tokens} | {wall:.3f} | {tokens / wall:,.0f} |")
    text = (
        f"`python bench/llm.py{' --eager' if args.eager else ''}` on {platform.machine()}, {os.cpu_count()} "
        f"cores (load average {load_avg:.1f} at the start: a shared machine, so compare rows of one run only). "
        f"Tiny random Llama (2 layers, hidden 64, vocabulary 768, float32) from `models.testing.tiny_llama`; chat "
        f"prompts (Vicuna format) alternating translation and caption requests, {lo}-{hi} prompt tokens; greedy, "
        f"at most {MAX_TOKENS} new tokens; best of 3 after a warm-up. vLLM's CPU backend binds its one worker to "
        f"one core (it reserves the other); transformers uses torch's threads. Load s includes vLLM's engine "
        f"start (process spawn, imports, compilation). Random tiny weights only show engine overhead: these "
        f"numbers say nothing about a real model's speed.\n\n" + "\n".join(rows)
    )
    print(text)
    write_section(HEADING, text)


if __name__ == "__main__":
    main()
