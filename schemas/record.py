"""Record columns: the single list of what a unit, a video and a clip carry, their Arrow types, who makes them.

Ray Data moves *units* between stages: one row per unit, a fixed chunk of consecutive input videos, each video
with its clips nested inside. Video-level fields (probe, a supplied transcript) live once per video; a stage that
works on clips sees each clip joined with its video's fields (`merged`)."""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Callable

import pyarrow as pa

S, F, INT, B = pa.string(), pa.float64(), pa.int64(), pa.bool_()
TEXTS = pa.map_(S, S)
SEGMENT = pa.struct([("start", F), ("end", F), ("text", S), ("no_speech_prob", F), ("avg_logprob", F)])
PROBE = pa.struct(
    [
        ("format", S),
        ("duration", F),
        ("bytes", INT),
        ("width", INT),
        ("height", INT),
        ("rotation", INT),
        ("fps", F),
        ("avg_fps", F),
        ("vcodec", S),
        ("start_time", F),
        ("lead", F),
        ("pix_fmt", S),
        ("acodec", S),
        ("sample_rate", INT),
        ("capped_at", F),
    ]
)
TRANSCRIPT = pa.struct(
    [
        ("text", S),
        ("language", S),
        ("language_prob", F),
        ("segments", pa.list_(SEGMENT)),
        ("no_speech_prob", F),
        ("duration", F),
        ("source", S),
        ("scope", S),
    ]
)
CAPTION_TYPES = ("A", "V", "S", "AV", "AVS")  # the MVid captions: audio, visual, speech, and two fusions
CAPTIONS = pa.struct([(k, S) for k in CAPTION_TYPES])

# name -> (Arrow type, stage that makes it, meaning). Stages declare `requires` and `produces` from these names,
# and the runner checks both.
VIDEO: dict[str, tuple[pa.DataType, str, str]] = {
    "video_id": (S, "input", "stable id of the source video, safe as a WebDataset key (at most 64 characters)"),
    "given_id": (S, "input", "the video_id the input gave, when it was not a safe key and was mapped to one"),
    "path": (S, "input", "source video path (resolved); <list>:<row> for a list row without a usable path"),
    "row": (INT, "input", "the entry's number in the input: a list's row, or the folder walk's entry (sorted)"),
    "input_text": (S, "input", "a plain transcript supplied with the input, for the whole video"),
    "input_segments": (pa.list_(SEGMENT), "input", "a timed transcript supplied with the input (video seconds)"),
    "input_language": (S, "input", "language of the supplied transcript"),
    "failed": (B, "any", "the video failed as a whole (its reject says why): later stages pass it by"),
    "probe": (
        PROBE,
        "probe",
        "ffprobe summary: duration (of the decodable video), fps, size, codecs; lead: seconds from the file's "
        "start to its first decodable video frame (an empty edit, a cut mid-GOP), where clip times begin",
    ),
    "has_audio": (B, "probe", "the source has an audio stream"),
    "media": (S, "extract", "the video's media tar (every clip's mp4, wav, frames), relative to the work dir"),
    "clips": (None, "split", "the video's clips (CLIP below)"),
    "rejects": (None, "any", "failure and drop records of the video and its clips (REJECT below)"),
}
CLIP: dict[str, tuple[pa.DataType, str, str]] = {
    "clip_id": (S, "split", "<video_id>-<index>, safe as a WebDataset key"),
    "clip_index": (INT, "split", "index of the clip in its video"),
    "start_frame": (INT, "split", "first frame of the clip (inclusive)"),
    "end_frame": (INT, "split", "last frame of the clip (exclusive)"),
    "start": (F, "split", "start time in seconds"),
    "end": (F, "split", "end time in seconds"),
    "duration": (F, "split", "clip length in seconds"),
    "fps": (F, "split", "frame rate of the source"),
    "shot_score": (F, "split", "max TransNetV2 transition probability inside the clip"),
    "bounds": (
        pa.struct([("start", S), ("start_score", F), ("end", S), ("end_score", F)]),
        "split",
        "what starts and ends the clip: video (its start or end), cut, gradual (TransNetV2's transitions), "
        "histogram (a wipe TransNetV2 missed: a colour step swept across the frame) or length (a long shot cut "
        "at max_clip_s); and that boundary's confidence (model probability or histogram distance; 0 for video "
        "and length)",
    ),
    "has_audio": (B, "split/extract", "the clip has audio (false when its audio failed to extract)"),
    "clip_path": (S, "extract", "the clip's mp4: a member of the video's media tar"),
    "audio_path": (S, "extract", "16 kHz mono wav member of the media tar, None without audio"),
    "frame_paths": (pa.list_(S), "extract", "uniformly sampled jpg frames: members of the media tar"),
    "frame_size": (pa.list_(INT), "extract", "width, height of the sampled frames"),
    "frame_hashes": (
        pa.list_(INT),
        "extract",
        "64-bit dHash of each sampled frame (signed): model-free near-duplicates",
    ),
    "media_bytes": (INT, "extract", "bytes of clip, audio and frames: the sample's shard footprint"),
    "transcript": (
        TRANSCRIPT,
        "asr",
        "speech text as spoken: text, language, language_prob, segments "
        "(clip-relative seconds), no_speech_prob, source (asr or input); None without speech",
    ),
    "lid": (pa.struct([("language", S), ("confidence", F)]), "lid", "fastText language of the transcript"),
    "translation": (
        pa.struct([("text", S), ("translator", S), ("src_lang", S), ("confidence", F)]),
        "translate",
        "English speech text: text, translator (none, seamless, llm), src_lang, confidence",
    ),
    "raw_captions": (CAPTIONS, "vcaption/acaption/translate/fuse", "every generated caption as its model gave it"),
    "captions": (
        CAPTIONS,
        "vcaption/acaption/translate/fuse",
        "the MVid captions that passed the caption checks (or all, when they only mark): A, V, S, AV, AVS",
    ),
    "quality": (TEXTS, "vcaption/acaption/translate/fuse", "{caption type: reason} of each that failed the checks"),
    "caption_lang": (TEXTS, "vcaption/acaption/translate/fuse", "{caption type: fastText's language of it}"),
    "clip_scores": (pa.map_(S, F), "clipscore", "CLIP frame-caption similarity per caption (V, AV, AVS)"),
    "clip_score": (F, "clipscore", "the score that selection uses"),
    "clip_emb": (pa.list_(pa.float32()), "clipscore", "CLIP image embedding (unit norm); work folder only"),
    "reasons": (TEXTS, "any", "why a field is absent: {field: code} with codes from REASONS below"),
    "models": (TEXTS, "any", "which model made which field: {'field': 'model name'}"),
}
# Why a field is absent: the values of a record's `reasons` ({field: code}), checked by the runner
# (docs/reliability.md lists them beside the failure codes).
REASONS: dict[str, str] = {
    "no_audio_stream": "the source video has no audio stream (extract: reasons.audio)",
    "audio_failed": "the clip's audio could not be extracted; the video goes on without it (extract)",
    "no_audio": "the clip has no audio, so no speech or sound caption (asr, acaption)",
    "silence": "the clip's audio is below the silence level: Whisper is not run (asr)",
    "no_speech": "Whisper's no-speech rule, or a supplied transcript with no segment in the clip (asr)",
    "too_short_audio": "the clip's audio is shorter than min_speech_s (or the speech detector's 40 ms frame): no "
    "speech to find (asr)",
    "asr_failed": "the speech detector or Whisper failed on the clip; the clip goes on without S (asr)",
    "lid_failed": "language ID failed on the transcript; the clip goes on without S (lid)",
    "translate_failed": "the translator failed on the transcript; the clip goes on without S (translate)",
    "vcaption_failed": "the vision captioner failed on the clip; it goes on without V (vcaption)",
    "acaption_failed": "the audio captioner failed on the clip; it goes on without A (acaption)",
    "translation_failed": "the LLM's translation was malformed twice (translate)",
    "empty_caption": "the model returned an empty caption (vcaption, acaption)",
    "degenerate_empty": "the caption is a sentinel such as 'none' or 'n/a' (caption checks)",
    "degenerate_characters": "the caption holds U+FFFD, control or private-use characters (caption checks)",
    "degenerate_echo": "the caption repeats words of its prompt, or a chat tag or role marker (caption checks)",
    "degenerate_refusal": "the caption is a refusal ('I'm sorry, I cannot ...') (caption checks)",
    "degenerate_repetition": "the caption loops: an n-gram max_repeats times, or too few distinct words (checks)",
    "degenerate_too_short": "the caption has fewer than min_words words (caption checks)",
    "degenerate_too_long": "the caption has more than max_words words (caption checks)",
    "degenerate_language": "fastText is confident the caption is not English (caption checks)",
    "not_made": "no stage of the recipe made this caption (fuse)",
    "missing_modality": "a caption this fused caption needs is absent; its own reason says why (fuse)",
    "marked_input": "a caption this fused caption needs failed its checks (kept, marked in quality): unused (fuse)",
    "fusion_failed": "the LLM's fused caption was malformed twice (fuse)",
}
REJECT: dict[str, tuple[pa.DataType, str, str]] = {
    "id": (S, "any", "the clip id, or the video id when the whole video failed"),
    "video_id": (S, "any", "the video"),
    "path": (S, "any", "the source file"),
    "row": (INT, "any", "the input entry it came from (VIDEO row)"),
    "stage": (S, "any", "the stage that rejected it"),
    "code": (S, "any", "reason code (docs/reliability.md)"),
    "message": (S, "any", "what happened, in words"),
    "kind": (S, "any", "error (something failed) or drop (policy)"),
    "trace": (S, "any", "the end of the traceback of an unexpected exception"),
    "clip_score": (F, "select", "the score of a dropped clip"),
    "frames": (pa.list_(INT), "split", "[first, end) frames of a dropped shot"),
    "quality": (TEXTS, "fuse", "the caption checks' reasons of a clip dropped with no caption left"),
}


# Columns whose None is a value that a later stage reads (the record's reasons say why): no audio, no speech, no
# translation, no score. Any other required column that is None is a missing_input error (pipeline/runner.py).
NULLABLE = frozenset({"audio_path", "transcript", "lid", "translation", "clip_score"})


def makers(column: str) -> set[str]:
    """The stages that make a column ("input" and "any" included), from the tables above."""
    return {m for t in (VIDEO, CLIP) if column in t for m in t[column][1].split("/")}


def _struct(cols: dict) -> pa.StructType:
    return pa.struct([(k, t) for k, (t, _, _) in cols.items() if t is not None])


CLIP_TYPE, REJECT_TYPE = _struct(CLIP), _struct(REJECT)
VIDEO_TYPE = pa.struct([*_struct(VIDEO), ("clips", pa.list_(CLIP_TYPE)), ("rejects", pa.list_(REJECT_TYPE))])
# One row per unit; `_k` is the digest of the unit as the last stage left it (the cache chain, pipeline/store.py).
UNIT = pa.schema([("unit", S), ("_k", S), ("videos", pa.list_(VIDEO_TYPE))])
COLUMNS = {**VIDEO, **CLIP}


class SchemaError(TypeError):
    """A stage made a record that does not fit the schema: a bug in the stage, not a bad input."""


def check(rec: dict, allowed: dict, where: str) -> None:
    extra = set(rec) - set(allowed)
    if extra:
        raise SchemaError(f"{where}: fields {sorted(extra)} are not in schemas/record.py")
    odd = {k: v for k, v in (rec.get("reasons") or {}).items() if v not in REASONS}
    if odd:
        raise SchemaError(f"{where}: reasons {odd} are not codes of schemas/record.py REASONS")
    if allowed is VIDEO:
        for c in rec.get("clips") or []:
            check(c, CLIP, where)


def table(units: list[dict]) -> pa.Table:
    return pa.Table.from_pylist(units, schema=UNIT)


def rows(t: pa.Table) -> list[dict]:
    """Units as Python dicts, maps as dicts (Arrow gives maps as lists of pairs)."""
    fix = _fixer(pa.struct(list(t.schema)))
    return [fix(u) for u in t.to_pylist()] if fix else t.to_pylist()


@functools.cache
def _fixer(t: pa.DataType) -> Callable | None:
    """A function that turns the maps inside a value of type t into dicts, in place where it can; None when t
    holds no map. Only the paths that lead to a map are walked."""
    if pa.types.is_map(t):
        inner = _fixer(t.item_type)
        return lambda v: None if v is None else {k: inner(x) if inner else x for k, x in v}
    if pa.types.is_list(t):
        inner = _fixer(t.value_type)
        return (lambda v: None if v is None else [inner(x) for x in v]) if inner else None
    if pa.types.is_struct(t):
        fields = [(f.name, g) for f in t if (g := _fixer(f.type))]

        def fix(v):
            for name, g in fields:
                v[name] = g(v[name])
            return v

        return (lambda v: None if v is None else fix(v)) if fields else None
    return None


_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")


def slug(text: str, limit: int = 40) -> str:
    """Lower-risk key text: only [A-Za-z0-9_-], never dots or slashes, never a leading '-'."""
    return _UNSAFE.sub("_", text)[:limit].strip("_-") or "v"


MAX_ID = 64  # a video_id's length: its shard members (<id>-<clip>.frame07.jpg) stay within a tar's 100 bytes


def video_id(path: str, given: str | None = None) -> str:
    """Stable id: a given id kept if it is already a safe key of at most MAX_ID characters, else a slug of the given
    id or the file's name and a hash of it (at most 51 characters)."""
    if given and len(given) <= MAX_ID and slug(given, MAX_ID) == given:
        return given
    base = given or path.rsplit("/", 1)[-1].rsplit(".", 1)[0]
    digest = hashlib.sha1((given or path).encode()).hexdigest()[:10]
    return f"{slug(base)}_{digest}"


def clip_id(vid: str, index: int) -> str:
    return f"{vid}-{index:04d}"


def shot_id(vid: str, shot: int) -> str:
    """The id of a shot that split drops (too short): its own id, unlike any clip's, for its record."""
    return f"{vid}-s{shot:04d}"
