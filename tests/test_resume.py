"""The cache: a finished work folder runs nothing again, and a change to a stage's params, code version or model
files recomputes exactly that stage and the ones after it. Counted from work/timings/, where every stage batch
and every model load leaves a line."""

import json
import shutil
from collections import Counter

import pytest
from recipe import recipe

from mvid.pipeline.config import load
from mvid.pipeline.dag import Pipeline
from mvid.pipeline.executor import RayExecutor

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

RECIPE = """
  - name: probe
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
  - name: shard
    videos: 1
"""
STAGES = ("probe", "split", "extract", "asr", "lid", "shard")


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
    (root / "in.jsonl").write_text("".join(json.dumps({"path": str(p)}) + "\n" for p, _ in cut_videos[:2]))
    shutil.copytree(weights / "tiny-faster-whisper", root / "asr")  # a model folder this test may touch
    (root / "recipe.yaml").write_text(recipe(root, RECIPE.format(asr=root / "asr"), store=256))
    ex = RayExecutor(num_cpus=2, object_store_mb=256)

    def go(*sets):
        before = counts(root / "work")
        Pipeline(load(str(root / "recipe.yaml"), list(sets))).run(ex)
        return ran(before, counts(root / "work"))

    assert go() == set(STAGES)  # the first run runs everything
    return root, go


def test_finished_folder_runs_no_batch_and_loads_no_model(run):
    root, go = run
    manifest = (root / "out/manifest.json").read_bytes()
    assert go() == set()
    assert (root / "out/manifest.json").read_bytes() == manifest


def test_changed_param_recomputes_that_stage_and_after(run):
    _, go = run
    assert go("stages.extract.frames=3") == {"extract", "asr", "lid", "shard"}
    assert go("stages.extract.frames=3") == set()


def test_changed_version_recomputes_that_stage_and_after(run, monkeypatch):
    from mvid.stages.asr import Asr

    _, go = run
    monkeypatch.setattr(Asr, "version", Asr.version + 1)
    assert go("stages.extract.frames=3") == {"asr", "lid", "shard"}


def test_changed_model_file_recomputes_that_stage_and_after(run):
    root, go = run
    cfg = root / "asr" / "config.json"
    cfg.write_text(cfg.read_text() + "\n")  # same model, new file: its fingerprint changes
    assert go("stages.extract.frames=3") == {"asr", "lid", "shard"}
