"""The caption checks' cost (pipeline/captions.py), against the captioning stages' own time.

    python bench/captions.py [--run OUT/run.json] [--n 20000]

Times every check with the real fastText model over n captions drawn from tests/test_captions.py's good and bad
ones (the demo's captions vary as much), and reports microseconds per caption and seconds per 1,000. With a run's
run.json (`make pipeline` writes out/run.json) it adds each captioning stage's seconds per item there and the
checks' share of it (a stage checks one caption per item; fuse two)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT / "tests"))
CHECKED = {"vcaption": 1, "acaption": 1, "translate": 1, "fuse": 2}  # captions checked per item


def main() -> None:
    from test_captions import BAD, GOOD

    from mvid.models.lid import FastTextLID
    from mvid.models.vision import PROMPT
    from mvid.pipeline.captions import CaptionChecks, reason

    ap = argparse.ArgumentParser()
    ap.add_argument("--run", help="a run.json whose stage times to compare with")
    ap.add_argument("--n", type=int, default=20_000)
    a = ap.parse_args()
    texts = GOOD + [t for v in BAD.values() for t in v]
    lid, checks = FastTextLID(), CaptionChecks()
    lid.load()
    t = time.perf_counter()
    for i in range(a.n):
        text = texts[i % len(texts)]
        reason(text, checks, PROMPT, lid([text])[0])
    per = (time.perf_counter() - t) / a.n
    print(f"caption checks with fastText: {per * 1e6:.1f} us a caption, {per * 1000:.3f} s per 1,000 captions")
    if a.run:
        stages = json.loads(Path(a.run).read_text())["stages"]
        print("| stage | items | stage s / item | checks s / item | checks' share |")
        print("|---|---|---|---|---|")
        for name, k in CHECKED.items():
            s = stages.get(name)
            if s and s["items"]:
                item = s["seconds"] / s["items"]
                print(f"| {name} | {s['items']} | {item:.4f} | {k * per:.6f} | {k * per / item:.3%} |")


if __name__ == "__main__":
    main()
