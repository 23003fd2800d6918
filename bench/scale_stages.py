"""Synthetic stages for bench/scale.py (config `plugins: [scale_stages]`): records of realistic size made fast, so
that the benchmark times the engine (listing, keys, resume scan, Runner, Parts, select, sink) and not models.

bench_clips (a video stage, as split and extract are): `clips` clips a video, each with its media in the
video's tar (the video file itself as the clip's mp4, a 0.1 s wav, 8 JPEG frames) and a transcript of 3 segments.
bench_captions (a clip stage, as the model stages are): five captions of about 20 words, a 768-dim embedding
(every 20th clip repeats the one before it: near-duplicates for select) and a CLIP-like score."""

from __future__ import annotations

import io
import tempfile
import wave
import zlib
from pathlib import Path

import numpy as np
from pydantic import Field

from mvid.pipeline.media import files, write_tar
from mvid.pipeline.stage import Result, Stage, StageParams
from mvid.schemas import record as R
from mvid.stages import register

WORDS = (
    "a person walks across a busy street while cars pass slowly under grey clouds and a dog runs beside a child "
    "holding a red balloon near the old stone bridge at dusk with music playing softly from a cafe"
).split()
DIM, FRAMES = 768, 8


def media() -> dict[str, bytes]:
    """A 0.1 s wav and an 8x8 JPEG, shared by every clip."""
    from PIL import Image

    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1), w.setsampwidth(2), w.setframerate(16000), w.writeframes(b"\0\1" * 1600)
    jpg = io.BytesIO()
    Image.new("RGB", (8, 8), (120, 80, 40)).save(jpg, "JPEG")
    return {"wav": buf.getvalue(), "jpg": jpg.getvalue()}


def words(seed: int, n: int = 20) -> str:
    rng = np.random.default_rng(seed)
    return " ".join(WORDS[i] for i in rng.integers(0, len(WORDS), n))


class ClipsParams(StageParams):
    name: str = "bench_clips"
    clips: int = Field(100, ge=1)  # clips a video


@register
class BenchClips(Stage[ClipsParams]):
    key = "video_id"
    requires = ("video_id", "path")
    produces = ("clips", "media", "has_audio", "clip_id", "clip_path", "audio_path", "frame_paths", "transcript")

    def process_batch(self, recs):
        m = media()
        return [self.one(r, m) for r in recs]

    def one(self, rec: dict, m: dict[str, bytes]) -> Result:
        vid = rec["video_id"]
        clips, members = [], {}
        with tempfile.TemporaryDirectory() as d:
            for k, b in {"mp4": Path(rec["path"]).read_bytes(), **m}.items():
                Path(d, k).write_bytes(b)
            for i in range(self.p.clips):
                cid = R.clip_id(vid, i)
                frames = [f"{cid}.frame{j:02d}.jpg" for j in range(FRAMES)]
                members |= {f"{cid}.mp4": Path(d, "mp4"), f"{cid}.wav": Path(d, "wav")}
                members |= {f: Path(d, "jpg") for f in frames}
                segs = [{"start": s, "end": s + 1.0, "text": words(zlib.crc32(cid.encode()) + s)} for s in range(3)]
                clips.append(
                    {
                        "clip_id": cid,
                        "clip_index": i,
                        "start_frame": i * 50,
                        "end_frame": i * 50 + 50,
                        "start": i * 2.0,
                        "end": i * 2.0 + 2.0,
                        "duration": 2.0,
                        "fps": 25.0,
                        "has_audio": True,
                        "clip_path": f"{cid}.mp4",
                        "audio_path": f"{cid}.wav",
                        "frame_paths": frames,
                        "frame_size": [8, 8],
                        "frame_hashes": [zlib.crc32(f.encode()) for f in frames],
                        "media_bytes": sum(Path(d, k).stat().st_size for k in ("mp4", "wav")) + FRAMES * len(m["jpg"]),
                        "transcript": {
                            "text": " ".join(s["text"] for s in segs),
                            "language": "en",
                            "segments": segs,
                            "source": "asr",
                            "scope": "clip",
                        },
                    }
                )
            media_path = self.ctx.media(vid)
            write_tar(media_path, files(members))
        return Result.ok(
            {**rec, "has_audio": True, "clips": clips, "media": str(media_path.relative_to(self.ctx.work))}
        )


class CaptionsParams(StageParams):
    name: str = "bench_captions"


@register
class BenchCaptions(Stage[CaptionsParams]):
    requires = ("clip_id",)
    produces = ("raw_captions", "captions", "clip_scores", "clip_score", "clip_emb")

    def process_batch(self, recs):
        out = []
        for r in recs:
            seed = zlib.crc32(r["clip_id"].encode())
            twin = r["clip_index"] % 20 == 1  # the same embedding as the clip before it
            src = R.clip_id(r["video_id"], r["clip_index"] - 1) if twin else r["clip_id"]
            e = np.random.default_rng(zlib.crc32(src.encode())).normal(size=DIM).astype(np.float32)
            caps = {k: words(seed + j) for j, k in enumerate(R.CAPTION_TYPES)}
            score = round(float(np.random.default_rng(seed).normal(0.3, 0.05)), 6)
            out.append(
                Result.ok(
                    {
                        **r,
                        "raw_captions": {"A": caps["A"], "V": caps["V"]},
                        "captions": caps,
                        "clip_scores": {"V": score, "AVS": score},
                        "clip_score": score,
                        "clip_emb": (e / np.linalg.norm(e)).tolist(),
                        "models": {k: "bench" for k in R.CAPTION_TYPES},
                    }
                )
            )
        return out
