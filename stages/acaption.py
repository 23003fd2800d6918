"""acaption: the A caption, an audio-language model (Qwen2-Audio) describing the non-speech sounds.

Makes raw_captions.A and models.A; a clip without audio gets reasons.A. With store_fbank, also the audio
encoder's input features (10 s windows, 64-bin log-Mel fbank, 25 ms Hamming) as the member audio_fbank.npy."""
from __future__ import annotations

import io

import numpy as np

from models.audio import fbank
from models.base import ModelSpec
from pipeline.stage import Result, Stage, StageParams
from pipeline.store import atomic_write
from stages import register
from stages.vcaption import with_caption


class AcaptionParams(StageParams):
    name: str = "acaption"
    batch_size: int = 8
    store_fbank: bool = False  # add audio_fbank.npy to each sample so training need not recompute it
    # options: prompt (asks for music, environment and events, not the words), max_new_tokens (models/audio.py)
    model: ModelSpec = ModelSpec(backend="transformers", model="tiny-qwen2-audio")


@register
class Acaption(Stage):
    name = "acaption"
    Params = AcaptionParams
    requires = ("clip_id", "has_audio", "audio_path")
    produces = ("raw_captions",)
    uses_model = True
    models = {"model": "acaption"}

    def process_batch(self, recs):
        m, work = self.m["model"], self.ctx.work
        todo = [r for r in recs if r["has_audio"]]
        caps = dict(zip((r["clip_id"] for r in todo), m([{"audio": str(work / r["audio_path"])} for r in todo])))
        out = []
        for r in recs:
            if r["clip_id"] not in caps:
                out.append(Result.ok(with_caption(r, "A", None, m.name, (r.get("reasons") or {}).get("audio", "no_audio"))))
                continue
            r = with_caption(r, "A", caps[r["clip_id"]], m.name)
            if self.p.store_fbank:
                buf = io.BytesIO()
                np.save(buf, fbank(work / r["audio_path"]).astype(np.float16))
                rel = r["audio_path"].removesuffix(".wav") + ".fbank.npy"
                atomic_write(work / rel, buf.getvalue())
                r["extra_members"] = {**(r.get("extra_members") or {}), "audio_fbank.npy": rel}
            out.append(Result.ok(r))
        return out
