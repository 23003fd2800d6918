"""probe: ffprobe metadata per video; empty, unreadable, truncated, audio-only, image, playlist, oversized or
overlong files are rejected here, before anything decodes them."""

from __future__ import annotations

from pydantic import Field

from mvid.pipeline import ffmpeg
from mvid.pipeline.stage import Result, Stage, StageError, StageParams
from mvid.stages import register


class ProbeParams(StageParams):
    name: str = "probe"
    timeout_s: float = Field(60, gt=0)
    max_duration_s: float = Field(4 * 3600, gt=0)
    long_videos: str = Field("refuse", pattern="^(refuse|cap)$")  # cap: keep the first max_duration_s
    max_pixels: int = Field(3840 * 2160, gt=0)
    min_side: int = Field(16, ge=1)
    # Long side over short side: beyond it the sampled frames and clips are degenerate (a 4000x16 strip).
    max_aspect: float = Field(20.0, ge=1)
    # Below it a frame lasts longer than a clip can (split keeps clips within max_clip_s seconds).
    min_fps: float = Field(1.0, gt=0)


def summarize(info: dict) -> dict:
    streams = info.get("streams", [])
    v = next(
        (s for s in streams if s.get("codec_type") == "video" and not s.get("disposition", {}).get("attached_pic")),
        None,
    )
    a = next((s for s in streams if s.get("codec_type") == "audio"), None)
    if v is None:
        raise StageError("no_video_stream", "no video stream (audio only or not a video)")
    fmt = info.get("format", {})
    t0 = float(fmt.get("start_time") or 0)
    # The video stream's own span: a container's duration may count an empty edit or other streams around it.
    start = float(v["start_time"]) if v.get("start_time") not in (None, "N/A") else t0
    end = (
        start + float(v["duration"]) if v.get("duration") not in (None, "N/A") else t0 + float(fmt.get("duration") or 0)
    )
    rotation = 0
    for sd in v.get("side_data_list", []):
        rotation = int(sd.get("rotation", rotation) or 0)
    return {
        "format": fmt.get("format_name"),
        "duration": end - start,
        "bytes": int(fmt.get("size") or 0),
        "width": int(v.get("width") or 0),
        "height": int(v.get("height") or 0),
        "rotation": rotation,
        "fps": ffmpeg.rate(v.get("r_frame_rate")) or ffmpeg.rate(v.get("avg_frame_rate")),
        "avg_fps": ffmpeg.rate(v.get("avg_frame_rate")),
        "vcodec": v.get("codec_name"),
        "start_time": t0,
        "lead": start - t0,
        "pix_fmt": v.get("pix_fmt"),
        "acodec": (a.get("codec_name") or "unknown") if a else None,
        "sample_rate": int(a.get("sample_rate") or 0) if a else None,
    }


@register
class Probe(Stage[ProbeParams]):
    key = "video_id"
    libs = ("ffmpeg",)
    requires = ("video_id", "path")
    produces = ("probe", "has_audio")

    def process_batch(self, recs):
        return [self.one(r) for r in recs]

    def one(self, rec: dict) -> Result:
        p = self.p
        try:
            info = summarize(ffmpeg.probe(rec["path"], p.timeout_s))
        except StageError as e:
            return Result.reject(rec, e.code, e.message)
        w, h = info["width"], info["height"]
        if min(w, h) < p.min_side:
            return Result.reject(rec, "too_small", f"{w}x{h} is under min_side={p.min_side}")
        if w * h > p.max_pixels:
            return Result.reject(rec, "too_large", f"{w}x{h} is over max_pixels={p.max_pixels}")
        if max(w, h) > p.max_aspect * min(w, h):
            return Result.reject(rec, "bad_aspect", f"{w}x{h} is more elongated than max_aspect={p.max_aspect:g}")
        try:  # decoding starts at a keyframe: a stream cut mid-GOP, or leading garbage, shows its first frame later
            first = ffmpeg.first_frame(rec["path"], p.timeout_s)
        except StageError as e:
            return Result.reject(rec, e.code, e.message)
        t0 = info["start_time"]
        if first is not None and first - t0 > info["lead"]:
            info["duration"] -= first - t0 - info["lead"]
            info["lead"] = first - t0
        if not info["fps"] or info["duration"] <= 0:
            return Result.reject(rec, "no_duration", "no frame rate or duration")
        if info["fps"] < p.min_fps:
            return Result.reject(rec, "low_fps", f"{info['fps']:.3g} frames/s is under min_fps={p.min_fps:g}")
        if info["duration"] > p.max_duration_s:
            if p.long_videos == "refuse":
                return Result.reject(
                    rec, "too_long", f"{info['duration']:.0f}s > max_duration_s={p.max_duration_s:.0f}"
                )
            info["capped_at"] = p.max_duration_s
        # A file cut short still declares its full duration: read the packets around the end that will be used.
        need, v0 = info.get("capped_at", info["duration"]), t0 + info["lead"]
        try:
            end = ffmpeg.end_time(rec["path"], v0 + max(0.0, need - 1), v0 + need + 1, p.timeout_s) - v0
        except StageError as e:
            return Result.reject(rec, e.code, e.message)
        if end < need - max(0.5, 0.05 * need):
            return Result.reject(rec, "truncated", f"the data ends at {end:.2f}s of the {need:.2f}s declared")
        return Result.ok({**rec, "probe": info, "has_audio": info["acodec"] is not None})
