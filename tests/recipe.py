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
