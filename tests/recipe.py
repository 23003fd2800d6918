"""The config of a small run with its own stages, for the tests that start pipelines."""

HEAD = """input: {input}
work_dir: {root}/work
output_dir: {root}/out
ray: {{num_cpus: 2, object_store_mb: {store}}}
stages:
"""


def recipe(root, stages: str, input=None, store: int = 128) -> str:
    """YAML over root/in.jsonl (or input), with work and out under root, a 2-CPU local Ray, and the stages' YAML
    (a list of `- name: ...` entries)."""
    return HEAD.format(input=input or f"{root}/in.jsonl", root=root, store=store) + stages.lstrip("\n")


# probe, split and extract, cheaply: the start of the recipes that cut clips
MEDIA = """
  - name: probe
    resources: {cpus: 0.25}
  - name: split
    min_clip_s: 0.5
    resources: {cpus: 0.5, actors: 1}
  - name: extract
    frames: 2
    frame_size: 32
    resources: {cpus: 0.5}
"""
