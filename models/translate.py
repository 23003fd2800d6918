"""Translation role: SeamlessM4T v2 through transformers (seamless_communication is not on the registry).
Text to text with SeamlessM4Tv2ForTextToText, or speech to text with SeamlessM4Tv2ForSpeechToText; both load
from one folder (a full SeamlessM4Tv2 checkpoint such as facebook/seamless-m4t-v2-large, or the tiny one).

Items are {"text", "src_lang" (fastText's ISO 639 code, e.g. "de", or a Seamless code, e.g. "deu"),
optional "audio" (16 kHz mono wav)}; outputs are the translations (str), in input order. Options: mode
("text" | "speech"), tgt_lang ("eng"), num_beams (1), max_new_tokens (256), batch_size (8), threads.
"""

from __future__ import annotations

from mvid.models.base import Adapter

# fastText lid.176 label -> SeamlessM4T v2 text language (the 96 it reads, where fastText has the language)
SEAMLESS = {
    "af": "afr",
    "am": "amh",
    "ar": "arb",
    "arz": "arz",
    "as": "asm",
    "ast": "ast",
    "az": "azj",
    "be": "bel",
    "bn": "ben",
    "bs": "bos",
    "bg": "bul",
    "ca": "cat",
    "ceb": "ceb",
    "cs": "ces",
    "ckb": "ckb",
    "zh": "cmn",
    "cy": "cym",
    "da": "dan",
    "de": "deu",
    "el": "ell",
    "en": "eng",
    "et": "est",
    "eu": "eus",
    "fi": "fin",
    "fr": "fra",
    "ga": "gle",
    "gl": "glg",
    "gu": "guj",
    "he": "heb",
    "hi": "hin",
    "hr": "hrv",
    "hu": "hun",
    "hy": "hye",
    "ig": "ibo",
    "id": "ind",
    "is": "isl",
    "it": "ita",
    "jv": "jav",
    "ja": "jpn",
    "kn": "kan",
    "ka": "kat",
    "kk": "kaz",
    "km": "khm",
    "ky": "kir",
    "ko": "kor",
    "lo": "lao",
    "lt": "lit",
    "lb": "ltz",
    "lv": "lvs",
    "mai": "mai",
    "ml": "mal",
    "mr": "mar",
    "mk": "mkd",
    "mt": "mlt",
    "mn": "khk",
    "my": "mya",
    "nl": "nld",
    "nn": "nno",
    "no": "nob",
    "ne": "npi",
    "oc": "oci",
    "or": "ory",
    "pa": "pan",
    "ps": "pbt",
    "fa": "pes",
    "pl": "pol",
    "pt": "por",
    "ro": "ron",
    "ru": "rus",
    "sk": "slk",
    "sl": "slv",
    "sd": "snd",
    "so": "som",
    "es": "spa",
    "sr": "srp",
    "sv": "swe",
    "sw": "swh",
    "ta": "tam",
    "te": "tel",
    "tg": "tgk",
    "tl": "tgl",
    "th": "tha",
    "tr": "tur",
    "uk": "ukr",
    "ur": "urd",
    "uz": "uzn",
    "vi": "vie",
    "yo": "yor",
    "yue": "yue",
    "ms": "zsm",
    "zu": "zul",
}


def seamless_code(lang: str) -> str:
    """Seamless's code for a fastText label or a Seamless code; ValueError for a language Seamless lacks."""
    if lang in SEAMLESS.values():
        return lang
    if lang in SEAMLESS:
        return SEAMLESS[lang]
    raise ValueError(f"SeamlessM4T v2 does not read {lang!r} (route it to the LLM translator)")


class SeamlessM4Tv2(Adapter):
    role, backend = "translate", "seamless-m4t-v2"
    files = "SeamlessM4T v2 weights and processor"

    def load(self) -> None:
        import torch
        from transformers import SeamlessM4TProcessor, SeamlessM4Tv2ForSpeechToText, SeamlessM4Tv2ForTextToText

        o = self.spec.options
        self.torch = torch
        if o.get("threads"):
            torch.set_num_threads(int(o["threads"]))
        self.mode = o.get("mode", "text")
        if self.mode not in ("text", "speech"):
            raise ValueError(f"translate: mode must be text or speech, not {self.mode!r}")
        self.tgt = seamless_code(o.get("tgt_lang", "eng"))
        self.gen = {"num_beams": int(o.get("num_beams", 1)), "max_new_tokens": int(o.get("max_new_tokens", 256))}
        self.bs = int(o.get("batch_size", 8))
        self.dev = self.device
        cls = SeamlessM4Tv2ForTextToText if self.mode == "text" else SeamlessM4Tv2ForSpeechToText
        dtype = torch.float16 if self.dev == "cuda" else torch.float32
        self.proc = SeamlessM4TProcessor.from_pretrained(self.path)
        self.model = cls.from_pretrained(self.path, dtype=dtype).to(self.dev).eval()

    def __call__(self, items: list[dict]) -> list[str | None]:
        out: list[str | None] = [None] * len(items)
        if self.mode == "speech":
            from mvid.models.asr import load_wav

            missing = [i for i, it in enumerate(items) if not it.get("audio")]
            if missing:
                raise ValueError(f"translate: speech mode needs 'audio' in every item (missing at {missing})")
            for idx in chunks(list(range(len(items))), self.bs):
                audio = [load_wav(items[i]["audio"]) for i in idx]
                enc = self.proc(audio=audio, sampling_rate=16000, return_tensors="pt", padding=True)
                self._generate(enc, idx, out)
            return out
        groups: dict[str, list[int]] = {}
        for i, it in enumerate(items):
            src = seamless_code(it["src_lang"])
            if src == self.tgt:
                out[i] = it["text"]  # already in the target language
            else:
                groups.setdefault(src, []).append(i)
        for src, idx in groups.items():
            for part in chunks(idx, self.bs):
                enc = self.proc(text=[items[i]["text"] for i in part], src_lang=src, return_tensors="pt", padding=True)
                self._generate(enc, part, out)
        return out

    def _generate(self, enc, idx: list[int], out: list) -> None:
        enc = {
            k: (v.to(self.dev, self.model.dtype) if v.is_floating_point() else v.to(self.dev)) for k, v in enc.items()
        }
        with self.torch.inference_mode():
            ids = self.model.generate(**enc, tgt_lang=self.tgt, **self.gen)
        for i, t in zip(idx, self.proc.batch_decode(ids, skip_special_tokens=True), strict=True):
            out[i] = t.strip()


def chunks(xs: list, n: int) -> list[list]:
    return [xs[i : i + n] for i in range(0, len(xs), n)]
