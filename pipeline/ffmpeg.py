"""ffmpeg/ffprobe calls: local files only, known demuxers only, always under a time limit."""
from __future__ import annotations

import json
import queue
import subprocess
import tempfile
import threading
from fractions import Fraction
from pathlib import Path
from typing import Iterator

import numpy as np

from pipeline.stage import StageError

# Playlists (hls), concat lists and other demuxers that open further URLs are refused.
DEMUXERS = "mov,mp4,m4a,3gp,3g2,mj2,matroska,webm,avi,flv,mpegts,mpeg,asf,ogg,wav,image2,png_pipe,mjpeg,gif"
SAFE = ["-protocol_whitelist", "file", "-format_whitelist", DEMUXERS]


def src(path: str | Path) -> str:
    """An absolute file: URL, so no name (leading '-', 'http:...') is read as an option or protocol."""
    return "file:" + str(Path(path).resolve())


def _fail(code: str, cmd: list[str], err: bytes) -> StageError:
    lines = err.decode(errors="replace").strip().splitlines()
    return StageError(code, f"{cmd[0]}: {lines[-1] if lines else 'failed without message'}")


def run(args: list[str], timeout: float, cmd: str = "ffmpeg") -> bytes:
    full = [cmd, "-nostdin", "-hide_banner", "-loglevel", "error", *args] if cmd == "ffmpeg" else [cmd, *args]
    try:
        p = subprocess.run(full, capture_output=True, timeout=timeout)
    except subprocess.TimeoutExpired:
        raise StageError(f"{cmd}_timeout", f"{cmd} took longer than {timeout:.0f}s") from None
    if p.returncode:
        raise _fail(f"{cmd}_failed", full, p.stderr)
    return p.stdout


def probe(path: str | Path, timeout: float) -> dict:
    out = run(["-v", "error", *SAFE, "-print_format", "json", "-show_format", "-show_streams", src(path)],
              timeout, cmd="ffprobe")
    return json.loads(out)


def rate(text: str | None) -> float:
    try:
        r = Fraction(text or "0/1")
    except (ValueError, ZeroDivisionError):
        return 0.0
    return float(r) if r.denominator else 0.0


def frames(path: str | Path, size: tuple[int, int], timeout: float, duration: float | None = None,
           chunk: int = 50) -> Iterator[np.ndarray]:
    """Stream rgb24 frames of `size` in chunks of (n, h, w, 3), decoded in a thread so that the
    consumer's compute overlaps decoding. Memory stays bounded by the queue."""
    w, h = size
    cmd = ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", *SAFE, "-i", src(path),
           *(["-t", f"{duration:.3f}"] if duration else []), "-map", "0:v:0",
           "-vf", f"scale={w}:{h}", "-f", "rawvideo", "-pix_fmt", "rgb24", "pipe:"]
    err = tempfile.TemporaryFile()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=err)
    fired = threading.Event()
    timer = threading.Timer(timeout, lambda: (fired.set(), proc.kill()))
    timer.start()
    q: queue.Queue = queue.Queue(maxsize=8)
    frame = w * h * 3

    def read():
        while b := proc.stdout.read(frame * chunk):
            q.put(np.frombuffer(b[:len(b) - len(b) % frame], np.uint8).reshape(-1, h, w, 3))
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
            try:
                q.get(timeout=0.1)
            except queue.Empty:
                pass
        proc.wait()
        proc.stdout.close()
    if fired.is_set():
        raise StageError("ffmpeg_timeout", f"decoding took longer than {timeout:.0f}s")
    if rc:
        err.seek(0)
        raise _fail("decode_failed", cmd, err.read())
