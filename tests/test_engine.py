"""The engine's guards: one run per folder (the lock), a stage bug stops the run with one line (the failure
breaker, the runner's invariants), and stage contracts that fire at config load and at run time."""

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
from recipe import MEDIA, recipe

from mvid.pipeline.lock import NAME, Lock, LockError
from mvid.pipeline.runner import Runner
from mvid.pipeline.stage import Ctx, HaltError, Result, Stage, StageParams
from mvid.schemas import record as R
from mvid.stages import register

ROOT = Path(__file__).resolve().parents[1]
HOST = socket.gethostname()


def holder(folder: Path, **h) -> None:
    (folder / NAME).write_text(json.dumps({"host": HOST, "pid": 1, "process_start": 0.0, "started": "then", **h}))


def test_a_live_holder_is_named(tmp_path):
    with Lock(tmp_path), pytest.raises(LockError) as e:
        Lock(tmp_path).acquire()
    assert f"{tmp_path} is in use by another mvid run (host {HOST}, pid {os.getpid()}, started " in str(e.value)
    assert not (tmp_path / NAME).exists()  # released


def test_a_dead_holder_on_this_host_is_taken_over(tmp_path, caplog):
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    holder(tmp_path, pid=p.pid, token="dead")
    with Lock(tmp_path):
        assert json.loads((tmp_path / NAME).read_text())["pid"] == os.getpid()
    assert f"took over the lock on {tmp_path} from host {HOST}, pid {p.pid}" in caplog.text
    holder(tmp_path, pid=os.getpid(), process_start=1.0, token="reused")  # a pid now held by another process
    with Lock(tmp_path):
        assert json.loads((tmp_path / NAME).read_text())["token"] != "reused"


def test_a_holder_on_another_host_holds_its_lease_while_it_beats(tmp_path):
    holder(tmp_path, host="node-7", pid=99, token="far")
    with pytest.raises(LockError, match="host node-7, pid 99"):
        Lock(tmp_path, lease_s=60).acquire()
    old = time.time() - 61
    os.utime(tmp_path / NAME, (old, old))  # no beat for longer than the lease
    with Lock(tmp_path, lease_s=60):
        assert json.loads((tmp_path / NAME).read_text())["host"] == HOST


def test_a_lock_taken_over_is_noticed_before_the_output_is_written(tmp_path):
    lock = Lock(tmp_path, beat_s=0.05).acquire()
    lock.check()
    holder(tmp_path, host="node-7", pid=99, token="other")
    time.sleep(0.5)
    with pytest.raises(LockError, match=r"lost the lock on .* \(host node-7, pid 99"):
        lock.check()
    lock.release()
    assert (tmp_path / NAME).exists()  # the other run's lock stays


class ProbeLikeParams(StageParams):
    name: str = "test_invariant"


@register
class Wrong(Stage[ProbeLikeParams]):
    """A stage with a bug in its contract: it returns one result too few."""

    requires = ("clip_id", "frame_paths")

    def process_batch(self, recs):
        return [Result.ok(r) for r in recs[1:]]


def unit(clips: list[dict]):
    return R.table(
        [
            {
                "unit": "000000",
                "_k": "in",
                "videos": [{"video_id": "v", "path": "/v.mp4", "failed": False, "clips": clips, "rejects": []}],
            }
        ]
    )


def test_a_broken_invariant_stops_at_once_and_a_missing_column_is_recorded(tmp_path):
    run = lambda d: Runner(
        "test_invariant", Wrong.Params(batch_size=8).model_dump(), Ctx(tmp_path / d, tmp_path / "out"), "fp"
    )
    clips = [{"clip_id": f"v-{i:04d}", "frame_paths": ["f.jpg"]} for i in range(3)]
    with pytest.raises(HaltError, match="stage test_invariant returned 2 results for 3 inputs"):
        run("a")(unit(clips))
    one = [{"clip_id": "v-0000"}]  # frame_paths is null: the stage never sees the clip
    (v,) = run("b")(unit(one))["videos"].to_pylist()[0]
    assert v["clips"] == [] and [(j["code"], j["message"]) for j in v["rejects"]] == [
        ("missing_input", "needs columns ['frame_paths']")
    ]


BROKEN = """
from mvid.pipeline.stage import Result, Stage, StageParams
from mvid.stages import register


class BrokenParams(StageParams):
    name: str = "broken"


@register
class Broken(Stage[BrokenParams]):
    requires = ("clip_id",)

    def process_batch(self, recs):
        {body}
"""
STAGES = (
    MEDIA
    + """
  - name: broken
    resources: {cpus: 0.25}
  - name: shard
    videos: 1
"""
)


@pytest.mark.e2e
def test_a_stage_failing_on_every_item_stops_the_run_then_resumes_after_the_fix(tmp_path, cut_videos, mvid, invariants):
    (tmp_path / "plug").mkdir()
    plugin = tmp_path / "plug" / "broken_stage.py"
    plugin.write_text(BROKEN.format(body='raise KeyError("a bug on every item")'))
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"path": str(p)}) + "\n" for p, _ in cut_videos))
    head = "plugins: [broken_stage]\nbreaker: {min_items: 5}\n"
    (tmp_path / "r.yaml").write_text(head + recipe(tmp_path, STAGES))
    env = {**os.environ, "PYTHONPATH": str(tmp_path / "plug")}
    p = mvid("run", "--config", tmp_path / "r.yaml", check=False, env=env)
    last = p.stderr.strip().splitlines()[-1]
    assert p.returncode == 3 and "Traceback" not in p.stderr, p.stderr[-3000:]
    assert last.startswith("mvid: stopped: stage broken failed on ") and "(100%, over max_error_rate 0.2): " in last
    assert "KeyError " in last and any(f"e.g. {v}: KeyError: 'a bug on every item'" in last for v, _ in cut_videos)
    assert not (tmp_path / "out/manifest.json").exists() and not (tmp_path / "out/shards").exists()
    plugin.write_text(BROKEN.format(body="return [Result.ok(r) for r in recs]"))  # the fix
    p = mvid("run", "--config", tmp_path / "r.yaml", env=env)
    samples, fails = invariants(tmp_path / "out", [p for p, _ in cut_videos], tmp_path / "work")
    assert samples and not [f for f in fails if f["stage"] == "broken"]
    assert not (tmp_path / "work/breaker.json").exists()


@pytest.mark.e2e
def test_two_runs_on_one_folder(tmp_path, cut_videos, mvid, invariants):
    """The second exits 2 at once, naming the first; the first's output holds every clip once."""
    (tmp_path / "in.jsonl").write_text("".join(json.dumps({"path": str(p)}) + "\n" for p, _ in cut_videos))
    (tmp_path / "r.yaml").write_text(recipe(tmp_path, MEDIA + "  - name: shard\n"))
    cmd = [sys.executable, "-m", "mvid.pipeline.cli", "run", "--config", str(tmp_path / "r.yaml")]
    first = subprocess.Popen(cmd, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.time() + 120
        while not (tmp_path / "work" / NAME).exists() and time.time() < deadline:
            time.sleep(0.1)
        t = time.time()
        second = mvid("run", "--config", tmp_path / "r.yaml", check=False)
        assert time.time() - t < 30 and second.returncode == 2
        held = f"{tmp_path / 'work'} is in use by another mvid run (host {HOST}, pid {first.pid}, started "
        assert second.stderr.strip().splitlines()[-1].startswith(f"mvid: error: {held}")
        _, err = first.communicate(timeout=600)
    finally:
        first.kill()
    assert first.returncode == 0, err[-3000:]
    invariants(tmp_path / "out", [p for p, _ in cut_videos], tmp_path / "work")
    assert mvid("shards", "verify", tmp_path / "out").stdout.strip() == "ok"


def test_every_reason_code_is_documented():
    doc = (ROOT / "docs" / "reliability.md").read_text()
    assert [c for c in R.REASONS if f"`{c}`" not in doc] == []
