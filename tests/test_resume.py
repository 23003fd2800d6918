"""The cache: a finished work folder runs nothing again, and a change to what a stage's output is made from (its
params, code, version, model files, or an input video) recomputes exactly that stage and the ones after it.
Counted from work/timings/, where every stage batch and every model load leaves a line.

The cache key reads a module's source from the file the module came from (pipeline/cache.py): a test edits a
module by pointing its __file__ at an edited copy, so that the running code stays as it was."""

import importlib
import json
import os
import shutil
from collections import Counter
from pathlib import Path
from unittest import mock

import pytest
from recipe import recipe

from mvid.pipeline import dag
from mvid.pipeline.config import load
from mvid.pipeline.dag import Pipeline
from mvid.pipeline.executor import RayExecutor

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPE = """
  - name: probe
    resources: {{cpus: 0.25}}
  - name: split
    min_clip_s: 0.5
    resources: {{cpus: 0.5, actors: 1}}
  - name: extract
    frames: 2
    frame_size: 32
    resources: {{cpus: 0.5}}
  - name: asr
    model: {{backend: faster-whisper, model: {asr}}}
    resources: {{cpus: 0.25, actors: 1}}
  - name: lid
    resources: {{cpus: 0.25, actors: 1}}
  - name: fuse
    llm: {{backend: transformers, model: tiny-llama, options: {{max_tokens: 8}}}}
    resources: {{cpus: 0.25, actors: 1}}
  - name: shard
    videos: 1
"""
STAGES = ("probe", "split", "extract", "asr", "lid", "fuse", "shard")


def counts(work) -> Counter:
    """(stage, batch or setup) -> lines in work/timings/."""
    return Counter(
        (p.parent.name, json.loads(x)["what"])
        for p in work.glob("timings/*/*.jsonl")
        for x in p.read_text().splitlines()
    )


def ran(before: Counter, after: Counter) -> set[str]:
    """The stages that ran a batch or loaded a model between two counts."""
    return {s for (s, _), n in (after - before).items() if n}


@pytest.fixture(scope="module")
def run(tmp_path_factory, cut_videos, weights):
    root = tmp_path_factory.mktemp("resume")
    (root / "in").mkdir()
    for p, _ in cut_videos:  # copies this test may replace
        shutil.copy(p, root / "in" / p.name)
    (root / "in.jsonl").write_text(
        "".join(json.dumps({"path": str(root / "in" / p.name)}) + "\n" for p, _ in cut_videos[:2])
    )
    shutil.copytree(weights / "tiny-faster-whisper", root / "asr")  # a model folder this test may touch
    (root / "recipe.yaml").write_text(recipe(root, RECIPE.format(asr=root / "asr"), store=256))
    ex = RayExecutor(num_cpus=2, object_store_mb=256)

    def go(*sets, batches=False):
        before = counts(root / "work")
        Pipeline(load(str(root / "recipe.yaml"), list(sets))).run(ex)
        after = counts(root / "work")
        return {s: n for (s, w), n in (after - before).items() if w == "batch"} if batches else ran(before, after)

    assert go() == set(STAGES)  # the first run runs everything
    return root, go


def edit(monkeypatch, tmp_path, module: str, old: str, new: str) -> None:
    """Point the module's __file__ at a copy of its source with `old` replaced by `new`."""
    mod = importlib.import_module(module)
    src = Path(mod.__file__).read_text()
    assert src.count(old) == 1, old
    copy = tmp_path / f"{module}.py"
    copy.write_text(src.replace(old, new))
    monkeypatch.setattr(mod, "__file__", str(copy))


def test_finished_folder_runs_no_batch_and_loads_no_model(run):
    root, go = run
    manifest = (root / "out/manifest.json").read_bytes()
    listing = (root / "work/inputs.json").stat().st_mtime_ns
    assert go() == set()
    assert (root / "out/manifest.json").read_bytes() == manifest
    assert (root / "work/inputs.json").stat().st_mtime_ns == listing  # the listing is not written again


def test_changed_param_recomputes_that_stage_and_after(run):
    _, go = run
    assert go("stages.extract.frames=3") == {"extract", "asr", "lid", "fuse", "shard"}
    assert go("stages.extract.frames=3") == set()


def test_changed_version_recomputes_that_stage_and_after(run, monkeypatch):
    from mvid.stages.asr import Asr

    _, go = run
    monkeypatch.setattr(Asr, "version", Asr.version + 1)
    assert go("stages.extract.frames=3") == {"asr", "lid", "fuse", "shard"}
    monkeypatch.undo()  # back as it was: the same stages again, and the next test starts from a finished folder
    assert go("stages.extract.frames=3") == {"asr", "lid", "fuse", "shard"}


def test_edited_prompt_recomputes_the_stages_that_use_it(run, monkeypatch, tmp_path):
    _, go = run
    edit(monkeypatch, tmp_path, "mvid.models.prompts", "and add nothing.", "and invent nothing.")
    assert go("stages.extract.frames=3") == {"fuse", "shard"}
    monkeypatch.undo()
    assert go("stages.extract.frames=3") == {"fuse", "shard"}


def test_edited_stage_source_recomputes_it_and_after_but_not_a_docstring(run, monkeypatch, tmp_path):
    _, go = run
    edit(monkeypatch, tmp_path, "mvid.stages.lid", '"""lid: fastText', '"""lid: the fastText')
    assert go("stages.extract.frames=3") == set()  # docstrings and comments are not the code
    edit(monkeypatch, tmp_path, "mvid.stages.lid", "todo = [r for r in recs if r", "todo = [r for r in list(recs) if r")
    assert go("stages.extract.frames=3") == {"lid", "fuse", "shard"}
    monkeypatch.undo()
    assert go("stages.extract.frames=3") == {"lid", "fuse", "shard"}


def test_model_folder_replaced_with_same_sizes_and_mtimes(run):
    root, go = run
    copy = root / "asr-copy"
    shutil.copytree(root / "asr", copy)  # copy2: the same mtimes
    cfg = copy / "config.json"
    text = cfg.read_text()
    i = text.index("1")  # one byte changed, the size kept
    st = cfg.stat()
    cfg.write_text(text[:i] + "2" + text[i + 1 :])
    os.utime(cfg, ns=(st.st_atime_ns, st.st_mtime_ns))
    shutil.rmtree(root / "asr")
    copy.rename(root / "asr")
    assert go("stages.extract.frames=3") == {"asr", "lid", "fuse", "shard"}


def test_source_video_replaced_at_its_path_recomputes_its_unit_only(run, cut_videos):
    root, go = run
    shutil.copy(cut_videos[2][0], root / "in" / cut_videos[1][0].name)
    assert go("stages.extract.frames=3", batches=True) == {s: 1 for s in STAGES}


def test_a_sealed_folder_is_current_until_what_made_its_output_changes(run):
    """`mvid run` starts no Ray on a folder whose last complete run sealed it (Pipeline.current); a changed stage
    key, a touched video, a removed output file or a rerun stage each break the seal."""
    root, go = run
    pipe = lambda *sets: Pipeline(load(str(root / "recipe.yaml"), ["stages.extract.frames=3", *sets]))
    go("stages.extract.frames=3")
    man = json.loads((root / "out/manifest.json").read_text())
    s = pipe().current()
    assert s and (s.videos, s.clips, s.shards) == (man["videos"], man["samples"], len(man["shards"]))
    assert pipe("stages.extract.frames=4").current() is None
    with mock.patch.object(dag, "SEALED", (*dag.SEALED, "seconds")):  # an mvid whose summary keeps more
        assert pipe().current() is None
    video = root / "in" / json.loads((root / "in.jsonl").read_text().splitlines()[0])["path"].rsplit("/", 1)[1]
    os.utime(video)  # its mtime and ctime: even set back, the ctime stays new
    assert pipe().current() is None
    assert "shard" in go("stages.extract.frames=3") and pipe().current()
    shard = root / "out" / man["shards"][0]["name"]
    data = shard.read_bytes()
    shard.unlink()
    assert pipe().current() is None
    assert go("stages.extract.frames=3") == {"shard"} and pipe().current()  # the shard written again, sealed
    assert shard.read_bytes() == data
    shard.write_bytes(data)  # the same bytes in a new file: not the file the seal saw
    assert pipe().current() is None
    assert go("stages.extract.frames=3") == set() and pipe().current()  # the sink keeps it: sealed again
    pipe().rerun(RayExecutor(num_cpus=2, object_store_mb=256), "lid", "all")
    assert pipe().current() is None
