"""SeamlessM4T v2 translation through transformers' real classes, with the tiny random model; the translation router."""

import pytest

from mvid.models import translate
from mvid.models.base import ModelSpec
from mvid.models.samples import speak16k
from mvid.models.translate import SEAMLESS
from mvid.stages.translate import route


@pytest.fixture(scope="module")
def folder(weights):
    return weights / "tiny-seamless-m4t-v2"


@pytest.fixture(scope="module")
def wavs(tmp_path_factory):
    d = tmp_path_factory.mktemp("speech")
    out = []
    for i, (voice, text) in enumerate([("de", "Heute ist ein schöner Tag."), ("es", "Hoy hace buen tiempo.")]):
        out.append(speak16k(text, voice, d / f"{i}.wav"))
    return out


def loaded(folder, **opts):
    a = translate.SeamlessM4Tv2(
        ModelSpec(backend="seamless-m4t-v2", model=str(folder), options={"max_new_tokens": 6, **opts})
    )
    a.load()
    return a


def test_tiny_tokenizer(folder):
    from transformers import SeamlessM4TProcessor

    tok = SeamlessM4TProcessor.from_pretrained(folder).tokenizer
    ids = tok("Heute ist das Wetter schön.", src_lang="deu")["input_ids"]
    assert tok.convert_ids_to_tokens(ids[:1] + ids[-1:]) == ["__deu__", "</s>"]  # Seamless's source layout
    assert tok.decode(ids, skip_special_tokens=True) == "Heute ist das Wetter schön."
    assert all(tok.convert_tokens_to_ids(f"__{c}__") != tok.unk_token_id for c in SEAMLESS.values())


def test_text_to_text(folder):
    a = loaded(folder, batch_size=2)
    assert a.name == "tiny-random/seamless-m4t-v2"
    items = [
        {"text": "Heute ist das Wetter schön.", "src_lang": "de"},
        {"text": "The weather is nice.", "src_lang": "en"},
        {"text": "Hoy hace buen tiempo.", "src_lang": "spa"},
        {"text": "Il fait beau.", "src_lang": "fr"},
        {"text": "Wir gehen in den Park.", "src_lang": "de"},
    ]
    out = a(items)
    assert len(out) == 5 and all(isinstance(t, str) and t for t in out)
    assert out[1] == "The weather is nice."  # already English: passed through untouched
    assert a(items[4:]) == out[4:]  # each translation is its own: grouping by language, batching, order
    assert "Heute" not in out[0]  # decoded from generated ids, not the input


def test_speech_to_text(folder, wavs):
    a = loaded(folder, mode="speech")
    items = [{"text": "", "src_lang": "de", "audio": wavs[0]}, {"text": "", "src_lang": "es", "audio": wavs[1]}]
    out = a(items)
    assert len(out) == 2 and all(isinstance(t, str) and t for t in out)
    assert a(items[1:]) == out[1:]
    with pytest.raises(ValueError, match="audio"):
        a([{"text": "x", "src_lang": "de"}])


def test_language_codes():
    assert [translate.seamless_code(c) for c in ("de", "zh", "ar", "deu", "fa")] == ["deu", "cmn", "arb", "deu", "pes"]
    with pytest.raises(ValueError, match="LLM"):
        translate.seamless_code("la")


def test_route():
    assert route("en", 0.99) == "none" and route("en", 0.3) == "none" and route(None, 0.0) == "none"
    assert route("de", 0.99) == "seamless" and route("zh", 0.95) == "seamless"
    assert route("de", 0.80) == "llm"  # unsure: the LLM also copes with mixed text
    assert route("de", 0.80, threshold=0.7) == "seamless"
    assert route("la", 0.99) == "llm"  # Latin: fastText knows it, Seamless does not
