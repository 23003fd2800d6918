"""Record columns: the single list of what a clip carries, who makes it, and its ids."""
from __future__ import annotations

import hashlib
import re

# name -> (type, stage that makes it, meaning). Stages declare `produces` from these names.
COLUMNS: dict[str, tuple[str, str, str]] = {
    "video_id": ("str", "input", "stable id of the source video, safe as a WebDataset key"),
    "path": ("str", "input", "source video path"),
    "input_transcript": ("str|list|None", "input", "transcript supplied with the input"),
    "input_language": ("str|None", "input", "language of the supplied transcript"),
    "probe": ("dict", "probe", "ffprobe summary: duration, fps, size, codecs, streams"),
    "has_audio": ("bool", "probe", "the source has an audio stream"),
    "clip_id": ("str", "split", "<video_id>-<index>, safe as a WebDataset key"),
    "clip_index": ("int", "split", "index of the clip in its video"),
    "start_frame": ("int", "split", "first frame of the clip (inclusive)"),
    "end_frame": ("int", "split", "last frame of the clip (exclusive)"),
    "start": ("float", "split", "start time in seconds"),
    "end": ("float", "split", "end time in seconds"),
    "duration": ("float", "split", "clip length in seconds"),
    "fps": ("float", "split", "frame rate of the source"),
    "shot_score": ("float", "split", "max TransNetV2 transition probability inside the clip"),
    "clip_path": ("str", "extract", "clip mp4, relative to the work dir"),
    "audio_path": ("str|None", "extract", "16 kHz mono wav, relative to the work dir, None without audio"),
    "frame_paths": ("list[str]", "extract", "uniformly sampled jpg frames, relative to the work dir"),
    "frame_size": ("list[int]", "extract", "width, height of the sampled frames"),
    "media_bytes": ("int", "extract", "bytes of clip, audio and frames: the sample's shard footprint"),
    "transcript": ("dict|None", "asr", "speech text as spoken: text, language, language_prob, segments "
                   "(clip-relative seconds), no_speech_prob, source (asr or input); None without speech"),
    "lid": ("dict|None", "lid", "fastText language of the transcript: language, confidence"),
    "translation": ("dict|None", "translate", "English speech text: text, translator (none, seamless, llm), "
                    "src_lang, confidence"),
    "raw_captions": ("dict", "vcaption/acaption", "per-modality model outputs: V (vision), A (audio)"),
    "captions": ("dict", "translate/fuse", "the MVid captions: S (speech), then A, V, AV, AVS from fuse"),
    "clip_scores": ("dict", "clipscore", "CLIP frame-caption similarity per caption (V, AV, AVS)"),
    "clip_score": ("float|None", "clipscore", "the score that selection uses"),
    "clip_emb": ("str", "clipscore", "CLIP image embedding (float16, base64); work folder only"),
    "extra_members": ("dict", "any", "extra shard members: extension -> file, e.g. audio_fbank.npy"),
    "reasons": ("dict", "any", "why a field is absent, e.g. {'audio': 'no_audio_stream'}"),
    "models": ("dict", "any", "which model made which field: {'field': 'model name'}"),
}

_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def slug(text: str, limit: int = 40) -> str:
    """Lower-risk key text: only [A-Za-z0-9_-], never dots or slashes, never a leading '-'."""
    return _UNSAFE.sub("_", text)[:limit].strip("_-") or "v"


def video_id(path: str, given: str | None = None) -> str:
    """Stable id: a given id kept if already safe, else slug of the name + hash of the source."""
    if given and slug(given, 200) == given:
        return given
    base = given or path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    digest = hashlib.sha1((given or path).encode()).hexdigest()[:10]
    return f"{slug(base)}_{digest}"


def clip_id(vid: str, index: int) -> str:
    return f"{vid}-{index:04d}"
