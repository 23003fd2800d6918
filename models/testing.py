"""Tiny random-weight models of every role without shipped weights, built here from a config through the real
libraries (no hub): what the demo profile, the tests and the benchmarks run in place of real weights. Each folder
holds mvid-tiny.json (models/base.py TINY_MARKER), so that provenance marks its outputs tiny-random/<arch>.
`mvid models tiny DIR` builds them all (tiny); nothing in the pipeline imports this module."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from mvid.models.audio import AUDIO
from mvid.models.base import TINY_MARKER
from mvid.models.prompts import VICUNA_SYSTEM
from mvid.models.translate import SEAMLESS
from mvid.models.vision import CHAT_TEMPLATE, IMAGE, PROMPT, VIDEO


def tiny(dest: Path) -> list[str]:
    """Build every tiny model into dest; returns the roles they serve."""
    dest = Path(dest)
    tiny_whisper(dest)
    tiny_seamless(dest)
    tiny_llama(dest)
    tiny_qwen_vl(dest)
    tiny_qwen2_audio(dest)
    tiny_clip(dest)
    return ["asr", "translate", "llm", "vcaption", "acaption", "clip"]


# ---- tokenizers --------------------------------------------------------------------------------------------


def byte_bpe(texts, vocab_size: int, specials: list[str]):
    """A byte-level BPE tokenizer (any text round-trips), trained here on texts: tiny models need no hub."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    tok.train_from_iterator(
        texts,
        trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=specials,
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
            show_progress=False,
        ),
    )
    return tok


QWEN_CORPUS = [
    PROMPT,
    "A person walks a dog in a park while music plays and birds sing.",
    "What sounds can you hear? Describe the music, the environment and the events.",
    "You are a helpful assistant. A red car drives down a street at night; people talk.",
]


def qwen_tokenizer(specials: list[str]):
    """A small byte-level BPE tokenizer in Qwen's style, trained here on a few sentences (no hub)."""
    from transformers import PreTrainedTokenizerFast

    tok = byte_bpe(QWEN_CORPUS * 4, 512, ["<|endoftext|>", "<|im_start|>", "<|im_end|>", *specials])
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, eos_token="<|im_end|>", pad_token="<|endoftext|>", chat_template=CHAT_TEMPLATE
    )


# ---- asr: Whisper (openai-whisper and faster-whisper) ---------------------------------------------------------

# Tiny dims shared by both backends; the multilingual vocabulary (51865) keeps language detection real.
WHISPER = dict(n_mels=80, n_vocab=51865, n_audio_ctx=1500, n_text_ctx=448, width=64, heads=2, layers=2)


def _specials() -> list[str]:
    """Whisper's special tokens before the timestamps, as openai-whisper numbers them (ids 50257...)."""
    from whisper.tokenizer import LANGUAGES

    return [
        "<|endoftext|>",
        "<|startoftranscript|>",
        *[f"<|{c}|>" for c in list(LANGUAGES)[:99]],
        "<|translate|>",
        "<|transcribe|>",
        "<|startoflm|>",
        "<|startofprev|>",
        "<|nospeech|>",
        "<|notimestamps|>",
    ]


def _mark(folder: Path) -> None:
    (folder / TINY_MARKER).write_text(json.dumps({"arch": "whisper"}))


def tiny_openai(out: Path, seed: int = 0) -> None:
    import torch
    from whisper.model import ModelDimensions
    from whisper.model import Whisper as Net

    t = WHISPER
    sizes = {"state": t["width"], "head": t["heads"], "layer": t["layers"]}
    dims = ModelDimensions(
        **{k: t[k] for k in ("n_mels", "n_vocab", "n_audio_ctx", "n_text_ctx")},
        **{f"n_{side}_{k}": v for side in ("audio", "text") for k, v in sizes.items()},
    )
    torch.manual_seed(seed)
    net = Net(dims)
    torch.nn.init.normal_(net.decoder.positional_embedding, std=0.02)  # allocated with torch.empty
    out.mkdir(parents=True, exist_ok=True)
    torch.save({"dims": dims.__dict__, "model_state_dict": net.state_dict()}, out / "model.pt")
    _mark(out)


def whisper_tokenizer(out: Path):
    """The multilingual Whisper tokenizer as a transformers tokenizer, built from the BPE ranks that ship in
    openai-whisper (whisper/assets/multilingual.tiktoken): same vocabulary and special-token ids as the
    tokenizer.json of the real faster-whisper models."""
    import whisper
    from transformers import WhisperTokenizer
    from transformers.convert_slow_tokenizer import TikTokenConverter

    ranks = Path(whisper.__file__).parent / "assets" / "multilingual.tiktoken"
    vocab, merges = TikTokenConverter().extract_vocab_merges_from_model(str(ranks))
    tok = WhisperTokenizer(vocab=vocab, merges=merges)
    tok.add_special_tokens({"additional_special_tokens": _specials()[1:]})
    tok.save_pretrained(out)
    return tok


def tiny_faster(out: Path, seed: int = 0) -> None:
    """A random transformers Whisper of the WHISPER dims, converted to CTranslate2 with ctranslate2's converter."""
    import torch
    from ctranslate2.converters import TransformersConverter
    from transformers import GenerationConfig, WhisperConfig, WhisperForConditionalGeneration

    t, sp = WHISPER, _specials()
    eot, sot = 50257, 50258
    ids = dict(
        decoder_start_token_id=sot,
        eos_token_id=eot,
        pad_token_id=eot,
        suppress_tokens=[],
        begin_suppress_tokens=[220, eot],
    )
    sizes = {"layers": t["layers"], "attention_heads": t["heads"], "ffn_dim": 4 * t["width"]}
    cfg = WhisperConfig(
        vocab_size=t["n_vocab"],
        num_mel_bins=t["n_mels"],
        d_model=t["width"],
        max_source_positions=t["n_audio_ctx"],
        max_target_positions=t["n_text_ctx"],
        bos_token_id=eot,
        **{f"{side}_{k}": v for side in ("encoder", "decoder") for k, v in sizes.items()},
        **ids,
    )
    torch.manual_seed(seed)
    net = WhisperForConditionalGeneration(cfg).eval()
    net.generation_config = GenerationConfig(
        **ids,
        no_timestamps_token_id=sp.index("<|notimestamps|>") + eot,
        lang_to_id={s: i + eot for i, s in enumerate(sp) if 2 <= i < 101},
    )
    with tempfile.TemporaryDirectory() as hf:
        net.save_pretrained(hf)
        whisper_tokenizer(Path(hf))
        if out.exists():
            shutil.rmtree(out)
        TransformersConverter(hf, copy_files=["tokenizer.json"]).convert(str(out), quantization="float32")
    _mark(out)


def tiny_whisper(dest: Path) -> None:
    """dest/tiny-openai-whisper (model.pt) and dest/tiny-faster-whisper (CTranslate2), same tiny dims."""
    dest = Path(dest)
    tiny_openai(dest / "tiny-openai-whisper")
    tiny_faster(dest / "tiny-faster-whisper")


# ---- translate: SeamlessM4T v2 ----------------------------------------------------------------------------

# Training text for the tiny sentencepiece model: one sentence in each of 15 languages.
SEAMLESS_CORPUS = """The weather is nice today and we are going to the park with our friends.
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


def seamless_tokenizer(work: Path):
    """A real SeamlessM4TTokenizer over a small sentencepiece BPE model trained on SEAMLESS_CORPUS, with Seamless's
    special ids (<pad> 0, <unk> 1, <s> 2, </s> 3) and a __xxx__ token for every language in SEAMLESS."""
    import sentencepiece as spm
    from transformers import SeamlessM4TTokenizer

    (work / "corpus.txt").write_text(SEAMLESS_CORPUS * 3)
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


def tiny_seamless(dest: Path, seed: int = 0) -> None:
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
        tok = seamless_tokenizer(Path(tmp))
    h, ffn, heads = 32, 64, 2
    # encoder_layers, t2u_decoder_ffn_dim, ...: one layer each, in the text model and the text-to-unit model
    sizes = {"layers": 1, "ffn_dim": ffn, "attention_heads": heads}
    ids = dict(pad_token_id=0, bos_token_id=2, eos_token_id=3, decoder_start_token_id=3)
    cfg = SeamlessM4Tv2Config(
        vocab_size=len(tok),
        hidden_size=h,
        max_position_embeddings=256,
        **{f"{pre}{side}_{k}": v for pre in ("", "t2u_") for side in ("encoder", "decoder") for k, v in sizes.items()},
        speech_encoder_layers=1,
        speech_encoder_attention_heads=heads,
        speech_encoder_intermediate_size=ffn,
        t2u_vocab_size=32,
        char_vocab_size=64,
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
        **ids,
    )
    torch.manual_seed(seed)
    net = SeamlessM4Tv2Model(cfg).eval()
    langs = sorted(set(SEAMLESS.values()))
    net.generation_config = GenerationConfig(
        text_decoder_lang_to_code_id={c: tok.convert_tokens_to_ids(f"__{c}__") for c in langs},
        max_new_tokens=32,
        **ids,
    )
    net.save_pretrained(out)
    SeamlessM4TProcessor(feature_extractor=SeamlessM4TFeatureExtractor(), tokenizer=tok).save_pretrained(out)
    (out / TINY_MARKER).write_text(json.dumps({"arch": "seamless-m4t-v2"}))


# ---- llm: Llama ----------------------------------------------------------------------------------------------

# A few hundred lines of English for the tiny tokenizer: the prompt templates and caption / transcript words.
LLAMA_WORDS = (
    "a man woman child dog cat car bird person people group city street park room kitchen beach forest river road "
    "house table window door stage crowd music song voice speech noise rain wind water light night day morning red "
    "blue green white black small large old young happy loud quiet slowly quickly walks runs talks sings plays "
    "drives sits stands holds opens looks cooks dances laughs speaks listens video clip scene shot camera frame "
    "audio sound caption subtitle transcript translation language english german french spanish chinese japanese "
    "hello thank you please yes no good morning evening today tomorrow weather news game ball guitar piano drum "
    "phone book food bread coffee tea"
).split()


def llama_corpus() -> list[str]:
    import random

    rng = random.Random(0)
    lines = [
        VICUNA_SYSTEM,
        "USER: ASSISTANT: SYSTEM:",
        "<transcript> </transcript>",
        "You translate transcripts into English. Answer with the English translation only.",
        "Describe the video in detail: the scene, the objects, the actions, the sounds and the speech.",
    ]
    for _ in range(400):
        lines.append(" ".join(rng.choice(LLAMA_WORDS) for _ in range(rng.randint(4, 14))).capitalize() + ".")
    return lines


# The tiny model's own chat template (for chat_template: model): a Llama-2-like layout.
TINY_TEMPLATE = (
    "{{ bos_token }}{% for m in messages %}[{{ m['role'] }}] {{ m['content'] }}"
    "{% if m['role'] == 'assistant' %}{{ eos_token }}{% endif %}{{ '\\n' }}{% endfor %}"
    "{% if add_generation_prompt %}[assistant]{% endif %}"
)


def llama_tokenizer():
    """Byte-level BPE (any text round-trips), trained here on llama_corpus(), Llama's special tokens."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast

    tok = byte_bpe(llama_corpus(), 768, ["<unk>", "<s>", "</s>", "<pad>"])
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok,
        bos_token="<s>",
        eos_token="</s>",
        unk_token="<unk>",
        pad_token="<pad>",
        chat_template=TINY_TEMPLATE,
    )


def decoder(tok, bos: str, eos: str, pad: str, width=32, heads=4, kv=2, ctx=4096, **kw) -> dict:
    """The config of a tiny 2-layer decoder (FFN twice the width) over tok's vocabulary, special ids by token."""
    ids = tok.convert_tokens_to_ids
    return dict(
        vocab_size=len(tok),
        hidden_size=width,
        intermediate_size=2 * width,
        num_hidden_layers=2,
        num_attention_heads=heads,
        num_key_value_heads=kv,
        max_position_embeddings=ctx,
        bos_token_id=ids(bos),
        eos_token_id=ids(eos),
        pad_token_id=ids(pad),
        **kw,
    )


def tiny_llama(dest: Path) -> None:
    """A tiny random Llama with a locally trained tokenizer, in dest/tiny-llama.

    2 layers, hidden 64, head_dim 32: vLLM's CPU attention supports head sizes of 32 and up.
    """
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    out = Path(dest) / "tiny-llama"
    tok = llama_tokenizer()
    cfg = LlamaConfig(**decoder(tok, "<s>", "</s>", "<pad>", width=64, heads=2, kv=1, ctx=2048))
    torch.manual_seed(0)
    LlamaForCausalLM(cfg).save_pretrained(out)
    tok.save_pretrained(out)
    (out / TINY_MARKER).write_text(json.dumps({"arch": "llama"}))


# ---- vcaption: Qwen2-VL and Qwen2.5-VL -------------------------------------------------------------------


def tiny_qwen_vl(dest: Path) -> None:
    """Tiny random Qwen2-VL and Qwen2.5-VL models sharing a locally built tokenizer, chat template and image
    processor."""
    import torch
    from transformers import (
        Qwen2_5_VLConfig,
        Qwen2_5_VLForConditionalGeneration,
        Qwen2VLConfig,
        Qwen2VLForConditionalGeneration,
    )
    from transformers.models.qwen2_vl.image_processing_pil_qwen2_vl import Qwen2VLImageProcessorPil

    tok = qwen_tokenizer(["<|vision_start|>", "<|vision_end|>", IMAGE, VIDEO])
    ids = tok.convert_tokens_to_ids
    rope = {"rope_type": "default", "mrope_section": [1, 1, 2], "rope_theta": 1e6}
    text = decoder(tok, "<|endoftext|>", "<|im_end|>", "<|endoftext|>", rope_parameters=rope)
    special = dict(
        image_token_id=ids(IMAGE),
        video_token_id=ids(VIDEO),
        vision_start_token_id=ids("<|vision_start|>"),
        vision_end_token_id=ids("<|vision_end|>"),
    )
    archs = {
        "qwen2-vl": (
            Qwen2VLConfig,
            Qwen2VLForConditionalGeneration,
            dict(depth=2, embed_dim=32, hidden_size=32, num_heads=2, mlp_ratio=2),
        ),
        "qwen2.5-vl": (
            Qwen2_5_VLConfig,
            Qwen2_5_VLForConditionalGeneration,
            dict(
                depth=2,
                hidden_size=32,
                out_hidden_size=32,
                intermediate_size=64,
                num_heads=2,
                window_size=56,
                fullatt_block_indexes=[1],
            ),
        ),
    }
    for arch, (config, model, vision) in archs.items():
        out = Path(dest) / f"tiny-{arch}"
        torch.manual_seed(0)
        model(config(text_config=text, vision_config=vision, **special)).save_pretrained(out)
        tok.save_pretrained(out)
        Qwen2VLImageProcessorPil().save_pretrained(out)
        (out / TINY_MARKER).write_text(json.dumps({"arch": arch}))


# ---- acaption: Qwen2-Audio ------------------------------------------------------------------------------------


def tiny_qwen2_audio(dest: Path) -> None:
    """A tiny random Qwen2-Audio with a locally built tokenizer and a Whisper feature extractor (128 mels)."""
    import torch
    from transformers import (
        Qwen2AudioConfig,
        Qwen2AudioForConditionalGeneration,
        Qwen2AudioProcessor,
        WhisperFeatureExtractor,
    )

    out = Path(dest) / "tiny-qwen2-audio"
    tok = qwen_tokenizer(["<|audio_bos|>", "<|audio_eos|>", AUDIO])
    ids = tok.convert_tokens_to_ids
    text = decoder(tok, "<|endoftext|>", "<|im_end|>", "<|endoftext|>", model_type="qwen2")
    enc = dict(d_model=32, encoder_layers=2, encoder_attention_heads=2, encoder_ffn_dim=64, num_mel_bins=128)
    cfg = Qwen2AudioConfig(audio_config=enc, text_config=text, audio_token_index=ids(AUDIO))
    torch.manual_seed(0)
    Qwen2AudioForConditionalGeneration(cfg).save_pretrained(out)
    fe = WhisperFeatureExtractor(feature_size=128)
    Qwen2AudioProcessor(feature_extractor=fe, tokenizer=tok, chat_template=CHAT_TEMPLATE).save_pretrained(out)
    (out / TINY_MARKER).write_text(json.dumps({"arch": "qwen2-audio"}))


# ---- clip: transformers CLIPModel and open_clip --------------------------------------------------------------

CLIP_WORDS = (
    "a the of and in on with is are while to video person people dog car street park music plays sound walks drives "
    "night talk red blue green scene colour colors bars test pattern moving"
).split()


def clip_tokenizer():
    """CLIP's byte-level BPE (words end in </w>) over a tiny vocabulary: every byte, plus merges for a few words."""
    from tokenizers import pre_tokenizers
    from transformers import CLIPTokenizer

    chars = sorted(pre_tokenizers.ByteLevel.alphabet())
    vocab = {c: i for i, c in enumerate(chars + [c + "</w>" for c in chars])}
    merges: dict[tuple[str, str], None] = {}  # insertion-ordered set
    for w in CLIP_WORDS:
        parts = [*w[:-1], w[-1] + "</w>"]
        cur = parts[0]
        for p in parts[1:]:
            merges.setdefault((cur, p), None)
            cur += p
            vocab.setdefault(cur, len(vocab))
    for s in ("<|startoftext|>", "<|endoftext|>"):
        vocab[s] = len(vocab)
    return CLIPTokenizer(vocab=vocab, merges=list(merges), model_max_length=77)


def tiny_clip(dest: Path) -> None:
    """A tiny random CLIPModel (small text and vision towers) with a local CLIP tokenizer and image processor."""
    import torch
    from transformers import CLIPConfig, CLIPModel
    from transformers.models.clip.image_processing_pil_clip import CLIPImageProcessorPil

    out = Path(dest) / "tiny-clip"
    tok = clip_tokenizer()
    text = dict(
        vocab_size=len(tok),
        hidden_size=32,
        intermediate_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        max_position_embeddings=77,
        bos_token_id=tok.bos_token_id,
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
    )
    vision = dict(
        hidden_size=32, intermediate_size=64, num_hidden_layers=2, num_attention_heads=2, image_size=32, patch_size=8
    )
    torch.manual_seed(0)
    CLIPModel(CLIPConfig(text_config=text, vision_config=vision, projection_dim=16)).save_pretrained(out)
    tok.save_pretrained(out)
    CLIPImageProcessorPil(size={"shortest_edge": 32}, crop_size={"height": 32, "width": 32}).save_pretrained(out)
    (out / TINY_MARKER).write_text(json.dumps({"arch": "clip"}))


def tiny_open_clip(dest: Path) -> None:
    """A tiny random open_clip CLIP in the hub folder layout (needs open_clip_torch, hence torchvision)."""
    import open_clip
    import torch
    from safetensors.torch import save_file

    out = Path(dest) / "tiny-open-clip"
    out.mkdir(parents=True, exist_ok=True)
    cfg = {
        "embed_dim": 16,
        "vision_cfg": {"image_size": 32, "layers": 2, "width": 32, "head_width": 16, "patch_size": 8},
        "text_cfg": {"context_length": 77, "vocab_size": 49408, "width": 32, "heads": 2, "layers": 2},
    }
    (out / "open_clip_config.json").write_text(json.dumps({"model_cfg": cfg, "preprocess_cfg": {}}))
    torch.manual_seed(0)
    model = open_clip.create_model("local-dir:" + str(out), load_weights=False)
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, out / "open_clip_model.safetensors")
    (out / TINY_MARKER).write_text(json.dumps({"arch": "open-clip"}))
