"""Caption quality: each check on captions built for it (real fastText for the language), the statistics on a
hand-counted set, and captions that stay with their own clips through shuffled, mixed and failing batches."""

import random
import re

import pytest

from mvid.models.lid import FastTextLID
from mvid.models.prompts import FUSE_SYSTEM
from mvid.models.vision import PROMPT
from mvid.pipeline.captions import CaptionChecks, merge, reason, summary, tally

GOOD = [
    "A man in a red jacket rides a bicycle along a wet city street at night.",
    "Two children build a sandcastle on a sunny beach while waves roll in behind them.",
    "A chef slices onions on a wooden board in a busy restaurant kitchen.",
    "Heavy rain falls on a tin roof, with distant thunder and a dog barking.",
    "A crowd cheers as a football player scores a goal in a floodlit stadium.",
    "Birds chirp.",
    "A woman explains how to repot a small cactus, pressing soil around its roots.",
    "An orchestra tunes up before a concert; violins and a single oboe note fill the hall.",
    "The camera pans across snowy mountains at sunrise.",
]
BAD = {
    "degenerate_empty": ["none", "N/A", "  ", "Caption."],
    "degenerate_characters": ["\ufffd scene\ufffd sounds\ufffdDescri", "a car\x07 drives by", "a dog \ue000 runs"],
    "degenerate_echo": [
        "Describe this video in detail: the scene, the objects",
        "USER: what is in the video ASSISTANT: a dog",
        "<caption> a dog runs </caption>",
    ],
    "degenerate_refusal": ["I'm sorry, I cannot describe this video.", "As an AI, I am unable to watch videos."],
    "degenerate_repetition": [
        "a dog a dog a dog a dog a dog a dog a dog",
        "the the the the the the the the the the the the the the",
        "A man walks. A man walks. A man walks. A man walks. A man walks.",
    ],
    "degenerate_too_short": ["Rain.", "Music"],
    "degenerate_too_long": [" ".join(f"w{i}" for i in range(300))],
    "degenerate_language": [
        "Heute ist ein schöner Tag im Park mit vielen Menschen.",
        "Un hombre camina por la calle bajo la lluvia con un paraguas.",
        "Un chat noir dort sur le canapé près de la fenêtre.",
    ],
}


@pytest.fixture(scope="module")
def lid():
    m = FastTextLID()
    m.load()
    return m


def check(text, lid, prompt=PROMPT):
    return reason(text, CaptionChecks(), prompt, lid([text])[0])


def test_real_looking_captions_pass(lid):
    assert [(t, check(t, lid)) for t in GOOD if check(t, lid)] == []
    assert check("A caption that talks about the audio and visual parts of a clip.", lid, FUSE_SYSTEM) is None


@pytest.mark.parametrize("why", sorted(BAD))
def test_each_check_fails_its_captions(why, lid):
    assert [check(t, lid) for t in BAD[why]] == [why] * len(BAD[why])


def test_statistics_against_a_hand_count():
    recs = [
        {"raw_captions": {"V": "a dog runs on grass", "A": "none"}, "quality": {"A": "degenerate_empty"},
         "caption_lang": {"V": "en", "A": "de"}},
        {"raw_captions": {"V": "a dog a dog a dog a dog a dog"}, "quality": {"V": "degenerate_repetition"},
         "caption_lang": {"V": "en"}},
        {"raw_captions": {"V": "two cats sleep", "S": "hello there"}, "caption_lang": {"V": "en", "S": "en"}},
        {"quality": {"V": "degenerate_refusal"}},  # a clip fuse dropped: its reasons only
    ]  # fmt: skip
    t = merge(tally(recs[:2]), tally(recs[2:]))
    v = summary(t["V"])
    assert v["captions"] == 4 and v["reasons"] == {
        "degenerate_refusal": 1,
        "degenerate_repetition": 1,
        "ok": 2,
    }
    assert v["words"]["p50"] == 3 and v["words"]["p95"] == 10  # word counts 0, 3, 5, 10
    assert v["distinct_ratio"] == round((1 + 0.2 + 1 + 0) / 4, 4)  # 5/5, 2/10, 3/3, none
    assert v["languages"] == {"en": 3, "unknown": 1}
    assert v["examples"]["degenerate_repetition"] == ["a dog a dog a dog a dog a dog"]
    assert summary(t["A"])["reasons"] == {"degenerate_empty": 1} and summary(t["S"])["reasons"] == {"ok": 1}


# Captions that stay with their clips: a deterministic model writes each clip's id into its caption, from what it
# is given (the frame or audio file names hold the clip id; fusion and translation prompts hold the captions).
ID = re.compile(r"v\d-\d{4}")


def echo_ids(inputs) -> list[str]:
    return [f"a person walks past clip {ID.search(str(x)).group()} near the old bridge" for x in inputs]


@pytest.mark.parametrize("stage", ["vcaption", "acaption", "translate", "fuse"])
def test_captions_stay_with_their_clips_through_shuffled_mixed_and_failing_batches(stage, monkeypatch, tmp_path):
    from mvid.models.audio import TransformersAudio
    from mvid.models.llm import TransformersLLM
    from mvid.models.translate import SeamlessM4Tv2
    from mvid.models.vision import TransformersVision
    from mvid.pipeline import runner
    from mvid.pipeline.runner import Runner
    from mvid.pipeline.stage import Ctx
    from mvid.schemas import record as R
    from mvid.stages import REGISTRY

    failed = []

    def model(self, items, **kw):
        if not items:
            return []
        if "v1-0003" in str(items) and len(set(ID.findall(str(items)))) > 1:  # it fails with others: split, retried
            failed.append(len(items))
            raise RuntimeError("injected batch failure")
        if isinstance(self, TransformersLLM):  # a fused caption or a translation, closed as the prompt asks
            close = "</caption>" if "<caption>" in str(items[0]) else "</translation>"
            return [f"{c}{close}" for c in echo_ids(items)]
        return echo_ids(items)

    for cls in (TransformersVision, TransformersAudio, TransformersLLM, SeamlessM4Tv2):
        monkeypatch.setattr(cls, "load", lambda self: setattr(self, "prompt", "Describe the clip."))
        monkeypatch.setattr(cls, "__call__", model)
    monkeypatch.setattr(SeamlessM4Tv2, "mode", "text", raising=False)
    rng = random.Random(0)
    clips = []
    for v in range(3):
        for i in rng.sample(range(7), 7):  # shuffled
            cid = f"v{v}-{i:04d}"
            clips.append(
                {
                    "clip_id": cid,
                    "frame_paths": [f"{cid}.frame00.jpg"],
                    "audio_path": f"{cid}.wav",
                    "has_audio": True,
                    "transcript": {"text": f"clip {cid} spricht hier", "language": "de"},
                    "lid": {"language": "de", "confidence": 0.99 if i % 2 else 0.5},  # seamless and the LLM
                    "captions": {"V": f"a view of {cid} at dusk", "A": f"rain on {cid} roofs", "S": f"{cid} speaks"},
                }
            )
    unit = R.table([{"unit": "000000", "_k": "in", "videos": [
        {"video_id": "v", "path": "/v.mp4", "failed": False, "clips": clips, "rejects": []}]}])  # fmt: skip
    monkeypatch.setattr(runner.Runner, "unpacked", lambda self, it, md, tmp: it)  # the names are the inputs here
    p = REGISTRY[stage].Params(batch_size=rng.choice([4, 6, 7]))
    made = {"vcaption": ["V"], "acaption": ["A"], "translate": ["S"], "fuse": ["AV", "AVS"]}[stage]
    (v,) = R.rows(Runner(stage, p.model_dump(), Ctx(tmp_path / "w", tmp_path / "o"), "fp")(unit).drop_columns(["_n"]))[
        0
    ]["videos"]
    assert failed and len(v["clips"]) == len(clips) and not v["rejects"]
    for c in v["clips"]:
        assert c["frame_paths"] == [f"{c['clip_id']}.frame00.jpg"] and c["audio_path"] == f"{c['clip_id']}.wav"
        for kind in made:
            assert ID.findall(c["captions"][kind]) and set(ID.findall(c["captions"][kind])) == {c["clip_id"]}, kind
