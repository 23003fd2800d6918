"""Bad inputs, hostile files and faults lose nothing and reach nothing.

The corpus is made here with ffmpeg and a few lines of Python (no committed binaries) and runs through the real
`mvid run` on a local Ray, with a cheap recipe (probe, split, extract, shard). While it runs, the split actor is
killed with SIGKILL and a loopback HTTP server counts the requests the hostile playlists could make. A killed
driver is covered by tests/test_e2e.py::test_resume_after_killed_driver_equals_uninterrupted, LLM prompt
injection by tests/test_fuse.py."""

import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import ClassVar

import psutil
import pytest
from recipe import recipe

from mvid.models.samples import frame_count
from mvid.pipeline.config import load
from mvid.pipeline.dag import Pipeline
from mvid.pipeline.executor import RayExecutor, RunError
from mvid.pipeline.runner import NOTES, Runner
from mvid.pipeline.stage import Ctx
from mvid.pipeline.store import Parts
from mvid.schemas import record as R
from mvid.schemas import shard as S

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
RECIPE = """
  - name: probe
    batch_size: 4
    max_duration_s: 4
    long_videos: {long}
    max_pixels: 100000
    resources: {{cpus: 0.25}}
  - name: split
    min_clip_s: 0.5
    resources: {{cpus: 1, actors: 1}}
  - name: extract
    frames: 2
    frame_size: 32
    resources: {{cpus: 1}}
  - name: shard
    videos: 1
"""
ODD_NAME = "-a name with 'quotes\", ünïcödé 視頻 and.dots.mp4"  # a leading '-', spaces, quotes, unicode, dots


def ff(*args) -> None:
    subprocess.run(
        ["ffmpeg", "-nostdin", "-hide_banner", "-loglevel", "error", "-y", *map(str, args)], check=True, timeout=60
    )


def video(path: Path, d: float = 2, size: str = "64x36", audio: bool = True, *extra) -> Path:
    a = ["-f", "lavfi", "-i", f"sine=f=440:d={d}", "-c:a", "aac", "-shortest"] if audio else []
    ff(
        "-f",
        "lavfi",
        "-i",
        f"testsrc2=s={size}:r=25:d={d}",
        *a,
        "-c:v",
        "libx264",
        "-preset",
        "ultrafast",
        "-pix_fmt",
        "yuv420p",
        *extra,
        path,
    )
    return path


def patched(src: Path, dest: Path, *swaps: tuple[bytes, bytes]) -> None:
    data = src.read_bytes()
    for old, new in swaps:
        assert data.count(old) == 1 and len(old) == len(new)
        data = data.replace(old, new)
    dest.write_bytes(data)
    src.unlink()


def make_corpus(d: Path, secret: Path, url: str) -> dict[str, str]:
    """Bad and hostile inputs in d; name -> the failure code it must get, or "ok" for the shards."""
    d.mkdir(parents=True)
    good = video(d / "good.mp4")
    video(secret, 2, "64x36", False, "-f", "mpegts")
    (d / "zero.mp4").write_bytes(b"")
    os.mkfifo(d / "fifo.mp4")  # a reader would wait for a writer forever
    data = video(d / "fs.mp4", 2, "64x36", True, "-movflags", "+faststart").read_bytes()
    (d / "truncated.mp4").write_bytes(data[: len(data) // 2])
    (d / "fs.mp4").unlink()
    data = good.read_bytes()
    (d / "no_moov.mp4").write_bytes(data[: data.index(b"moov") - 4])  # the moov box is the file's last
    (d / "text.mp4").write_text("not a video\n" * 40)
    ff("-f", "lavfi", "-i", "testsrc2=s=64x36", "-frames:v", "1", d / "image.png")
    (d / "image.png").rename(d / "image.mp4")
    ff("-f", "lavfi", "-i", "sine=d=2", "-c:a", "aac", d / "audio_only.mp4")
    video(d / "video_only.mp4", 2, "64x36", False)
    video(d / "one_frame.mp4", 2, "64x36", False, "-frames:v", "1")
    video(d / "short.mp4", 0.3)
    video(d / "long.mp4", 6)
    video(d / "vfr.mp4", 2, "64x36", False, "-vf", "setpts='if(lt(N,25),N*0.04,1+(N-25)*0.08)/TB'", "-fps_mode", "vfr")
    ff("-i", good, "-c", "copy", "-metadata:s:v:0", "rotate=90", d / "rotated.mp4")
    for size in ("1x1", "4001x3"):
        ff("-f", "lavfi", "-i", f"testsrc=s={size}:r=25:d=1", "-c:v", "ffv1", "-pix_fmt", "yuv444p", d / f"{size}.mkv")
    video(d / "over_limit.mp4", 1, "480x360")
    video(d / "ten_bit.mp4", 2, "64x36", False, "-pix_fmt", "yuv420p10le")
    # An audio stream no decoder reads (its codec id renamed) inside a good video.
    video(d / "a.mkv")
    patched(d / "a.mkv", d / "broken_audio.mkv", (b"A_AAC", b"A_QQQ"))
    # A decompression bomb: 8 kB of FFV1 whose Matroska PixelWidth (0xB0) and PixelHeight (0xBA) say 16000.
    ff("-f", "lavfi", "-i", "color=black:s=256x256:r=25:d=1", "-c:v", "ffv1", d / "b.mkv")
    patched(d / "b.mkv", d / "bomb.mkv", *[(i + b"\x82\x01\x00", i + b"\x82\x3e\x80") for i in (b"\xb0", b"\xba")])
    hls = "#EXTM3U\n#EXT-X-TARGETDURATION:2\n#EXTINF:2,\n{}\n#EXT-X-ENDLIST\n"
    (d / "hls_file.mp4").write_text(hls.format(f"file://{secret}"))
    (d / "hls_http.mp4").write_text(hls.format(f"{url}/seg.ts"))
    (d / "concat_file.mp4").write_text(f"ffconcat version 1.0\nfile '{secret}'\n")
    (d / "concat_http.mp4").write_text(f"ffconcat version 1.0\nfile '{url}/seg.ts'\n")
    video(d / ODD_NAME, 2.2)  # a copy of good.mp4 would be dropped as a duplicate of it
    video(d / "hostile_id.mp4", 2.4)
    video(d / "strip.mp4", 1, "4000x16", False)  # JPEG frames could not hold it
    video(d / "slow_fps.mp4", 4, "64x36", False, "-r", "0.5")
    video(d / "twin.mp4", 1.5)
    for n in ("twin_same_id.mp4", "twin_copy.mp4"):
        shutil.copy(d / "twin.mp4", d / n)
    return {
        "good.mp4": "ok",
        "zero.mp4": "empty_file",
        "fifo.mp4": "not_a_file",
        "truncated.mp4": "truncated",
        "no_moov.mp4": "unreadable",
        "text.mp4": "unreadable",
        "image.mp4": "not_a_video",
        "audio_only.mp4": "no_video_stream",
        "video_only.mp4": "ok",
        "one_frame.mp4": "too_short",
        "short.mp4": "too_short",
        "long.mp4": "too_long",
        "vfr.mp4": "ok",
        "rotated.mp4": "ok",
        "1x1.mkv": "too_small",
        "4001x3.mkv": "too_small",
        "over_limit.mp4": "too_large",
        "ten_bit.mp4": "ok",
        "broken_audio.mkv": "ok",
        "bomb.mkv": "too_large",
        "hls_file.mp4": "unsupported_format",
        "hls_http.mp4": "unsupported_format",
        "concat_file.mp4": "unsupported_format",
        "concat_http.mp4": "unsupported_format",
        "strip.mp4": "bad_aspect",
        "slow_fps.mp4": "low_fps",
        ODD_NAME: "ok",
        "hostile_id.mp4": "ok",
    }


class Watch(BaseHTTPRequestHandler):
    hits: ClassVar[list] = []

    def do_GET(self):
        Watch.hits.append(self.path)
        self.send_error(404)

    def log_message(self, *a):
        pass


def title(p: psutil.Process) -> str:
    try:
        return " ".join(p.cmdline())
    except psutil.Error:  # gone meanwhile (an ffmpeg that finished)
        return ""


def kill_split_actor(proc: subprocess.Popen, work: Path) -> int:
    """Once split has saved one video, SIGKILL the split actor's process; returns how many split had saved."""
    saved = lambda: len(list((work / "stages/split").glob("*.parquet")))
    deadline = time.time() + 300
    while not saved() and proc.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    actors = [
        p
        for p in psutil.Process(proc.pid).children(recursive=True)  # split is the recipe's only pool
        if "MapWorker(" in title(p)
    ]
    assert len(actors) == 1, actors
    n = saved()
    os.kill(actors[0].pid, signal.SIGKILL)
    return n


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("bad")
    server = HTTPServer(("127.0.0.1", 0), Watch)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    secret = root / "outside" / "secret.ts"
    secret.parent.mkdir()
    cases = make_corpus(root / "in", secret, f"http://127.0.0.1:{server.server_address[1]}")
    # (a row of the input list, the outcome it must get): every file above, then rows that are wrong as rows
    d = root / "in"
    rows = [(json.dumps({"path": str(d / n)}), code) for n, code in cases.items() if n != "hostile_id.mp4"]
    rows += [
        ('{"path": "in/good.mp4"}', "duplicate_input"),  # the same file again, relative to the list
        (json.dumps({"path": str(d / "missing.mp4")}), "missing_file"),
        (json.dumps({"path": str(d / "hostile_id.mp4"), "video_id": "../../out/shards/x.tar/../.."}), "ok"),
        (json.dumps({"path": str(d / "good.mp4"), "video_id": 123}), "bad_input_row"),
        ('{"path": "in/a\\u0000b.mp4"}', "bad_input_row"),
        (json.dumps({"path": str(d / "video_only.mp4"), "transcript": 5}), "bad_input_row"),
        ("{not json", "bad_input_row"),
        (json.dumps({"path": str(d / "twin.mp4"), "video_id": "twin"}), "ok"),
        (json.dumps({"path": str(d / "twin_same_id.mp4"), "video_id": "twin"}), "duplicate_video_id"),
        (json.dumps({"path": str(d / "twin_copy.mp4")}), "duplicate_content"),
    ]
    (root / "in.jsonl").write_text("".join(line + "\n" for line, _ in rows))
    (root / "recipe.yaml").write_text(recipe(root, RECIPE.format(long="refuse")))
    with open(root / "stdout", "w") as out, open(root / "stderr", "w") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "mvid.pipeline.cli", "run", "--config", root / "recipe.yaml"],
            cwd=ROOT,
            stdout=out,
            stderr=err,
            start_new_session=True,
        )
        try:
            killed_at = kill_split_actor(proc, root / "work")
            rc = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:  # the test failed: take the run and its Ray down with it
                os.killpg(proc.pid, signal.SIGKILL)
            server.shutdown()
    return dict(
        root=root,
        out=root / "out",
        rows=[code for _, code in rows],
        rc=rc,
        killed_at=killed_at,
        hits=list(Watch.hits),
        stdout=(root / "stdout").read_text(),
        stderr=(root / "stderr").read_text(),
    )


def test_bad_inputs_get_failure_records_and_the_run_goes_on(corpus, invariants, mvid):
    """Each row of the list gets its outcome: in the shards, or its one record with the right code; the run goes
    on past every bad file and bad row, and the summary and `mvid shards inspect` name them."""
    c = corpus
    assert c["rc"] == 0, c["stderr"][-3000:]
    samples, fails = invariants(c["out"], c["rows"], c["root"] / "work")
    shipped = {x["row"] for x in samples.values()}
    codes: dict[int, list] = {}
    for f in fails:
        codes.setdefault(f["row"], []).append(f)
    inspect = mvid("shards", "inspect", c["out"]).stdout
    named = 0
    for row, want in enumerate(c["rows"], 1):
        got = "ok" if row in shipped else sorted({f["code"] for f in codes[row]})
        assert got == want or got == [want], (row, want, codes.get(row))
        if row in shipped:
            continue
        f = codes[row][0]
        assert f["stage"] in ("input", "probe", "split") and f["message"]
        assert f"{f['path']}: {f['message']}" in inspect
        named += f["kind"] == "error" and f"{f['code']}: {f['path']}: {f['message']}\n" in c["stdout"]
    errors = sum(f["kind"] == "error" for f in fails)  # the summary names the first 20 failed files, and no more
    assert errors > 20 and named == 20 and "... more in failures/" in c["stdout"]
    assert "Traceback" not in c["stdout"] + c["stderr"]
    assert f"videos in: {len(c['rows'])}" in c["stdout"]
    short = [f for f in fails if f["code"] == "too_short"]  # each dropped shot has its own id
    assert short and len({f["id"] for f in short}) == len(short) and all(f["id"] != f["video_id"] for f in short)


def test_media_of_odd_but_good_videos(corpus):
    out = corpus["out"]
    import webdataset as wds

    metas = {}
    for s in wds.WebDataset(S.urls(out), shardshuffle=False):
        meta = json.loads(s["json"])
        metas[Path(meta["path"]).name] = (meta, s)
    meta, s = metas["broken_audio.mkv"]  # the video is kept, the audio failure recorded
    assert "wav" not in s and not meta["has_audio"] and meta["reasons"]["audio"] == "audio_failed"
    meta, _ = metas["rotated.mp4"]  # frames come out upright
    assert meta["probe"]["rotation"] == 90 and meta["frame_size"][1] > meta["frame_size"][0]
    for name in ("vfr.mp4", "ten_bit.mp4", "rotated.mp4"):
        meta, s = metas[name]
        assert frame_count(s["mp4"]) == meta["end_frame"] - meta["start_frame"], name


def test_hostile_files_read_and_fetch_nothing(corpus, invariants):
    c = corpus
    assert c["hits"] == []  # the playlists and concat lists pointing at the loopback server fetched nothing
    fails = list(S.failures(c["out"]))
    assert not any("secret" in json.dumps(f) for f in fails)
    # Nothing was written outside the work and output folders, whatever the names and ids.
    assert sorted(p.name for p in c["root"].iterdir()) == [
        "in",
        "in.jsonl",
        "out",
        "outside",
        "recipe.yaml",
        "stderr",
        "stdout",
        "work",
    ]
    assert sorted(p.name for p in (c["root"] / "outside").iterdir()) == ["secret.ts"]
    samples, _ = invariants(c["out"], c["rows"])
    meta = next(x for x in samples.values() if x["path"].endswith("/hostile_id.mp4"))  # given id ../../out/..
    assert meta["video_id"].startswith("out_shards_x_tar_") and meta["clip_id"].startswith(meta["video_id"])


def test_split_actor_killed_mid_run_every_clip_once(corpus, invariants):
    c = corpus
    split = len(list((c["root"] / "work/stages/split").glob("*.parquet")))
    assert c["killed_at"] < split, "split finished before its actor could be killed"
    invariants(c["out"], c["rows"], c["root"] / "work")


def test_verify_names_corrupt_and_missing_shards(corpus, tmp_path, mvid):
    out = tmp_path / "out"
    shutil.copytree(corpus["out"], out)
    shards = sorted((out / S.SHARD_DIR).glob("*.tar"))
    assert len(shards) >= 3
    data = bytearray(shards[0].read_bytes())
    data[700] ^= 0xFF
    shards[0].write_bytes(data)
    shards[1].unlink()
    p = mvid("shards", "verify", out, check=False)
    assert p.returncode == 1
    assert f"shards/{shards[0].name}: sha256 differs" in p.stdout and f"shards/{shards[1].name}: missing" in p.stdout


def test_oom_batch_is_split_then_recorded_per_item(tmp_path, monkeypatch):
    """A model that runs out of memory on any batch of more than one clip, and on one clip even alone."""
    import torch

    from mvid.models.lid import FastTextLID
    from mvid.stages.lid import LidParams

    texts = [
        "good morning everyone",
        "guten morgen zusammen",
        "buenos días a todos",
        "bonjour à tous",
        "buongiorno a tutti",
        "bom dia a todos",
        "goedemorgen allemaal",
        "god morgon alla",
    ]
    poison, calls, real = texts[5], [], FastTextLID.__call__

    def oom(self, batch):
        calls.append(len(batch))
        if len(batch) > 1 or batch == [poison]:
            raise torch.OutOfMemoryError("injected: CUDA out of memory")
        return real(self, batch)

    monkeypatch.setattr(FastTextLID, "__call__", oom)
    ctx = Ctx(tmp_path / "work", tmp_path / "out")
    t = Runner("lid", LidParams(batch_size=8).model_dump(), ctx, "fp")(unit(texts))
    (v,) = t["videos"].to_pylist()[0]
    assert calls[0] == 8 and calls.count(1) == 8  # halved down to single clips, each tried once alone
    # lid is a speech stage: the clip stays, without its S caption, and the oom counts for the breaker
    assert [c["clip_id"] for c in v["clips"]] == [f"v-{i:04d}" for i in range(8)] and not v["rejects"]
    bad = v["clips"][5]
    assert bad["lid"] is None and dict(bad["reasons"])["S"] == "lid_failed"
    assert all(c["lid"]["language"] for c in v["clips"] if c is not bad)
    assert json.loads(t[NOTES][0].as_py())["lid"]["errors"] == {"oom": 1}
    saved = R.rows(Parts(ctx.work, "lid").read("000000"))[0]["videos"][0]  # the part holds what came out
    assert saved == R.rows(R.table([{"unit": "000000", "_k": "", "videos": [v]}]))[0]["videos"][0]


def unit(texts: list[str]):
    """A unit of one video whose clips carry these transcripts."""
    clips = [{"clip_id": f"v-{i:04d}", "transcript": {"text": t}} for i, t in enumerate(texts)]
    return R.table(
        [
            {
                "unit": "000000",
                "_k": "in",
                "videos": [{"video_id": "v", "path": "/v.mp4", "failed": False, "clips": clips, "rejects": []}],
            }
        ]
    )


@pytest.fixture(scope="module")
def local(tmp_path_factory):
    """Two videos driven from this process (Pipeline on a local Ray): one plain, one longer than max_duration_s
    and capped."""
    root = tmp_path_factory.mktemp("local")
    (root / "in").mkdir()
    inputs = [video(root / "in/good.mp4"), video(root / "in/long.mp4", 6)]
    (root / "in.jsonl").write_text("".join(json.dumps({"path": str(p)}) + "\n" for p in inputs))
    (root / "recipe.yaml").write_text(recipe(root, RECIPE.format(long="cap")))
    pipe = Pipeline(load(str(root / "recipe.yaml")))
    pipe.run(RayExecutor(num_cpus=2, object_store_mb=256))
    return root, pipe, inputs


def test_long_video_capped_as_configured(local, invariants):
    root, _, inputs = local
    samples, _ = invariants(root / "out", inputs, root / "work")
    long = [x for x in samples.values() if x["path"].endswith("/long.mp4")]
    assert long and all(x["probe"]["capped_at"] == 4 for x in long)
    assert 3.5 < max(x["end"] for x in long) <= 4


FAULT = """
import errno, os
import mvid.pipeline.media
from mvid.schemas import shard as S


class DiskFull:
    def __init__(self, f, room):
        self.f, self.room = f, room

    def write(self, b):
        if len(b) > self.room:
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))
        self.room -= len(b)
        return self.f.write(b)

    def __getattr__(self, name):
        return getattr(self.f, name)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.f.close()


def disk_full():
    real = open
    mvid.pipeline.media.open = lambda p, *a, **k: (DiskFull(real(p, *a, **k), 1 << 13) if S.shard_name(1) in str(p)
                                            else real(p, *a, **k))
"""


def test_disk_full_while_writing_a_shard(local, invariants, tmp_path):
    """The fault goes into every Ray worker through a setup hook: shard 1's file fills the disk after 8 kB."""
    import ray

    (tmp_path / "faults.py").write_text(FAULT)
    root, pipe, inputs = local
    out = root / "out"
    before = json.loads((out / S.MANIFEST).read_text())
    assert len(before["shards"]) >= 2
    (out / S.SHARD_DIR / S.shard_name(1)).unlink()  # so that the rerun writes it again
    ray.shutdown()  # the shards are written in Ray workers: the fault goes in through a fresh Ray's setup hook
    path = os.pathsep.join([str(tmp_path), str(ROOT), os.environ.get("PYTHONPATH", "")])
    ray.init(
        num_cpus=2,
        include_dashboard=False,
        runtime_env={"env_vars": {"PYTHONPATH": path}, "worker_process_setup_hook": "faults.disk_full"},
    )
    try:
        with pytest.raises(RunError, match=f"No space left on device while writing shards/{S.shard_name(1)}"):
            pipe.run(RayExecutor())
    finally:
        ray.shutdown()
    # No manifest or shard list names the shard that could not be written.
    assert not [f for f in (S.MANIFEST, S.WIDS) if (out / f).exists()]
    assert [p.name for p in (out / S.SHARD_DIR).iterdir() if not p.name.endswith(".tar")] == []  # no temp file
    pipe.run(RayExecutor(num_cpus=2, object_store_mb=256))  # the rerun completes the output, as before the fault
    after = json.loads((out / S.MANIFEST).read_text())
    assert [s["sha256"] for s in after["shards"]] == [s["sha256"] for s in before["shards"]]
    invariants(out, inputs, root / "work")


MODEL_RECIPE = """
  - name: probe
    resources: {{cpus: 0.25}}
  - name: split
    resources: {{cpus: 0.25, actors: 1}}
  - name: extract
    resources: {{cpus: 0.25}}
  - name: {before}
    resources: {{cpus: 0.25}}
  - name: {stage}
    model: {{backend: {backend}, model: {model}}}
    resources: {{cpus: 0.25}}
  - name: shard
"""
BEFORE = {"clipscore": "fuse", "lid": "asr"}  # the stage that makes what it needs (captions, a transcript)


def model_run(tmp_path, mvid, stage, backend, model):
    """mvid run of probe, split, extract, the stage that feeds this one, the stage with this model, and shard over
    one small video (not checked)."""
    stages = MODEL_RECIPE.format(before=BEFORE[stage], stage=stage, backend=backend, model=model)
    (tmp_path / "r.yaml").write_text(recipe(tmp_path, stages, input=video(tmp_path / "v.mp4")))
    return mvid("run", "--config", tmp_path / "r.yaml", check=False)


def test_model_with_broken_files_stops_the_run_before_any_video(tmp_path, mvid):
    broken = tmp_path / "tiny-clip"
    broken.mkdir()
    (broken / "config.json").write_text('{"model_type": "clip",')
    p = model_run(tmp_path, mvid, "clipscore", "transformers", broken)
    assert p.returncode == 2 and "Traceback" not in p.stderr
    assert f"mvid: error: role 'clip' (transformers): {broken} has a config.json that is not valid JSON" in p.stderr
    assert "expected" in p.stderr and not (tmp_path / "work").exists()


def test_model_that_fails_to_load_in_its_actor_is_named(tmp_path, mvid):
    bad = tmp_path / "lid.176.bin"
    bad.write_bytes(b"not a fastText model")
    p = model_run(tmp_path, mvid, "lid", "fasttext", bad)
    # Ray logs the actor's failed constructor with its trace; mvid ends on the one line that says what to fix.
    assert p.returncode == 2 and p.stderr.strip().splitlines()[-1] == (
        f"mvid: error: stage lid: role 'lid' (fasttext) could not load {bad}: ValueError: {bad} has wrong file "
        f"format!; expected a fastText language-ID model (lid.176.ftz or lid.176.bin)"
    )


def test_input_that_kills_its_worker_is_recorded_not_retried_forever(tmp_path):
    """The fault: the worker process dies (os._exit) whenever its batch holds one poison transcript. Each run
    stands for Ray restarting the dead worker and retrying the batch."""
    from mvid.pipeline.runner import CRASHES

    ctx = Ctx(tmp_path / "work", tmp_path / "out")
    codes = [poisoned(ctx, "job1") for _ in range(CRASHES + 2)]
    assert codes[: codes.index(0) + 1] == [9] * CRASHES + [0]  # the batch, then the poison alone until given up
    (v,) = R.rows(Parts(ctx.work, "lid").read("000000"))[0]["videos"]
    assert [(j["id"], j["code"]) for j in v["rejects"]] == [("v-0001", "worker_crash")]
    assert [c["clip_id"] for c in v["clips"]] == ["v-0000", "v-0002", "v-0003"]
    assert not [p for p in (tmp_path / "work/attempts").rglob("*") if p.is_file()]  # stored: no attempt left open


def test_a_killed_driver_is_not_a_worker_crash(tmp_path):
    """Each death here comes with a new Ray job (a driver killed and started again): the starts of earlier
    drivers do not count, so no input is ever recorded as worker_crash, and the next clean run stores all."""
    from mvid.pipeline.runner import CRASHES

    ctx = Ctx(tmp_path / "work", tmp_path / "out")
    assert [poisoned(ctx, f"driver{i}") for i in range(CRASHES + 1)] == [9] * (CRASHES + 1)
    assert poisoned(ctx, "clean", poison=None) == 0
    (v,) = R.rows(Parts(ctx.work, "lid").read("000000"))[0]["videos"]
    assert not v["rejects"] and len(v["clips"]) == 4


TEXTS = ["good morning everyone", "guten morgen zusammen", "buenos días a todos", "bonjour à tous"]


def poisoned(ctx: Ctx, job: str, poison: str | None = TEXTS[1]) -> int:
    """Run the lid stage on one unit in a forked process that dies (os._exit(9)) when its batch holds the poison
    transcript, as Ray job `job`; its exit code."""
    import multiprocessing as mp

    from mvid.pipeline import runner
    from mvid.stages.lid import LidParams

    def worker():
        from mvid.models.lid import FastTextLID

        real = FastTextLID.__call__

        def die(self, batch):
            if poison in batch:
                os._exit(9)
            return real(self, batch)

        FastTextLID.__call__ = die
        runner.run_id = lambda: job
        Runner("lid", LidParams().model_dump(), ctx, "fp")(unit(TEXTS))

    p = mp.get_context("fork").Process(target=worker)
    p.start()
    p.join()
    return p.exitcode


def test_ray_start_is_retried_then_named_in_one_line(monkeypatch, tmp_path):
    """The fault: ray.init fails as it does on a loaded machine (the 30 s node start-up limit), once, then always."""
    import ray

    from mvid.pipeline import executor

    real, calls = ray.init, []

    def flaky(*a, **k):
        calls.append(1)
        if len(calls) == 1 or (not a and not k):
            raise Exception("The current node timed out during startup.")
        return real(*a, **k)

    ray.shutdown()
    monkeypatch.setattr(executor.time, "sleep", lambda s: None)
    monkeypatch.setattr(ray, "init", flaky)
    executor.RayExecutor(num_cpus=1, log_file=tmp_path / "ray.log")
    assert len(calls) == 2 and ray.is_initialized()
    ray.shutdown()
    monkeypatch.setattr(ray, "init", lambda *a, **k: flaky())  # fails every time
    with pytest.raises(executor.RunError) as e:
        executor.RayExecutor(num_cpus=1)
    assert str(e.value).startswith("could not start a local Ray (3 tries): Exception: The current node timed out")
    assert "\n" not in str(e.value) and "ray start --head" in str(e.value)
