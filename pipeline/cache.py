"""Cache keys: what every cached thing (a stage's parts, the duplicate keys, the selection, the shards) was made
from, computed, never bumped by hand.

A stage's key covers its params and `version` (an explicit override), the code that shapes its output (its module
and every mvid module it imports, followed through imports, docstrings and comments left out), the versions of
the libraries that make its output, and each model's identity: its resolved device and dtype and its files (the
content of the small ones, the size, mtime and first and last MiB of the large ones). Each input video's size,
mtime and first and last MiB reach every key through the unit's digest (pipeline/inputs.py)."""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib.metadata
import importlib.util
import subprocess
import sys
from pathlib import Path

MIB = 1 << 20
SMALL = 16 * MIB  # files up to this size are hashed whole: configs, tokenizers, mvid-model.json
# Modules that run stages but do not shape what they make; package __init__ files are left out as well.
ENGINE = frozenset(
    {
        "mvid.pipeline.stage",
        "mvid.pipeline.runner",
        "mvid.pipeline.store",
        "mvid.pipeline.cache",
        "mvid.pipeline.config",
        "mvid.pipeline.executor",
        "mvid.pipeline.dag",
        "mvid.pipeline.cli",
        "mvid.pipeline.lock",
    }
)


def _file(name: str) -> str | None:
    """The source file of an mvid module: its loaded module's __file__, else where import would find it."""
    mod = sys.modules.get(name)
    if mod is not None:
        return getattr(mod, "__file__", None)
    spec = importlib.util.find_spec(name)
    return spec.origin if spec else None


def _docstring(node: ast.AST) -> bool:
    return isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str)


@functools.lru_cache(maxsize=512)
def _parsed(path: str, stamp: tuple[int, int]) -> tuple[str, tuple[str, ...]]:
    """A source file's code digest (its AST without docstrings) and the mvid modules it imports anywhere."""
    tree = ast.parse(Path(path).read_bytes())
    found: set[str] = set()
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if isinstance(body, list) and body and _docstring(body[0]):
            body[0] = ast.Pass()
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            found.update(f"{node.module}.{a.name}" for a in node.names)
            found.add(node.module)
    mods = tuple(sorted(m for m in found if m.startswith("mvid.")))
    return hashlib.sha1(ast.dump(tree).encode()).hexdigest(), mods


def _module(name: str) -> tuple[str, tuple[str, ...]] | None:
    """(code digest, imported mvid modules) of a module; None for what is not a module (a name imported from
    one) or is a package's __init__."""
    try:
        f = _file(name)
    except (ImportError, ValueError):
        return None
    if not f or not f.endswith(".py") or Path(f).name == "__init__.py":
        return None
    st = Path(f).stat()
    return _parsed(f, (st.st_size, st.st_mtime_ns))


def code(modules: list[str]) -> dict[str, str]:
    """Module -> code digest, for the modules given and every mvid module they import, ENGINE aside."""
    out: dict[str, str] = {}
    todo = list(modules)
    while todo:
        m = todo.pop()
        if m in out or m in ENGINE:
            continue
        found = _module(m)
        if found:
            out[m], imports = found
            todo += imports
    return dict(sorted(out.items()))


@functools.cache
def _ffmpeg() -> str:
    try:
        p = subprocess.run(["ffmpeg", "-version"], capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unavailable: {e}"
    return p.stdout.partition("\n")[0]


def libraries(names) -> dict[str, str]:
    """Distribution -> installed version ("ffmpeg": its version line), as this process sees them."""
    out = {}
    for n in sorted(set(names)):
        if n == "ffmpeg":
            out[n] = _ffmpeg()
            continue
        try:
            out[n] = importlib.metadata.version(n)
        except importlib.metadata.PackageNotFoundError:
            out[n] = "absent"
    return out


def ends(path: Path, size: int) -> str:
    """A digest of a file's first and last MiB."""
    h = hashlib.sha1()
    with open(path, "rb") as f:
        h.update(f.read(MIB))
        f.seek(max(0, size - MIB))
        h.update(f.read(MIB))
    return h.hexdigest()


def files(path: str) -> dict:
    """A model's identity from its files: small ones by content; large ones by size, mtime and first and last MiB.
    Hidden files (a hub download's .cache) are left out. A name that is no local path (a hub id) is itself."""
    p = Path(path)
    if not p.exists():
        return {"id": path}
    found = [p] if p.is_file() else sorted(f for f in p.rglob("*") if f.is_file())
    out = {}
    for f in found:
        rel = f.name if f == p else str(f.relative_to(p))
        if any(part.startswith(".") for part in Path(rel).parts):
            continue
        st = f.stat()
        if st.st_size <= SMALL:
            out[rel] = hashlib.sha1(f.read_bytes()).hexdigest()
        else:
            out[rel] = f"{st.st_size}:{st.st_mtime_ns}:{ends(f, st.st_size)}"
    return {"path": str(p.resolve()), "files": out}
