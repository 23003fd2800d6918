"""`mvid report`: one self-contained HTML page about an output folder: totals, plots and a gallery of clips.

Reads the manifest, the run file, the index and the failure files, plus the gallery's own samples (from the
shards, and for dropped clips from the work folder when it is still there): its cost does not grow with the
corpus beyond those files. Plots are matplotlib SVGs and media are inline data URIs: the page needs no network
and no other file."""

from __future__ import annotations

import base64
import hashlib
import heapq
import html
import io
import json
import subprocess
import tempfile
from collections import Counter, defaultdict
from pathlib import Path

import numpy as np
import pyarrow.parquet as pq

from mvid.pipeline.store import Parts
from mvid.schemas import record as R
from mvid.schemas import shard as S

E = html.escape
TYPES = R.CAPTION_TYPES
# ffmpeg: a small silent preview (VP9 in WebM, 240 px high, at most 8 s) and the audio as Opus in Ogg.
PREVIEW = ["-t", "8", "-an", "-vf", "scale=-2:240", "-c:v", "libvpx-vp9", "-b:v", "150k", "-deadline", "realtime"]
PREVIEW += ["-cpu-used", "8", "-f", "webm"]
AUDIO = ["-t", "8", "-vn", "-c:a", "libopus", "-b:a", "24k", "-f", "ogg"]


def uri(data: bytes, mime: str) -> str:
    return f"data:{mime};base64,{base64.b64encode(data).decode()}"


def plot(fig) -> str:
    """A matplotlib figure as an inline SVG <img>."""
    import matplotlib.pyplot as plt

    buf = io.StringIO()
    fig.savefig(buf, format="svg", bbox_inches="tight")
    plt.close(fig)
    return f'<img class="plot" alt="" src="{uri(buf.getvalue().encode(), "image/svg+xml")}">'


def figure(w: float = 5.2, h: float = 2.8):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    plt.rcParams.update({"font.size": 9, "axes.spines.top": False, "axes.spines.right": False, "svg.fonttype": "none"})
    return plt.subplots(figsize=(w, h))


def bars(counts: dict, title: str, xlabel: str = "clips", empty: str = "none") -> str:
    """A horizontal bar chart of counts; a line of text when there is nothing to count."""
    if not any(counts.values()):
        return f'<div class="noplot"><b>{E(title)}</b><p>{E(empty)}</p></div>'
    fig, ax = figure(5.2, 0.5 + 0.28 * max(len(counts), 1))
    names = list(counts)[::-1]
    ax.barh(names, [counts[k] for k in names], color="#4c72b0")
    for i, k in enumerate(names):
        ax.text(counts[k], i, f" {counts[k]}", va="center", fontsize=8)
    ax.set_title(title, loc="left")
    ax.set_xlabel(xlabel)
    return plot(fig)


def table(head: list[str], rows: list[list], cls: str = "") -> str:
    h = "".join(f"<th>{E(x)}</th>" for x in head)
    b = "".join("<tr>" + "".join(f"<td>{E(str(x))}</td>" for x in r) + "</tr>" for r in rows)
    return f'<table class="{cls}"><thead><tr>{h}</tr></thead><tbody>{b}</tbody></table>'


class Hist:
    """Counts over fixed fine bins, filled a batch at a time (memory does not grow with the values); shown merged
    into at most `show` bins over the range that holds values."""

    def __init__(self, lo: float, hi: float, n: int):
        self.edges = np.linspace(lo, hi, n + 1)
        self.counts = np.zeros(n, np.int64)

    def add(self, values) -> None:
        v = np.asarray(values, float)
        v = v[~np.isnan(v)]
        self.counts += np.histogram(np.clip(v, self.edges[0], self.edges[-1]), self.edges)[0]

    def quantiles(self, qs) -> list[float]:
        cum = np.cumsum(self.counts)
        return [float(self.edges[min(np.searchsorted(cum, q * cum[-1]), len(self.counts) - 1)]) for q in qs]


def shown(hists: list[Hist], show: int = 30) -> tuple[np.ndarray, list[np.ndarray]]:
    """The edges and counts of histograms with the same bins, over the range where any holds values, merged into
    at most `show` bins."""
    total = sum(h.counts for h in hists)
    nz = np.flatnonzero(total)
    a, b = (nz[0], nz[-1] + 1) if len(nz) else (0, 1)
    k = -(-(b - a) // show)  # fine bins per shown bin
    cs = [np.pad(h.counts[a:b], (0, -(b - a) % k)).reshape(-1, k).sum(1) for h in hists]
    e = hists[0].edges
    return e[0] + (a + np.arange(len(cs[0]) + 1) * k) * (e[1] - e[0]), cs


def bottom(heap: list, k: int, key: str, item: dict) -> None:
    """Keep the k items with the smallest hash of `key` (a deterministic, uniform sample of a stream)."""
    h = -int.from_bytes(hashlib.blake2b(key.encode(), digest_size=8).digest(), "big")
    if len(heap) < k:
        heapq.heappush(heap, (h, key, item))
    elif h > heap[0][0]:
        heapq.heapreplace(heap, (h, key, item))


SAMPLE = 4096  # kept and dropped clips that the gallery is picked from


class Stats:
    """What the page shows, from the index and failure files one file at a time."""

    def __init__(self):
        self.duration = Hist(0, 600, 2400)
        self.kept, self.dropped = Hist(-1, 1, 2000), Hist(-1, 1, 2000)
        self.words = {k: Hist(0, 1000, 1000) for k in TYPES}
        self.langs: Counter = Counter()
        self.translators: Counter = Counter()
        self.reasons: Counter = Counter()  # (stage, code, kind) -> records
        self.cut: float | None = None  # the lowest kept score
        self.pool: dict[str, list] = {"kept": [], "dropped": []}

    def index(self, t) -> None:
        self.duration.add(t["duration"].to_numpy(zero_copy_only=False))
        sc = t["clip_score"].drop_null().to_numpy()
        self.kept.add(sc)
        if len(sc):
            self.cut = min(self.cut if self.cut is not None else np.inf, float(sc.min()))
        self.langs.update(x for x in t["language"].to_pylist() if x)
        self.translators.update(x for x in t["translator"].to_pylist() if x)
        for k in TYPES:
            self.words[k].add(t[f"words_{k}"].drop_null().to_numpy())
        for r in t.select(["key", "video_id", "clip_score", "shard"]).to_pylist():
            bottom(self.pool["kept"], SAMPLE, r["key"], {**r, "score": r["clip_score"]})

    def failure(self, j: dict, unit: str) -> None:
        self.reasons[j["stage"], j["code"], j["kind"]] += 1
        if j.get("clip_score") is not None and j["kind"] == "drop":
            self.dropped.add([j["clip_score"]])
            bottom(self.pool["dropped"], SAMPLE, j["id"], {**j, "key": j["id"], "score": j["clip_score"], "unit": unit})

    @classmethod
    def read(cls, out: Path) -> Stats:
        st = cls()
        for p in sorted((out / S.INDEX).glob("*.parquet")):
            st.index(pq.read_table(p, schema=S.INDEX_SCHEMA))
        for p in sorted((out / S.FAILURES).glob("*.jsonl")):
            with open(p) as f:
                for line in f:
                    st.failure(json.loads(line), p.stem.removeprefix("mvid-"))
        return st


def pick(kept: list[dict], dropped: list[dict], n: int) -> list[dict]:
    """n clips spread over the score range and over videos, a share of them dropped ones (at least a quarter of
    n when there are that many). Deterministic: the same folder gives the same gallery."""
    nd = min(len(dropped), max(n // 4, round(n * len(dropped) / max(len(kept) + len(dropped), 1))), n)
    out = []
    for pool, k in ((kept, n - nd), (dropped, nd)):
        pool = sorted(pool, key=lambda c: (-(c["score"] if c["score"] is not None else -9), c["key"]))
        seen: Counter = Counter()
        for chunk in np.array_split(np.arange(len(pool)), min(k, len(pool))) if k and pool else []:
            c = min((pool[i] for i in chunk), key=lambda c: (seen[c["video_id"]], c["key"]))
            seen[c["video_id"]] += 1
            out.append(c)
    return out


def preview(mp4: bytes, args: list[str]) -> bytes | None:
    """An ffmpeg re-encode of a clip for the page (PREVIEW, AUDIO); None when ffmpeg cannot."""
    with tempfile.NamedTemporaryFile(suffix=".mp4") as f, tempfile.NamedTemporaryFile() as o:
        f.write(mp4)
        f.flush()
        # To a file, not a pipe: the muxer seeks back to write the real duration (to a pipe it writes -t's).
        r = subprocess.run(["ffmpeg", "-v", "error", "-i", f.name, *args, "-y", o.name], capture_output=True)
        data = Path(o.name).read_bytes()
    return data if r.returncode == 0 and data else None


def gallery_media(out: Path, run: S.Run | None, picks: list[dict]) -> None:
    """Fill each pick's `rec` (its sample json) and `media` ({ext: bytes}): kept clips from their shards, dropped
    ones from the work folder's media tars and the last stream stage's parts, when they are still there."""
    by_shard = defaultdict(list)
    for c in picks:
        if c.get("shard"):
            by_shard[c["shard"]].append(c)
    for shard, cs in by_shard.items():
        want = {c["key"]: c for c in cs}
        for key, media in S.samples(out / shard, set(want)):
            if key in want:
                want[key]["rec"] = json.loads(media.pop("json"))
                want[key]["media"] = media
    work = Path(run.work_dir) if run else None
    stream = [s for s in (run.stages if run else {}) if s not in ("select", "shard")]
    if not (work and work.exists() and stream):
        return
    from mvid.pipeline.media import Media
    from mvid.pipeline.stage import Ctx

    parts, ctx = Parts(work, stream[-1]), Ctx(work, out)
    with Media(work) as md:
        for c in picks:
            if c.get("shard") or not parts.path(c["unit"]).exists():
                continue
            unit = R.rows(parts.read(c["unit"]))[0]
            for v in unit["videos"]:
                for clip in v["clips"] if v["video_id"] == c["video_id"] else []:
                    if clip["clip_id"] == c["key"]:
                        c["rec"] = {**{k: x for k, x in v.items() if k not in ("clips", "rejects")}, **clip}
            tar = str(ctx.media(c["video_id"]).relative_to(work))
            rec = c.get("rec") or {}
            try:
                c["media"] = {e: md.read(tar, m) for e, m in S.members(rec).items()} if rec else {}
            except (OSError, KeyError):  # the work folder was cleaned
                c["media"] = {}


def card(c: dict, sources: dict) -> str:
    rec, media = c.get("rec") or {}, c.get("media") or {}
    frames = [media[k] for k in sorted(media) if k.startswith("frame")]
    frames = [frames[i] for i in sorted({round(i * (len(frames) - 1) / 3) for i in range(4)})] if frames else []
    strip = "".join(f'<img class="frame" alt="frame" src="{uri(f, "image/jpeg")}">' for f in frames)
    vid = preview(media["mp4"], PREVIEW) if "mp4" in media else None
    aud = preview(media["mp4"], AUDIO) if rec.get("has_audio") and "mp4" in media else None
    play = f'<video controls muted loop preload="metadata" src="{uri(vid, "video/webm")}"></video>' if vid else ""
    sound = f'<audio controls preload="none" src="{uri(aud, "audio/ogg")}"></audio>' if aud else ""
    caps, reasons, models = rec.get("captions") or {}, rec.get("reasons") or {}, rec.get("models") or {}

    def who(field: str) -> str:
        m = models.get(field) or (field == "S" and (models.get("translation") or models.get("transcript")))
        if not m:
            return ""
        tiny = "random" in sources.get(m, {}).get("license", "")
        label = f"{E(m)} (random)" if tiny else E(m)
        return f' <span class="model{" tiny" if tiny else ""}" title="made by {E(m)}">{label}</span>'

    rows = "".join(
        f"<tr><th>{k}</th><td>{E(caps[k])}{who(k)}</td></tr>"
        if caps.get(k)
        else f'<tr><th>{k}</th><td class="missing">missing: {E(reasons.get(k) or "not made")}</td></tr>'
        for k in TYPES
    )
    tr, lid, tx = rec.get("transcript") or {}, rec.get("lid") or {}, rec.get("translation") or {}
    speech = (
        f'<p class="speech">“{E(tr.get("text", "")[:300])}” · {E(str(lid.get("language", "?")))} '
        f"({lid.get('confidence', 0):.2f}) · translator: {E(str(tx.get('translator', '-')))}</p>"
        if tr.get("text")
        else f'<p class="speech missing">no speech: {E(reasons.get("transcript") or reasons.get("S") or "none")}</p>'
    )
    score = "-" if c["score"] is None else f"{c['score']:.3f}"
    per = ", ".join(f"{k} {v:.3f}" for k, v in sorted((rec.get("clip_scores") or {}).items()))
    score += f" ({E(per)})" if per else ""
    state = (
        '<span class="badge kept">kept</span>'
        if c.get("shard")
        else f'<span class="badge dropped">dropped: {E(c.get("code", ""))}</span>'
    )
    span = f"{rec['start']:.1f}–{rec['end']:.1f} s" if "start" in rec else ""
    return (
        f'<div class="card{"" if c.get("shard") else " drop"}" data-key="{E(c["key"])}">'
        f"<h3>{E(c['key'])} {state}</h3>"
        f'<p class="meta">score {score} · {span} · {E(str(rec.get("path", c.get("path", ""))).rsplit("/", 1)[-1])}</p>'
        f'<div class="strip">{strip or "<em>media not kept</em>"}</div>{play}{sound}{speech}'
        f'<table class="caps">{rows}</table></div>'
    )


CSS = """
body{font:14px/1.45 system-ui,sans-serif;margin:0;color:#1d2430;background:#f6f7f9}
header{background:#1d2430;color:#fff;padding:18px 32px}header h1{margin:0;font-size:22px}
header p{margin:4px 0 0;color:#b8c2d0}main{padding:8px 32px 40px;max-width:1400px}
section{background:#fff;border-radius:8px;padding:12px 20px 18px;margin:16px 0;box-shadow:0 1px 2px #0001}
h2{font-size:17px;margin:6px 0 12px}.tiles{display:flex;flex-wrap:wrap;gap:12px}
.tile{background:#eef2f7;border-radius:6px;padding:8px 14px;min-width:120px}.tile b{display:block;font-size:20px}
.plots{display:flex;flex-wrap:wrap;gap:16px}.plot{max-width:100%;height:auto}
table{border-collapse:collapse;margin:6px 0}td,th{padding:3px 10px;text-align:left;border-bottom:1px solid #e3e7ee}
th{font-weight:600}.gallery{display:grid;grid-template-columns:repeat(auto-fill,minmax(420px,1fr));gap:14px}
.card{border:1px solid #dde3ea;border-radius:8px;padding:10px;background:#fff}.card.drop{background:#fbf6f2}
.card h3{font-size:13px;margin:0 0 4px;word-break:break-all}.meta{color:#5b6675;margin:0 0 6px;font-size:12px}
.strip{display:flex;gap:2px}.frame{width:calc(25% - 2px);height:auto;border-radius:2px}
.noplot{width:360px;padding:8px}.noplot p{color:#5b6675}
video{width:100%;max-height:240px;background:#000;margin-top:6px;border-radius:4px}audio{width:100%;height:32px}
.caps{font-size:12.5px;width:100%}.caps th{width:38px;vertical-align:top;color:#5b6675}
.missing{color:#a0522d;font-style:italic}.speech{font-size:12.5px;margin:6px 0}
.badge{font-size:11px;border-radius:3px;padding:1px 6px;margin-left:4px;font-weight:600}
.kept{background:#dcefe0;color:#23663a}.dropped{background:#f6ddd0;color:#8a3b12}
.model{font-size:10.5px;color:#5b6675;background:#eef2f7;border-radius:3px;padding:0 4px;margin-left:4px}
.model.tiny{color:#8a3b12;background:#f6ddd0}
"""


def report(out: Path, dest: Path | None = None, n: int = 24) -> Path:
    """Write the page (default OUT/report.html); returns its path."""
    out = Path(out)
    man = S.manifest(out)
    run = S.Run.model_validate_json((out / S.RUN).read_text()) if (out / S.RUN).exists() else None
    st = Stats.read(out)

    # Totals
    fails = sum(v for (_, _, k), v in st.reasons.items() if k == "error")
    dropped = sum(v for (_, _, k), v in st.reasons.items() if k == "drop")
    tiles = [
        ("videos in", man.videos),
        ("videos with clips", man.videos_with_clips),
        ("clips out", man.samples),
        ("hours of video out", f"{man.hours:.3f}"),
        ("shards", len(man.shards)),
        ("output size", f"{sum(s.bytes for s in man.shards) / 2**20:.1f} MiB"),
        ("failures", fails),
        ("drops", dropped),
    ]
    totals = "".join(f'<div class="tile"><b>{E(str(v))}</b>{E(k)}</div>' for k, v in tiles)
    reasons = table(
        ["stage", "code", "kind", "records"],
        [[s, c, k, v] for (s, c, k), v in sorted(st.reasons.items(), key=lambda x: (-x[1], x[0]))],
    )

    # Plots
    plots = []
    fig, ax = figure()
    edges, (c,) = shown([st.duration])
    ax.stairs(c, edges, fill=True, color="#4c72b0")
    ax.set(title="clip duration", xlabel="seconds", ylabel="clips")
    plots.append(plot(fig))
    fig, ax = figure()
    edges, (ck, cd) = shown([st.kept, st.dropped])
    ax.stairs(ck + cd, edges, fill=True, color="#dd8452", label="dropped")  # stacked: kept drawn over the sum
    ax.stairs(ck, edges, fill=True, color="#55a868", label="kept")
    if st.cut is not None and st.dropped.counts.any():
        ax.axvline(st.cut, color="#1d2430", ls="--", lw=1, label=f"cut {st.cut:.3f}")
    ax.set(title="CLIP score", xlabel="clip_score", ylabel="clips")
    ax.legend(frameon=False)
    plots.append(plot(fig))
    langs, trans = dict(st.langs.most_common(20)), dict(st.translators.most_common())
    plots.append(bars(langs, "speech language (fastText)", empty="no clip has speech"))
    plots.append(bars(trans, "translator of the speech caption", empty="no clip has speech"))
    made = [k for k in TYPES if st.words[k].counts.any()]
    if made:
        fig, ax = figure()
        stats = []
        for k in made:
            lo_, q1, med, q3, hi_ = st.words[k].quantiles([0, 0.25, 0.5, 0.75, 1])
            stats.append({"label": k, "whislo": lo_, "q1": q1, "med": med, "q3": q3, "whishi": hi_, "fliers": []})
        ax.bxp(stats)
        ax.set(title="caption length (whiskers: shortest and longest)", ylabel="words")
        plots.append(plot(fig))
    with_type = {k: int(st.words[k].counts.sum()) for k in TYPES}
    plots.append(bars(with_type, f"clips with each caption (of {man.samples})", empty="no captions"))

    # Caption quality (the checks' verdicts: pipeline/captions.py)
    cq = man.caption_quality
    codes = sorted({r for t in cq.values() for r in t["reasons"]})
    quality = table(
        ["caption", "checked", *codes, "words p5/p50/p95", "distinct words", "languages"],
        [
            [
                k,
                t["captions"],
                *[t["reasons"].get(r, 0) for r in codes],
                "/".join(str(t["words"][p]) for p in ("p5", "p50", "p95")),
                t["distinct_ratio"],
                ", ".join(f"{lang} {n}" for lang, n in list(t["languages"].items())[:4]),
            ]
            for k, t in cq.items()
        ],
    )
    examples = "".join(
        f"<h4>{E(k)}: {E(why)}</h4><ul>" + "".join(f"<li>{E(x)}</li>" for x in ex) + "</ul>"
        for k, t in cq.items()
        for why, ex in sorted(t["examples"].items())
    )
    for k, t in cq.items():
        plots.append(bars({r: t["reasons"][r] for r in codes if r in t["reasons"]}, f"caption checks: {k}", "captions"))

    # Stages
    stages = ""
    if run:
        rows = [
            [
                k,
                f"{t.items} {t.of}",
                f"{t.seconds:.1f}",
                f"{t.items / t.seconds:.2f}" if t.seconds else "-",
                f"{t.seconds / run.all_wall_s:.0%}" if run.all_wall_s else "-",
                f"{t.setup_s:.1f}",
                t.rss_mb,
            ]
            for k, t in run.stages.items()
        ]
        stages = (
            table(["stage", "items", "seconds", "items/s", "of wall time", "model set-up s", "peak RSS MB"], rows)
            + f"<p>wall time: {run.all_wall_s:.1f} s in {run.runs} run(s) on this work folder, the last "
            f"{run.wall_s:.1f} s; items and seconds count them all. Stages overlap, so the shares of wall time can "
            f"add up to more than 100%. "
            f"Selection: {E(run.selection or 'none')}.</p>"
        )
        if any(t.seconds for t in run.stages.values()):
            plots.append(bars({k: round(t.seconds, 1) for k, t in run.stages.items()}, "seconds per stage", "seconds"))

    # Gallery
    pool = {k: [x[2] for x in sorted(v, key=lambda x: x[1])] for k, v in st.pool.items()}
    picks = pick(pool["kept"], pool["dropped"], n)
    gallery_media(out, run, picks)
    cards = "".join(card(c, man.model_sources) for c in picks)
    models = table(
        ["field", "model", "source", "licence"],
        [
            [f, m, man.model_sources.get(m, {}).get("source", "?"), man.model_sources.get(m, {}).get("license", "?")]
            for f, m in man.models.items()
        ],
    )

    page = f"""<!doctype html><html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width,initial-scale=1"><title>mvid report: {E(out.name)}</title>
<style>{CSS}</style></head><body>
<header><h1>mvid report</h1><p>{E(str(out.resolve()))} · mvid {E(man.mvid_version)} · {E(man.format)}</p></header>
<main>
<section id="totals"><h2>Totals</h2><div class="tiles">{totals}</div>
<h3>Failures and drops by reason</h3>{reasons}</section>
<section id="plots"><h2>Plots</h2><div class="plots">{"".join(plots)}</div></section>
<section id="quality"><h2>Caption quality</h2>{quality if cq else "<p>no caption was checked</p>"}
<h3>Examples per reason</h3>{examples or "<p>every caption passed</p>"}</section>
<section id="stages"><h2>Stages</h2>{stages or "<p>no run file (run.json): the run predates it</p>"}</section>
<section id="models"><h2>Models</h2>{models}</section>
<section id="gallery"><h2>Gallery: {len(picks)} clips across videos and scores</h2>
<div class="gallery">{cards}</div></section>
</main></body></html>"""
    dest = Path(dest) if dest else out / S.REPORT
    dest.write_text(page)
    return dest
