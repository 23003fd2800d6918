"""Config: profiles validate, overrides apply, and a bad key or value is named in the error."""

import contextlib
import json
import re

import pytest

from mvid.pipeline import config
from mvid.pipeline.config import ConfigError
from mvid.pipeline.executor import shortfall


@pytest.mark.parametrize("profile", ["demo", "production"])
def test_config_prints_every_parameter_of_every_stage(profile, tmp_path):
    """`mvid config` shows the whole validated config: each stage with all of its own parameters and models,
    and what it prints loads back as the same config."""
    from mvid.pipeline.cli import main
    from mvid.stages import REGISTRY

    out = tmp_path / "printed.json"
    with open(out, "w") as f, contextlib.redirect_stdout(f):
        assert main(["config", "--profile", profile, "--set", "stages.split.threshold=0.31"]) == 0
    printed = json.loads(out.read_text())
    for s in printed["stages"]:
        assert set(s) == set(REGISTRY[s["name"]].Params.model_fields), s["name"]
    assert next(s for s in printed["stages"] if s["name"] == "split")["threshold"] == 0.31
    (tmp_path / "again.yaml").write_text(out.read_text())  # JSON is YAML
    assert config.load(str(tmp_path / "again.yaml")) == config.load(profile, ["stages.split.threshold=0.31"])


def test_override_sets_stage_param():
    cfg = config.load("demo", ["stages.split.threshold=0.3", "output_dir=/tmp/x", "stages.extract.frames=4"])
    assert cfg.stage("split").threshold == 0.3
    assert cfg.stage("extract").frames == 4
    assert str(cfg.output_dir) == "/tmp/x"


@pytest.mark.parametrize(
    "override, named",
    [
        ("stages.split.threshold=1.5", "stages[1] (split): threshold"),
        ("stages.split.treshold=0.3", "treshold: Extra inputs are not permitted"),
        ("stages.extract.frames=0", "stages[2] (extract): frames"),
        ("stages.split.min_clip_s=6", "stages[1] (split): Value error, min_clip_s (6.0) must be at most"),
        ("colour=blue", "colour: Extra inputs are not permitted"),
        ("ray.num_cpus=0", "ray.num_cpus"),
        ("stages.split.resources.actors=[4,2]", "actors [min, max] needs min <= max"),
        ("stages.split.resources.actors=0", "resources.actors"),
        ("stages.split.resources.gpus=1.5", "above 1 it needs whole GPUs"),
        ("stages.nosuch.x=1", "no stage 'nosuch'"),
        ("threshold", "expected KEY=VALUE"),
    ],
)
def test_bad_config_names_the_key(override, named):
    with pytest.raises(ConfigError, match=re.escape(named)):
        config.load("demo", [override])


def test_bad_files(tmp_path):
    (tmp_path / "a.yaml").write_text("stages: [{name: probe}, {name: foo}, {name: shard}]")
    with pytest.raises(ConfigError, match=r"a.yaml: .*unknown stage 'foo'"):
        config.load(str(tmp_path / "a.yaml"))
    (tmp_path / "b.yaml").write_text("stages: [{name: probe}, {name: shard}, {name: split}]")
    with pytest.raises(ConfigError, match="must be the sink"):
        config.load(str(tmp_path / "b.yaml"))
    (tmp_path / "c.yaml").write_text("stages: [unclosed")
    with pytest.raises(ConfigError, match=r"c\.yaml: not valid YAML"):
        config.load(str(tmp_path / "c.yaml"))
    with pytest.raises(ConfigError, match="no such profile"):
        config.load("nosuch")


def test_a_stage_needing_a_column_no_earlier_stage_makes_fails_at_load(tmp_path):
    (tmp_path / "a.yaml").write_text("stages: [{name: probe}, {name: split}, {name: vcaption}, {name: shard}]")
    with pytest.raises(ConfigError, match=re.escape("stages[2] (vcaption) needs column 'frame_paths', which extract")):
        config.load(str(tmp_path / "a.yaml"))
    (tmp_path / "b.yaml").write_text(
        "stages: [{name: probe}, {name: split}, {name: extract}, {name: vcaption}, {name: shard}]"
    )
    assert [s.name for s in config.load(str(tmp_path / "b.yaml")).stages][3] == "vcaption"
    (tmp_path / "c.yaml").write_text("plugins: [no_such_module]\nstages: [{name: probe}, {name: shard}]")
    with pytest.raises(ConfigError, match="plugin 'no_such_module' does not import"):
        config.load(str(tmp_path / "c.yaml"))


def test_cli_reports_bad_config_without_traceback(mvid):
    p = mvid("run", "--set", "stages.split.threshold=7", check=False)
    assert p.returncode == 2
    assert "mvid: error:" in p.stderr and "threshold" in p.stderr
    assert "Traceback" not in p.stderr


def test_demo_fits_its_cpus_and_8_gb():
    """Actor pools hold their resources for the whole streaming run: the pools' minimums and the largest task must
    fit in the local Ray together, or Ray Data stalls; on fewer CPUs the shortfall is named."""
    cfg = config.load("demo")
    assert shortfall(cfg.stages, {"CPU": cfg.ray.num_cpus, "memory": 8 * 2**30}) == {}
    short = shortfall(cfg.stages, {"CPU": 1, "memory": 8 * 2**30})
    assert list(short) == ["CPU"] and short["CPU"][0] > 1 == short["CPU"][1]


def test_production_fits_an_8_gpu_node():
    """Every pool's minimum and the largest task start on one node (8 GPUs, 192 vCPUs, 2 TiB); every model stage
    and extract reserve host memory; GPU shares pack whole GPUs; a vLLM actor reserves no more GPU memory than
    its share."""
    from mvid.models.base import ModelSpec
    from mvid.stages import REGISTRY

    stages = config.load("production").stages
    assert shortfall(stages, {"GPU": 8, "CPU": 192, "memory": 2048 * 2**30}) == {}
    assert all(s.resources.memory_gb for s in stages if REGISTRY[s.name].uses_model or s.name == "extract")
    for s in stages:
        g = s.resources.gpus
        assert not g or (1 / g).is_integer(), (s.name, g)
        for spec in (v for _, v in s if isinstance(v, ModelSpec) and v.backend == "vllm"):
            o = spec.options
            assert o.get("gpu_memory_utilization", o.get("engine", {}).get("gpu_memory_utilization", 0.9)) <= g, s.name


def test_run_refuses_a_local_ray_too_small_for_its_pools(samples, tmp_path, mvid):
    """On a local Ray the check runs after Ray starts and before any stage: Ray Data would wait forever."""
    dest, _ = samples
    p = mvid(
        "run",
        "--input",
        dest / "inputs.jsonl",
        "--work",
        tmp_path / "w",
        "--out",
        tmp_path / "o",
        "--set",
        "ray.num_cpus=1",
        check=False,
    )
    assert p.returncode == 2, p.stderr
    assert "CPU needs 1.875, has 1;" in p.stderr and not (tmp_path / "w/stages").exists()
