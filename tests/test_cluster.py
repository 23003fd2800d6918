"""The cluster files in docker/, and a multi-node Ray cluster on this machine (ray.cluster_utils: a head and
worker nodes, each its own raylet with its own resources), driven by `mvid run` and `mvid stage` through
RAY_ADDRESS as on a real cluster.

- split asks for a custom resource standing in for a GPU ("gpu_sim"): it runs only on the node that has it and
  the host memory split asks for (a second gpu_sim node has too little);
- a worker node is killed while it extracts clips: the run still writes every clip exactly once, and every input
  ends up in the shards or in the failure records.
Which node ran what comes from work/timings/ (pipeline/runner.py writes each batch's Ray node id there)."""

import json
import os
import shlex
import subprocess
import sys
import time
from collections import defaultdict
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import webdataset as wds
import yaml

from mvid.models.samples import make_cut_video
from mvid.schemas import record as R
from mvid.schemas import shard as S

pytestmark = [pytest.mark.e2e, pytest.mark.slow]

ROOT = Path(__file__).resolve().parents[1]
DOCKER = ROOT / "docker"
IMAGE = "REGISTRY/mvid:gpu"

MB = 2**20
STAGES = [
    {"name": "probe", "batch_size": 2, "resources": {"cpus": 0.5}},
    {
        "name": "split",
        "min_clip_s": 0.5,
        "max_clip_s": 3.0,
        "window_batch": 2,
        "threads": 1,
        "resources": {"cpus": 0.5, "actors": 1, "memory_gb": 0.5, "custom": {"gpu_sim": 1}},
    },
    {"name": "extract", "frames": 2, "frame_size": 32, "max_side": 96, "resources": {"cpus": 1, "memory_gb": 0.25}},
    {"name": "shard", "videos": 1},
]


@pytest.fixture(scope="module")
def cluster():
    from ray.cluster_utils import Cluster

    node = dict(object_store_memory=80 * MB, include_dashboard=False)
    c = Cluster(initialize_head=True, head_node_args={**node, "num_cpus": 0})  # the driver's node: no work
    yield c, node
    c.shutdown()


@pytest.fixture(scope="module")
def inputs(tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster_in")
    paths = [d / f"v{i}.mp4" for i in range(6)]
    for i, p in enumerate(paths):
        make_cut_video(p, [30 + 5 * i, 40], size=(96, 64), audio="noise" if i % 2 else None, start=i)
    bad = d / "bad.mp4"
    bad.write_text("not a video")
    lst = d / "in.jsonl"
    lst.write_text("".join(json.dumps({"path": str(p)}) + "\n" for p in [*paths, bad]))
    return lst, len(paths) + 1, bad


def timings(work, stage) -> list[dict]:
    """The stage's timing lines, each with "at": (file, line) to tell runs apart."""
    return [
        {**json.loads(x), "at": (p.name, i)}
        for p in (work / "timings" / stage).glob("*.jsonl")
        for i, x in enumerate(p.read_text().splitlines())
    ]


def test_custom_resource_placement_and_node_loss(cluster, inputs, tmp_path, mvid, persisted):
    c, node = cluster
    gpu = c.add_node(num_cpus=1, resources={"gpu_sim": 1}, **node)  # split's actor: 0.5 CPU + gpu_sim
    small = c.add_node(num_cpus=1, resources={"gpu_sim": 1}, memory=128 * MB, **node)  # RAM for neither
    victim = c.add_node(num_cpus=1, **node)  # the only node with a free CPU and RAM for extract: it starts here
    lst, n_inputs, bad = inputs
    work, out = tmp_path / "work", tmp_path / "out"
    cfg = tmp_path / "cluster.yaml"
    cfg.write_text(yaml.safe_dump({"input": str(lst), "work_dir": str(work), "output_dir": str(out), "stages": STAGES}))
    env = {**os.environ, "RAY_ADDRESS": c.address}
    run = subprocess.Popen(
        [sys.executable, "-m", "mvid.pipeline.cli", "run", "--config", cfg],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    # Once the victim has extracted a batch, a fresh node joins and the victim is killed mid-run.
    while not any(t["node"] == victim.node_id for t in timings(work, "extract") if t["what"] == "batch"):
        assert run.poll() is None, run.stdout.read()
        time.sleep(0.2)
    spare = c.add_node(num_cpus=1, **node)
    c.remove_node(victim, allow_graceful=False)
    assert not (out / S.MANIFEST).exists(), "the run finished before the node was removed"
    log, _ = run.communicate()
    assert run.returncode == 0, log

    ran = defaultdict(set)
    for stage in ("probe", "split", "extract", "shard"):
        for t in timings(work, stage):
            ran[stage].add(t["node"])
    assert ran["split"] == {gpu.node_id}  # the only node with gpu_sim and 0.5 GB
    assert victim.node_id in ran["extract"]
    assert ran["extract"] <= {victim.node_id, spare.node_id, gpu.node_id}
    assert small.node_id not in ran["split"] | ran["extract"]  # too little memory for either
    assert all(t["rss_mb"] > 50 for t in timings(work, "split"))  # a torch process's peak RSS

    # Every clip split made is in the shards exactly once; every input is in the shards or in the failure records.
    clips = sorted(persisted[1](work, "split"))
    m = json.loads((out / S.MANIFEST).read_text())
    keys = [s["__key__"] for s in wds.WebDataset(S.urls(out), shardshuffle=False)]
    assert len(clips) >= n_inputs
    assert sorted(keys) == clips
    fails = list(S.failures(out))
    assert {f["path"] for f in fails if f["kind"] == "error"} == {str(bad)}
    shipped = {json.loads(s["json"])["video_id"] for s in wds.WebDataset(S.urls(out), shardshuffle=False)}
    assert len(shipped | {f["video_id"] for f in fails}) == n_inputs == m["videos"]

    # A stage rerun on the cluster: `mvid stage` joins it through RAY_ADDRESS and keeps split on the gpu_sim node;
    # it runs only the unit that holds the video.
    vid = next(iter(persisted[0](work, "split")))
    unit = next(
        u["unit"]
        for p in (work / "stages/split").glob("*.parquet")
        for u in R.rows(pq.read_table(p))
        if any(v["video_id"] == vid for v in u["videos"])
    )
    before = {t["at"] for t in timings(work, "split")}
    mvid("stage", "split", "--config", cfg, "--ids", vid, env=env)
    again = [t for t in timings(work, "split") if t["at"] not in before]
    assert [t["keys"] for t in again if t["what"] == "batch"] == [[unit]]
    assert {t["node"] for t in again} == {gpu.node_id}


def test_launcher_config_is_valid():
    from ray.autoscaler._private.util import prepare_config, validate_config

    cfg = yaml.safe_load((DOCKER / "cluster.yaml").read_text())
    validate_config(prepare_config(cfg))  # what `ray up` checks: Ray's schema, node types, worker counts
    assert cfg["docker"]["image"] == IMAGE
    assert "--volume /mnt/shared:/mnt/shared" in cfg["docker"]["run_options"]


def test_rayjob_runs_the_production_profile(mvid):
    import ray

    job = yaml.safe_load((DOCKER / "rayjob.yaml").read_text())
    assert (job["apiVersion"], job["kind"]) == ("ray.io/v1", "RayJob")
    spec = job["spec"]["rayClusterSpec"]
    assert spec["rayVersion"] == ray.__version__
    pods = [g["template"]["spec"] for g in [spec["headGroupSpec"], *spec["workerGroupSpecs"]]]
    for pod in pods:
        (c,) = pod["containers"]
        assert c["image"] == IMAGE and {"name": "shared", "mountPath": "/mnt/shared"} in c["volumeMounts"]
        assert {"name": "shared", "persistentVolumeClaim": {"claimName": "mvid-shared"}} in pod["volumes"]
    assert pods[1]["containers"][0]["resources"]["limits"]["nvidia.com/gpu"] == 8
    argv = shlex.split(job["spec"]["entrypoint"])
    assert argv[:2] == ["mvid", "run"]
    cfg = json.loads(mvid("config", *argv[2:]).stdout)  # the entrypoint's arguments parse and the config validates
    assert cfg["profile"] == "production"
    assert all(cfg[k].startswith("/mnt/shared/") for k in ("input", "work_dir", "output_dir"))
