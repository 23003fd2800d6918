"""Quality of the demo profile's real models on the sample speech (models/samples.py SPEECH: four texts that say
the same thing, so the English one is the reference for every translation):

    python bench/quality.py   # models from MVID_MODEL_DIR (make weights)

- ASR: Whisper's word error rate on each sample against its own text, and the language Whisper detects;
- LID: fastText's language and confidence on the real transcripts;
- S caption: chrF (sacrebleu) of the English text against the English reference, per language and translator;
- fusion: the share of fused captions that parse on the first try, and their length in words.

The models and their options are the demo profile's (pipeline/profiles/demo.yaml), run through the same
adapters and prompts as the stages. Writes the tables into docs/benchmarks.md under "## Quality".
"""

from __future__ import annotations

import statistics
import tempfile
from pathlib import Path

from report import write_section
from sacrebleu.metrics import CHRF

from mvid.models import build, prompts
from mvid.models.base import ModelSpec
from mvid.models.samples import SPEECH, speak16k, wer
from mvid.pipeline.config import load

HEADING = "## Quality"
# Per-modality captions of the kind a trained captioner writes, for the fusion figures (the demo's own are noise).
CAPTIONS = [
    {"A": "a dog barks and waves crash", "V": "a brown dog runs along a sandy beach", "S": "come here, good boy"},
    {"A": "an engine revs loudly", "V": "a red car drives fast on a mountain road", "S": "this is the new model"},
    {"A": "soft piano music plays", "V": "a woman reads a book by a window", "S": "I love quiet evenings"},
    {"A": "people cheer in a stadium", "V": "a football player scores a goal", "S": "what a goal by number ten"},
    {"A": "birds sing in the trees", "V": "a man hikes up a forest trail", "S": "we are almost at the top"},
    {"A": "rain falls on a roof", "V": "a city street at night with wet pavement", "S": "let's wait for the bus"},
    {"A": "a crowd talks in a hall", "V": "a chef cuts vegetables in a kitchen", "S": "first chop the onions"},
    {"A": "wind blows over a microphone", "V": "a sailboat moves on the open sea", "S": "the wind is strong today"},
]


def spec(stage: str, key: str):
    return next(p for p in load("demo").stages if p.name == stage).model_dump()[key]


def adapter(role: str, stage: str, key: str):
    a = build(role, ModelSpec(**spec(stage, key)))
    a.load()
    return a


def main() -> None:
    chrf, ref = CHRF(), SPEECH["en"][1]
    asr, lid = adapter("asr", "asr", "model"), adapter("lid", "lid", "model")
    sm, llm = adapter("translate", "translate", "seamless"), adapter("llm", "translate", "llm")
    with tempfile.TemporaryDirectory() as tmp:
        wavs = {lang: speak16k(text, voice, Path(tmp) / f"{lang}.wav") for lang, (voice, text) in SPEECH.items()}
        said = dict(zip(SPEECH, asr([{"audio": str(w)} for w in wavs.values()]), strict=True))
    rows = [
        "| sample | Whisper language | WER | fastText language (confidence) | translator | chrF vs English |",
        "|---|---|---|---|---|---|",
    ]
    ids = dict(zip(SPEECH, lid([s["text"] for s in said.values()]), strict=True))
    for lang, (_, text) in SPEECH.items():
        s, li = said[lang], ids[lang]
        head = f"| {lang} | {s['language']} | {wer(text, s['text']):.2f} | {li['language']} ({li['confidence']:.3f}) |"
        if lang == "en":
            rows.append(f"{head} none | {chrf.sentence_score(s['text'], [ref]).score:.1f} |")
            continue
        seamless = sm([{"text": s["text"], "src_lang": li["language"], "audio": None}])[0] or ""
        answer = llm([prompts.translation(s["text"], li["language"])], stop=[prompts.CLOSE_TRANSLATION])[0]
        try:
            by_llm = prompts.parse_translation(answer)
        except ValueError:
            by_llm = ""
        rows.append(f"{head} {sm.name} | {chrf.sentence_score(seamless, [ref]).score:.1f} |")
        rows.append(f"| | | | | {llm.name} | {chrf.sentence_score(by_llm, [ref]).score:.1f} |")
    fuse = adapter("llm", "fuse", "llm")
    jobs = [(kind, c) for c in CAPTIONS for kind in ("AV", "AVS")]
    answers = fuse([prompts.fusion(kind, c) for kind, c in jobs], stop=[prompts.CLOSE_CAPTION])
    parsed, copies = [], 0
    for (kind, c), a in zip(jobs, answers, strict=True):
        try:
            parsed.append(prompts.parse_caption(a, tuple(c[k] for k in kind)))
        except ValueError as e:
            copies += "repeats an input" in str(e)
    lengths = [len(p.split()) for p in parsed]
    text = "\n".join(
        [
            "`python bench/quality.py`: the demo profile's models on the espeak-ng samples (`models/samples.py`).",
            "",
            *rows,
            "",
            f"Whisper: {spec('asr', 'model')['model']} {spec('asr', 'model')['options']}. "
            "chrF of the Whisper transcript itself for English.",
            "",
            f"Fusion ({fuse.name}, {len(jobs)} AV and AVS prompts from {len(CAPTIONS)} hand-written caption sets): "
            f"{len(parsed)}/{len(jobs)} parse on the first try, {copies} more only repeat one input (rejected); "
            f"{statistics.mean(lengths) if lengths else 0:.1f} words on average "
            f"(min {min(lengths, default=0)}, max {max(lengths, default=0)}).",
            "",
            "Example: " + (parsed[0] if parsed else "(none parsed)"),
        ]
    )
    print(text)
    write_section(HEADING, text)


if __name__ == "__main__":
    main()
