"""ffmpeg/ffprobe calls: local files only, known demuxers only, always under a time limit."""

from __future__ import annotations

import contextlib
import json
import os
import queue
import re
import subprocess
import tempfile
import threading
from collections.abc import Iterator
from fractions import Fraction
from pathlib import Path

import numpy as np

from mvid.pipeline.stage import StageError

# Playlists (hls), concat lists, images and other demuxers that open further URLs are refused.
DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,asf,ogg,wav,gif"
SAFE = ["-protocol_whitelist", "file", "-format_whitelist", DEMUXERS]
REFUSED = re.compile(r"\[(\S+) @ 0x[0-9a-f]+\] Format not on whitelist")
NOISE = re.compile(r"\[[^\]\n]* @ 0x[0-9a-f]+\] |file:/.*?: ")  # "[mov,mp4 @ 0x55..] ", "file:/in.mp4: "


def src(path: str | Path) -> str:
    """An absolute file: URL, so no name (leading '-', 'http:...') is read as an option or protocol."""
    return "file:" + str(Path(path).resolve())


def _tail(f, n: int = 4096) -> str:
    """The end of a stderr file: a hostile input can make ffmpeg log without bound."""
    f.seek(max(0, os.fstat(f.fileno()).st_size - n))
    return f.read().decode(errors="replace")


def _fail(code: str, err: str) -> StageError:
    if m := REFUSED.search(err):
        fmt = m.group(1)
        if fmt.endswith("_pipe") or fmt.startswith("image"):
            return StageError("not_a_video", f"an image ({fmt.removesuffix('_pipe')}), not a video")
        return StageError(
            "unsupported_format",
            f"{fmt} refused: only local media files are read, never "
            f"playlists, concat lists or anything that opens other files or URLs",
        )
    lines = [NOISE.sub("", x).strip() for x in err.splitlines()]
    return StageError(code, "; ".join(dict.fromkeys(x for x in lines[-3:] if x)) or "failed without message")


def run(args: list[str], timeout: float, cmd: str = "ffmpeg", code: str | None = None) -> bytes:
    """Run ffmpeg or ffprobe; a failure is a StageError with `code` (default <cmd>_failed) and the last errors."""
    full = [cmd, "-nostdin", "-hide_banner", "-loglevel", "error", *args] if cmd == "ffmpeg" else [cmd, *args]
    with tempfile.TemporaryFile() as err:
        try:
            p = subprocess.run(full, stdout=subprocess.PIPE, stderr=err, timeout=timeout)
        except subprocess.TimeoutExpired:
            raise StageError(f"{cmd}_timeout", f"{cmd} took longer than {timeout:.0f}s") from None
        if p.returncode:
            raise _fail(code or f"{cmd}_failed", _tail(err))
    return p.stdout


def probe(path: str | Path, timeout: float) -> dict:
    if Path(path).stat().st_size == 0:
        raise StageError("empty_file", "the file is empty (0 bytes)")
    out = run(
        ["-v", "error", *SAFE, "-print_format", "json", "-show_format", "-show_streams", src(path)],
        timeout,
        cmd="ffprobe",
        code="unreadable",
    )
    return json.loads(out)


def end_time(path: str | Path, start: float, stop: float, timeout: float) -> float:
    """Where the video packets read between the timestamps start and stop end: short of the declared end when the
    file is truncated. Reads about two seconds (one GOP more after a seek), not the whole file."""
    out = run(
        [
            "-v",
            "error",
            *SAFE,
            "-select_streams",
            "v:0",
            "-read_intervals",
            f"{start:.3f}%{stop:.3f}",
            "-show_entries",
            "packet=pts_time,duration_time",
            "-of",
            "csv=p=0",
            src(path),
        ],
        timeout,
        cmd="ffprobe",
    )
    ends = [sum(float(x) for x in line.split(",") if x not in ("", "N/A")) for line in out.decode().split()]
    return max(ends, default=0.0)


def first_frame(path: str | Path, timeout: float) -> float | None:
    """The timestamp of the first video frame the decoder gives: a stream cut mid-GOP, or leading garbage, holds
    packets before it that no decoder shows. None when no frame decodes."""
    out = run(
        # -copyts and the stream's own time base: the frame's exact timestamp in the file
        [
            "-copyts",
            *SAFE,
            "-i",
            src(path),
            "-map",
            "0:v:0",
            "-frames:v",
            "1",
            "-enc_time_base",
            "-1",
            "-f",
            "framecrc",
            "-",
        ],
        timeout,
        code="decode_failed",
    ).decode()
    tb = re.search(r"^#tb 0: (\d+)/(\d+)$", out, re.M)
    frame = next((line.split(",") for line in out.splitlines() if line and not line.startswith("#")), None)
    return int(frame[1]) * int(tb.group(1)) / int(tb.group(2)) if tb and frame else None


def rate(text: str | None) -> float:
    try:
        r = Fraction(text or "0/1")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(r) if r.denominator else 0.0


def frames(
    path: str | Path,
    size: tuple[int, int],
    timeout: float,
    duration: float | None = None,
    chunk: int = 50,
    start: float = 0.0,
) -> Iterator[np.ndarray]:
    """Stream rgb24 frames of `size` in chunks of (n, h, w, 3), from `start` seconds into the file (probe's
    lead: before it, ffmpeg would repeat the first frame over an empty edit), decoded in a thread so that the
    consumer's compute overlaps decoding. Memory stays bounded by the queue."""
    w, h = size
    cmd = [
        "ffmpeg",
        "-nostdin",
        "-hide_banner",
        "-loglevel",
        "error",
        *SAFE,
        *(["-ss", f"{start:.6f}"] if start else []),
        "-i",
        src(path),
        *(["-t", f"{duration:.3f}"] if duration else []),
        "-map",
        "0:v:0",
        "-vf",
        f"scale={w}:{h}",
        "-f",
        "rawvideo",
        "-pix_fmt",
        "rgb24",
        "pipe:",
    ]
    with tempfile.TemporaryFile() as err:  # ffmpeg's messages, for a failure's reason
        proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
        out = proc.stdout
        assert out is not None
        fired = threading.Event()

        def expire() -> None:
            fired.set()
            proc.kill()

        timer = threading.Timer(timeout, expire)
        timer.start()
        q: queue.Queue = queue.Queue(maxsize=8)
        frame = w * h * 3

        def read():
            while b := out.read(frame * chunk):
                q.put(np.frombuffer(b[: len(b) - len(b) % frame], np.uint8).reshape(-1, h, w, 3))
            q.put(None)

        reader = threading.Thread(target=read, daemon=True)
        reader.start()
        try:
            while (c := q.get()) is not None:
                yield c
            rc = proc.wait()
        finally:
            timer.cancel()
            proc.kill()
            while reader.is_alive():  # unblock the reader if the consumer stopped early
                with contextlib.suppress(queue.Empty):
                    q.get(timeout=0.1)
            proc.wait()
            out.close()
        if fired.is_set():
            raise StageError("ffmpeg_timeout", f"decoding took longer than {timeout:.0f}s")
        if rc:
            raise _fail("decode_failed", _tail(err))
