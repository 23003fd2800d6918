"""Reading the output: the HTML report in a real browser, the InternVideo2 and JSON-lines exports, and the shards
through Hugging Face datasets."""

import json
import re
from html.parser import HTMLParser
from pathlib import Path

import pyarrow.parquet as pq
from browser import chromium, visit

from mvid.models.samples import frame_count
from mvid.pipeline.config import load
from mvid.pipeline.export import hf_features
from mvid.pipeline.report import AUDIO, PREVIEW, pick, preview
from mvid.schemas import record as R
from mvid.schemas import shard as S

ROOT = Path(__file__).resolve().parents[1]


class Text(HTMLParser):
    """The text of each section of a page, by id."""

    def __init__(self):
        super().__init__()
        self.at, self.text = None, {}

    def handle_starttag(self, tag, attrs):
        if tag == "section":
            self.at = dict(attrs)["id"]
            self.text[self.at] = ""

    def handle_data(self, data):
        if self.at:
            self.text[self.at] += data + " "


def test_gallery_pick_spreads_over_scores_and_videos():
    kept = [{"key": f"v{i % 3}-{i:04d}", "video_id": f"v{i % 3}", "score": i / 30} for i in range(30)]
    dropped = [{"key": f"d-{i:04d}", "video_id": "d", "score": -i / 10} for i in range(10)]
    got = pick(kept, dropped, 8)
    assert got == pick(list(reversed(kept)), dropped, 8)  # deterministic, whatever the order of the files
    assert len(got) == 8 and len({c["key"] for c in got}) == 8
    assert sum(c in dropped for c in got) == 2  # a quarter of the gallery
    ks = [c["score"] for c in got if c in kept]
    assert max(ks) >= 27 / 30 and min(ks) <= 4 / 30  # both ends of the score range
    assert {c["video_id"] for c in got if c in kept} == {"v0", "v1", "v2"}
    assert len(pick(kept[:2], [], 8)) == 2


def test_previews_carry_their_real_duration(tmp_path):
    """The WebM and Ogg previews of a 1.9 s clip say 1.9 s in their headers (to a pipe, ffmpeg wrote -t's 8 s)."""
    import subprocess

    clip = tmp_path / "c.mp4"
    lavfi = ["-f", "lavfi", "-i", "testsrc2=s=64x36:r=25:d=1.9", "-f", "lavfi", "-i", "sine=d=1.9"]
    subprocess.run(["ffmpeg", "-v", "error", *lavfi, "-c:v", "libx264", "-c:a", "aac", str(clip)], check=True)
    for args in (PREVIEW, AUDIO):
        out = tmp_path / "p"
        out.write_bytes(preview(clip.read_bytes(), args))
        probe = ["ffprobe", "-v", "error", "-show_entries", "format=duration", "-of", "csv=p=0", str(out)]
        assert abs(float(subprocess.run(probe, capture_output=True, text=True).stdout) - 1.9) < 0.1


def test_report_in_chromium(full, tmp_path):
    out, entries, stdout, _ = full
    page = out / S.REPORT
    assert f"report: {page}" in stdout
    assert chromium(), "Chromium is needed: `make setup` installs Debian's chromium package"
    shot = tmp_path / "report.png"
    info = visit(page, shot)
    assert info["errors"] == [] and info["broken"] == []
    assert info["sections"] == ["totals", "plots", "quality", "stages", "models", "gallery"]
    m = S.manifest(out)
    drops = [j for j in S.failures(out) if j["code"] == "not_selected"]
    assert info["cards"] == min(24, m.samples + len(drops))
    assert 1 <= info["dropped"] <= len(drops) and info["dropFrames"] >= 4  # dropped clips shown from work/
    assert info["videos"] == info["cards"] and info["audios"] >= 1 and info["plots"] >= 6
    assert info["width"] <= 1400  # nothing wider than the window
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and shot.stat().st_size > 100_000

    t = Text()
    t.feed(page.read_text())
    tiles = t.text["totals"]
    assert f"{m.samples} clips out" in tiles and f"{m.videos} videos in" in tiles
    for code, n in m.failures.items():
        assert re.search(rf"\b{code} (drop|error) {n}\b", tiles), code
    run = S.Run.model_validate_json((out / S.RUN).read_text())
    names = [p.name for p in load("demo").stages]
    assert list(run.stages) == [n for n in names if n in run.stages] and set(names) - set(run.stages) <= {"select"}
    assert run.stages["probe"].items == len(entries) and run.stages["shard"].items == m.samples
    assert run.wall_s > 0 and f"{m.samples} kept of" in (run.selection or "")
    for stage in run.stages:
        assert stage in t.text["stages"]
    assert "(random)" in t.text["gallery"] and "missing: no_audio" in t.text["gallery"]
    assert "not_selected" in t.text["gallery"]


def test_index_has_the_report_columns(full):
    out = full[0]
    idx = pq.read_table(out / S.INDEX).to_pylist()
    samples = {j["clip_id"]: j for j in map(json.loads, _jsons(out))}
    for r in idx:
        j = samples[r["key"]]
        assert r["clip_score"] == j["clip_score"]
        assert r["language"] == (j.get("lid") or {}).get("language")
        assert r["translator"] == (j.get("translation") or {}).get("translator")
        for k in R.CAPTION_TYPES:
            cap = (j.get("captions") or {}).get(k)
            assert r[f"words_{k}"] == (len(cap.split()) if cap else None)
    assert any(r["language"] == "de" for r in idx) and any(r["words_S"] for r in idx)


def _jsons(out):
    for s in S.manifest(out).shards:
        for _, m in S.samples(out / s.name):
            yield m["json"]


def test_export_internvideo2_reads_as_its_loader_does(full, mvid, tmp_path):
    out = full[0]
    dest = tmp_path / "iv2"
    p = mvid("export", "internvideo2", out, dest)
    entry = p.stdout[p.stdout.index('available_corpus["mvid"]') :]
    assert f'anno_path="{dest / "annotations.json"}"' in entry and f'data_root="{dest / "videos"}"' in entry
    assert 'media_type="audio_video"' in entry
    # InternVideo2's pt_dataset.py: json.load of the whole file, then anno["video"] under data_root and
    # anno["caption"]; with caption_sample_type avs_all, every key holding "caption" is a caption string.
    annos = json.loads((dest / "annotations.json").read_text())
    assert isinstance(annos, list) and len(annos) == S.manifest(out).samples
    for a in annos:
        assert isinstance(a["caption"], str) and a["caption"]
        assert all(isinstance(v, str) and v for k, v in a.items() if "caption" in k)
        assert a["video"].endswith(".mp4") and "/" not in a["video"]
        assert frame_count((dest / "videos" / a["video"]).read_bytes()) > 0
    assert any("asr_captions" in a for a in annos) and all("selected_video_caption" in a for a in annos)
    assert sorted(p.name for p in (dest / "videos").iterdir()) == sorted(a["video"] for a in annos)


def test_export_jsonl(full, mvid, tmp_path):
    out = full[0]
    mvid("export", "jsonl", out, tmp_path / "j")
    rows = [json.loads(x) for x in (tmp_path / "j" / "clips.jsonl").read_text().splitlines()]
    idx = pq.read_table(out / S.INDEX).to_pylist()
    assert [r["key"] for r in rows] == [r["key"] for r in idx]
    assert all((tmp_path / "j" / r["video"]).stat().st_size > 0 for r in rows)
    assert all(r["clip_score"] == i["clip_score"] for r, i in zip(rows, idx, strict=True))


def test_hugging_face_datasets_reads_the_shards(full, tmp_path, monkeypatch):
    monkeypatch.setenv("HF_DATASETS_OFFLINE", "1")
    from datasets import load_dataset

    out = full[0]
    m = S.manifest(out)
    files = {"train": [str(out / s.name) for s in m.shards]}
    ds = load_dataset("webdataset", data_files=files, split="train", cache_dir=tmp_path, features=hf_features(out))
    assert len(ds) == m.samples
    keys = [r["key"] for r in pq.read_table(out / S.INDEX).to_pylist()]
    assert ds["__key__"] == keys
    row = ds[0]
    assert row["json"]["clip_id"] == keys[0] and frame_count(row["mp4"]) > 0 and row["frame07.jpg"].size[0] > 0
    assert sum(r["wav"] is None for r in ds) == m.samples - m.fields["wav"]  # clips without audio have none


def test_readme_dataloader_runs(full):
    """The README's DataLoader, as written, over this run's shards."""
    out = full[0]
    text = (ROOT / "README.md").read_text()
    code = text[text.index("```python\nimport io, json, av") + 10 :]
    code = code[: code.index("```")].replace('"out/', f'"{out}/')
    env: dict = {}
    exec(compile(code, "README.md", "exec"), env)
    video, caps = next(iter(env["loader"]))
    assert tuple(video.shape) == (8, 8, 224, 224, 3) and len(caps) == 8
    assert any(caps) and all(isinstance(c, str) for c in caps)
