"""extract: per clip, the mp4 cut at frame-accurate boundaries, 16 kHz mono audio and N uniform frames, all of a
video's clips packed into one media tar (pipeline/media.py).

Makes media (the tar) and per clip clip_path, audio_path (None without audio, reason in reasons.audio),
frame_paths (member names), frame_size, media_bytes. A broken audio stream keeps the video and records the audio
failure."""

from __future__ import annotations

import logging
import tempfile
from pathlib import Path

import numpy as np
from pydantic import Field

from mvid.pipeline import ffmpeg
from mvid.pipeline.media import files as members_of
from mvid.pipeline.media import write_tar
from mvid.pipeline.stage import Result, Stage, StageError, StageParams, reject_of
from mvid.schemas.record import CLIP
from mvid.stages import register

log = logging.getLogger("mvid")
BITEXACT = ["-fflags", "+bitexact", "-flags:v", "+bitexact", "-flags:a", "+bitexact"]
INDEXED = {"mov,mp4,m4a,3gp,3g2,mj2", "matroska,webm"}  # ffprobe's format names of containers that seek exactly


class ExtractParams(StageParams):
    name: str = "extract"
    frames: int = Field(8, ge=1)  # InternVideo2 feeds its encoder 8 frames
    frame_size: int = Field(224, ge=16)  # short side of the sampled frames, aspect kept
    max_side: int = Field(0, ge=0)  # downscale clips whose long side is larger; 0 keeps the size
    crf: int = Field(23, ge=0, le=51)
    preset: str = "veryfast"
    sample_rate: int = 16000
    timeout_s: float = Field(300, gt=0)
    seek_back_s: float = Field(10.0, ge=0)  # in containers without an index, seek this far early, then decode


def dhash(path: Path) -> int:
    """64-bit difference hash of an image (9x8 grey, left brighter than right), as a signed int64."""
    from PIL import Image

    with Image.open(path) as im:
        px = np.asarray(im.convert("L").resize((9, 8), Image.Resampling.LANCZOS), np.int16)
    bits = (px[:, :-1] > px[:, 1:]).flatten()
    return int.from_bytes(np.packbits(bits).tobytes(), "big", signed=True)


def uniform(n: int, k: int) -> list[int]:
    """k frame indices spread uniformly over n frames (segment middles), as video models sample."""
    return sorted({min(n - 1, int((i + 0.5) * n / k)) for i in range(k)})


@register
class Extract(Stage[ExtractParams]):
    key = "video_id"
    libs = ("ffmpeg", "pillow")
    requires = ("video_id", "path", "clips")
    produces = ("media", "clips")

    def process_batch(self, recs):
        return [self.one(r) for r in recs]

    def one(self, rec: dict) -> Result:
        """Every clip of the video into one media tar; a clip that fails is rejected, the others go on."""
        res, clips, files = Result(), [], {}
        with tempfile.TemporaryDirectory() as tmp:
            for c in rec["clips"]:
                try:
                    made = self.clip({**rec, **c}, Path(tmp))
                except StageError as e:
                    res.rejects.append(reject_of({**rec, **c}, e.code, e.message))
                    continue
                clip, members = made
                clips.append(clip)
                files.update(members)
            media = self.ctx.media(rec["video_id"])
            write_tar(media, members_of(files))
        res.records.append({**rec, "clips": clips, "media": str(media.relative_to(self.ctx.work))})
        return res

    def cut(self, rec: dict) -> list[str]:
        """ffmpeg's input options for the clip's seconds. An indexed container (MP4, Matroska) seeks exactly; in
        others (MPEG-TS, MPEG-PS, AVI, FLV) a seek can land a keyframe late, so it lands seek_back_s early and
        ffmpeg decodes up to the clip's start."""
        start, dur, src = rec["start"], f"{rec['duration']:.6f}", ffmpeg.src(rec["path"])
        back = 0.0 if (rec.get("probe") or {}).get("format") in INDEXED else min(self.p.seek_back_s, start)
        if not back:
            return ["-ss", f"{start:.6f}", "-t", dur, *ffmpeg.SAFE, "-i", src]
        return ["-ss", f"{start - back:.6f}", *ffmpeg.SAFE, "-i", src, "-ss", f"{back:.6f}", "-t", dur]

    def clip(self, rec: dict, tmp: Path) -> tuple[dict, dict[str, Path]]:
        """One clip's mp4, wav and frames under tmp: the clip's new fields, and its members (name -> file)."""
        p = self.p
        cid, reasons = rec["clip_id"], dict(rec.get("reasons") or {})
        cut = self.cut(rec)
        clip, wav = tmp / f"{cid}.mp4", tmp / f"{cid}.wav"
        scale = (
            []
            if not p.max_side
            else ["-vf", f"scale='if(gt(iw,ih),min({p.max_side},iw),-2)':'if(gt(iw,ih),-2,min({p.max_side},ih))'"]
        )
        video = [
            "-map",
            "0:v:0",
            "-frames:v",
            str(rec["end_frame"] - rec["start_frame"]),
            *scale,
            "-c:v",
            "libx264",
            "-preset",
            p.preset,
            "-crf",
            str(p.crf),
            "-pix_fmt",
            "yuv420p",
        ]
        audio = ["-map", "0:a:0", "-c:a", "aac", "-b:a", "128k"]
        has_audio = rec["has_audio"]
        if has_audio:
            try:
                ffmpeg.run(
                    [
                        "-y",
                        *cut,
                        "-vn",
                        "-map",
                        "0:a:0",
                        "-ac",
                        "1",
                        "-ar",
                        str(p.sample_rate),
                        "-af",
                        "aresample=async=1:first_pts=0",  # audio that starts late is padded: the wav starts at start
                        "-c:a",
                        "pcm_s16le",
                        *BITEXACT,
                        str(wav),
                    ],
                    p.timeout_s,
                )
            except StageError as e:
                log.warning("extract: no audio for %s: %s", cid, e.message)
                has_audio, reasons["audio"] = False, "audio_failed"
                wav.unlink(missing_ok=True)
        else:
            reasons["audio"] = "no_audio_stream"
        ffmpeg.run(
            ["-y", *cut, *video, *(audio if has_audio else ["-an"]), *BITEXACT, "-movflags", "+faststart", str(clip)],
            p.timeout_s,
        )
        fdir = tmp / cid
        fdir.mkdir()
        n = rec["end_frame"] - rec["start_frame"]
        sel = "+".join(f"eq(n\\,{i})" for i in uniform(n, p.frames))
        s = p.frame_size
        ffmpeg.run(
            [
                *ffmpeg.SAFE,
                "-i",
                ffmpeg.src(clip),
                "-vf",
                f"select='{sel}',scale='if(gt(iw,ih),-2,{s})':'if(gt(iw,ih),{s},-2)'",
                "-fps_mode",
                "passthrough",
                "-q:v",
                "3",
                *BITEXACT,
                str(fdir / "%02d.jpg"),
            ],
            p.timeout_s,
        )
        frames = sorted(fdir.glob("*.jpg"))
        if not frames:
            raise StageError("no_frames", "no frames could be sampled from the clip")
        from PIL import Image

        with Image.open(frames[0]) as im:
            size = list(im.size)
        hashes = [dhash(f) for f in frames]
        members = {
            f"{cid}.mp4": clip,
            **{f"{cid}.frame{i:02d}.jpg": f for i, f in enumerate(frames)},
            **({f"{cid}.wav": wav} if has_audio else {}),
        }
        fields = {
            "has_audio": has_audio,
            "reasons": reasons,
            "clip_path": f"{cid}.mp4",
            "audio_path": f"{cid}.wav" if has_audio else None,
            "frame_paths": [m for m in members if ".frame" in m],
            "frame_size": size,
            "frame_hashes": hashes,
            "media_bytes": sum(f.stat().st_size for f in members.values()),
        }
        return {k: v for k, v in {**rec, **fields}.items() if k in CLIP}, members
