"""Translation role: SeamlessM4T v2 through transformers (seamless_communication is not on the registry).
Text to text with SeamlessM4Tv2ForTextToText, or speech to text with SeamlessM4Tv2ForSpeechToText; both load
from one folder (a full SeamlessM4Tv2 checkpoint such as facebook/seamless-m4t-v2-large, or the tiny one).

Items are {"text", "src_lang" (fastText's ISO 639 code, e.g. "de", or a Seamless code, e.g. "deu"),
optional "audio" (16 kHz mono wav)}; outputs are the translations (str), in input order. Options: mode
("text" | "speech"), tgt_lang ("eng"), num_beams (1), max_new_tokens (256), batch_size (8), threads.
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from mvid.models.base import TINY_MARKER, Adapter, device

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
        self.dev = device(self.spec)
        cls = SeamlessM4Tv2ForTextToText if self.mode == "text" else SeamlessM4Tv2ForSpeechToText
        dtype = torch.float16 if self.dev == "cuda" else torch.float32
        self.proc = SeamlessM4TProcessor.from_pretrained(self.path)
        self.model = cls.from_pretrained(self.path, dtype=dtype).to(self.dev).eval()

    def __call__(self, items: list[dict]) -> list[str]:
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
        for i, t in zip(idx, self.proc.batch_decode(ids, skip_special_tokens=True)):
            out[i] = t.strip()


def chunks(xs: list, n: int) -> list[list]:
    return [xs[i : i + n] for i in range(0, len(xs), n)]


# ---- tiny random model --------------------------------------------------------------------------------------

# Training text for the tiny sentencepiece model: one sentence in each of 15 languages.
CORPUS = """The weather is nice today and we are going to the park with our friends.
Heute ist das Wetter schön und wir gehen mit unseren Freunden in den Park.
Hoy hace buen tiempo y vamos al parque con nuestros amigos.
Il fait beau aujourd'hui et nous allons au parc avec nos amis.
Oggi il tempo è bello e andiamo al parco con i nostri amici.
Hoje o tempo está bom e vamos ao parque com os nossos amigos.
Vandaag is het mooi weer en we gaan met onze vrienden naar het park.
Сегодня хорошая погода, и мы идём в парк с друзьями.
今天天气很好，我们和朋友一起去公园。
今日は天気が良いので友達と公園に行きます。
오늘은 날씨가 좋아서 친구들과 공원에 갑니다.
اليوم الطقس جميل ونحن ذاهبون إلى الحديقة مع أصدقائنا.
आज मौसम अच्छा है और हम अपने दोस्तों के साथ पार्क जा रहे हैं।
Bugün hava güzel ve arkadaşlarımızla parka gidiyoruz.
Dziś jest ładna pogoda i idziemy z przyjaciółmi do parku.
"""


def tiny_tokenizer(work: Path):
    """A real SeamlessM4TTokenizer over a small sentencepiece BPE model trained on CORPUS, with Seamless's
    special ids (<pad> 0, <unk> 1, <s> 2, </s> 3) and a __xxx__ token for every language in SEAMLESS."""
    import sentencepiece as spm
    from transformers import SeamlessM4TTokenizer

    (work / "corpus.txt").write_text(CORPUS * 3)
    # fairseq layout: the spm ids unk 0, bos 1, eos 2 become 1, 2, 3 after the tokenizer's offset of one
    spm.SentencePieceTrainer.train(
        input=str(work / "corpus.txt"),
        model_prefix=str(work / "sentencepiece.bpe"),
        vocab_size=300,
        model_type="bpe",
        character_coverage=1.0,
        hard_vocab_limit=False,
        unk_id=0,
        bos_id=1,
        eos_id=2,
        pad_id=-1,
        minloglevel=2,
    )
    (work / "corpus.txt").unlink()
    langs = [f"__{c}__" for c in sorted(set(SEAMLESS.values()))]
    return SeamlessM4TTokenizer.from_pretrained(
        str(work), additional_special_tokens=langs, src_lang="eng", tgt_lang="eng"
    )


def tiny(dest: Path, seed: int = 0) -> None:
    """dest/tiny-seamless-m4t-v2: a random full SeamlessM4Tv2Model of small dims (text and speech encoders,
    text decoder, tiny t2u and vocoder) with its processor; both the text-to-text and the speech-to-text
    classes load from it, as they do from the real checkpoint."""
    import torch
    from transformers import (
        GenerationConfig,
        SeamlessM4TFeatureExtractor,
        SeamlessM4TProcessor,
        SeamlessM4Tv2Config,
        SeamlessM4Tv2Model,
    )

    out = Path(dest) / "tiny-seamless-m4t-v2"
    with tempfile.TemporaryDirectory() as tmp:
        tok = tiny_tokenizer(Path(tmp))
    h, ffn, heads = 32, 64, 2
    cfg = SeamlessM4Tv2Config(
        vocab_size=len(tok),
        hidden_size=h,
        max_position_embeddings=256,
        encoder_layers=1,
        decoder_layers=1,
        encoder_ffn_dim=ffn,
        decoder_ffn_dim=ffn,
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        speech_encoder_layers=1,
        speech_encoder_attention_heads=heads,
        speech_encoder_intermediate_size=ffn,
        t2u_vocab_size=32,
        char_vocab_size=64,
        t2u_encoder_layers=1,
        t2u_decoder_layers=1,
        t2u_encoder_ffn_dim=ffn,
        t2u_decoder_ffn_dim=ffn,
        t2u_encoder_attention_heads=heads,
        t2u_decoder_attention_heads=heads,
        t2u_max_position_embeddings=256,
        t2u_variance_predictor_embed_dim=h,
        t2u_variance_predictor_hidden_dim=16,
        upsample_initial_channel=16,
        upsample_rates=(2, 2),
        upsample_kernel_sizes=(4, 4),
        resblock_kernel_sizes=(3,),
        resblock_dilation_sizes=((1,),),
        unit_hifi_gan_vocab_size=32,
        unit_embed_dim=16,
        lang_embed_dim=8,
        spkr_embed_dim=8,
        vocoder_num_langs=2,
        vocoder_num_spkrs=2,
        pad_token_id=0,
        bos_token_id=2,
        eos_token_id=3,
        decoder_start_token_id=3,
    )
    torch.manual_seed(seed)
    net = SeamlessM4Tv2Model(cfg).eval()
    langs = sorted(set(SEAMLESS.values()))
    net.generation_config = GenerationConfig(
        text_decoder_lang_to_code_id={c: tok.convert_tokens_to_ids(f"__{c}__") for c in langs},
        decoder_start_token_id=3,
        bos_token_id=2,
        eos_token_id=3,
        pad_token_id=0,
        max_new_tokens=32,
    )
    net.save_pretrained(out)
    SeamlessM4TProcessor(feature_extractor=SeamlessM4TFeatureExtractor(), tokenizer=tok).save_pretrained(out)
    (out / TINY_MARKER).write_text(json.dumps({"arch": "seamless-m4t-v2"}))
