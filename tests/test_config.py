"""Config: profiles validate, overrides apply, and a bad key or value is named in the error."""
import re

import pytest

from pipeline import config
from pipeline.config import ConfigError


@pytest.mark.parametrize("profile", ["demo", "production"])
def test_profiles_validate(profile):
    cfg = config.load(profile)
    assert cfg.profile == profile
    assert [s.name for s in cfg.stages][:3] == ["probe", "split", "extract"]
    assert cfg.stages[-1].name == "shard"


def test_override_sets_stage_param():
    cfg = config.load("demo", ["stages.split.threshold=0.3", "output_dir=/tmp/x", "stages.extract.frames=4"])
    assert cfg.stage("split").threshold == 0.3
    assert cfg.stage("extract").frames == 4
    assert str(cfg.output_dir) == "/tmp/x"


@pytest.mark.parametrize("override, named", [
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
])
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
    with pytest.raises(ConfigError, match="c.yaml: not valid YAML"):
        config.load(str(tmp_path / "c.yaml"))
    with pytest.raises(ConfigError, match="no such profile"):
        config.load("nosuch")


def test_cli_reports_bad_config_without_traceback(mvid):
    p = mvid("run", "--set", "stages.split.threshold=7", check=False)
    assert p.returncode == 2
    assert "mvid: error:" in p.stderr and "threshold" in p.stderr
    assert "Traceback" not in p.stderr


def pools(stages) -> list:
    """(stage params, the pool's minimum size) of every model stage."""
    from stages import REGISTRY
    return [(s, s.resources.actors if isinstance(s.resources.actors, int) else s.resources.actors[0])
            for s in stages if REGISTRY[s.name].uses_model]


def test_demo_pools_and_a_task_fit_its_cpus():
    """Actor pools hold their CPUs for the whole streaming run: the pools' minimums and the largest task must fit
    in the local Ray's CPUs together, or Ray Data stalls."""
    from stages import REGISTRY
    cfg = config.load("demo")
    kinds = {s.name: REGISTRY[s.name] for s in cfg.stages}
    task = max(s.resources.cpus for s in cfg.stages
               if not (kinds[s.name].uses_model or kinds[s.name].barrier or kinds[s.name].sink))
    assert sum(s.resources.cpus * n for s, n in pools(cfg.stages)) + task <= cfg.ray.num_cpus


def test_production_fits_an_8_gpu_node():
    """Every pool's minimum starts on one node (8 GPUs, 192 vCPUs); GPU shares pack whole GPUs; a vLLM actor
    reserves no more GPU memory than its share."""
    from models.base import ModelSpec
    stages = config.load("production").stages
    low = pools(stages)
    assert sum(s.resources.gpus * n for s, n in low) <= 8
    assert sum(s.resources.cpus * n for s, n in low) <= 192
    for s in stages:
        g = s.resources.gpus
        assert not g or (1 / g).is_integer(), (s.name, g)
        for spec in (v for _, v in s if isinstance(v, ModelSpec) and v.backend == "vllm"):
            o = spec.options
            assert o.get("gpu_memory_utilization", o.get("engine", {}).get("gpu_memory_utilization", 0.9)) <= g, s.name
