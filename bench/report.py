"""Shared by the benchmarks: write one section of docs/benchmarks.md, replacing its previous text."""

from __future__ import annotations

import re
from pathlib import Path

DOC = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def write_section(heading: str, text: str) -> None:
    old = DOC.read_text() if DOC.exists() else "# Benchmarks\n"
    body = f"{heading}\n\n{text.strip()}\n"
    pat = re.compile(rf"^{re.escape(heading)}\n.*?(?=^## |\Z)", re.S | re.M)
    new = pat.sub(lambda _: body + "\n", old) if pat.search(old) else old.rstrip("\n") + "\n\n" + body
    DOC.parent.mkdir(exist_ok=True)
    DOC.write_text(new.rstrip("\n") + "\n")
