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
