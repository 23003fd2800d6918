"""`mvid export FORMAT OUT DEST`: the shards as files that other training code reads as they are.

internvideo2: DEST/videos/<key>.mp4 and DEST/annotations.json, the JSON array that InternVideo2's
multi_modality/dataset/pt_dataset.py loads (`video` relative to the corpus' data_root, `caption`, and the MVid
caption keys). jsonl: the same clips and DEST/clips.jsonl, a line per clip. Shards are read one at a time and
the annotations written as they come: memory does not grow with the corpus."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

from mvid.schemas import shard as S

FORMATS = ("internvideo2", "jsonl")
BEST = ("AVS", "AV", "V", "A", "S")  # `caption`: the first of these that a clip has
# InternVideo2's annotation keys for the MVid captions (S is the English speech text, its ASR caption).
KEYS = {
    "AVS": "avs_captions",
    "AV": "av_captions",
    "S": "asr_captions",
    "V": "selected_video_caption",
    "A": "selected_audio_caption",
}


def clips(out: Path) -> Iterator[tuple[dict, bytes]]:
    """Every sample of an output folder in manifest order: (its json, its mp4)."""
    for s in S.manifest(out).shards:
        for _, m in S.samples(out / s.name):
            yield json.loads(m["json"]), m["mp4"]


def internvideo2(rec: dict) -> dict | None:
    caps = {k: v for k, v in (rec.get("captions") or {}).items() if v}
    best = next((caps[k] for k in BEST if k in caps), None)
    if best is None:
        return None
    return {
        "video": f"{rec['clip_id']}.mp4",
        "caption": best,
        **{KEYS[k]: v for k, v in caps.items()},
        "video_fps": rec.get("fps"),
        "video_name": rec["clip_id"],
    }


def line(rec: dict) -> dict:
    tr, lid, tx = rec.get("transcript") or {}, rec.get("lid") or {}, rec.get("translation") or {}
    return {
        "key": rec["clip_id"],
        "video": f"videos/{rec['clip_id']}.mp4",
        "source": rec.get("path"),
        **{k: rec.get(k) for k in ("start", "end", "duration", "fps", "has_audio", "clip_score", "clip_scores")},
        "captions": {k: v for k, v in (rec.get("captions") or {}).items() if v},
        "transcript": tr.get("text"),
        "language": lid.get("language"),
        "translator": tx.get("translator"),
    }


def export(fmt: str, out: Path, dest: Path) -> dict:
    """Write the export; returns {"clips": written, "skipped": clips without any caption, "annotations": path}."""
    if fmt not in FORMATS:
        raise ValueError(f"unknown export format {fmt!r}: one of {', '.join(FORMATS)}")
    out, dest = Path(out), Path(dest)
    videos = dest / "videos"
    videos.mkdir(parents=True, exist_ok=True)
    path = dest / ("annotations.json" if fmt == "internvideo2" else "clips.jsonl")
    tmp = path.with_name(f".{path.name}.tmp")
    n = skipped = 0
    with open(tmp, "w") as f:
        f.write("[\n" if fmt == "internvideo2" else "")
        for rec, mp4 in clips(out):
            row = internvideo2(rec) if fmt == "internvideo2" else line(rec)
            if row is None:
                skipped += 1
                continue
            (videos / f"{rec['clip_id']}.mp4").write_bytes(mp4)
            sep = ",\n" if n and fmt == "internvideo2" else ""
            f.write(sep + json.dumps({k: v for k, v in row.items() if v is not None}, ensure_ascii=False))
            f.write("\n" if fmt == "jsonl" else "")
            n += 1
        f.write("\n]\n" if fmt == "internvideo2" else "")
    os.replace(tmp, path)
    return {"clips": n, "skipped": skipped, "annotations": str(path)}


def hf_features(out: Path):
    """Hugging Face datasets' Features for the shards of an output folder, for load_dataset("webdataset", ...,
    features=...): media stay bytes (its own inference would decode mp4 and wav with torchcodec), frames are
    images, the json a dict. Covers the members the manifest lists, except the optional audio_fbank.npy."""
    from datasets import Features, Image, Json, Value

    members = [k for k in S.manifest(Path(out)).fields if k in ("mp4", "wav") or k.endswith(".jpg")]
    return Features(
        {
            "__key__": Value("string"),
            "__url__": Value("string"),
            "json": Json(),
            **{k: Image() if k.endswith(".jpg") else Value("binary") for k in members},
        }
    )


def corpus_entry(dest: Path) -> str:
    """The `available_corpus` entry of InternVideo2's configs/data.py that reads the export."""
    d = Path(dest).resolve()
    args = {"anno_path": str(d / "annotations.json"), "data_root": str(d / "videos"), "media_type": "audio_video"}
    body = "".join(f"    {k}={json.dumps(v)},\n" for k, v in args.items())
    return f'available_corpus["mvid"] = dict(\n{body}    read_audio_from_video=True,\n)'
