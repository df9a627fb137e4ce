"""Show what transformers' AutoTokenizer adds around text for tokenizer_config.json's add_bos_token /
add_eos_token over a tokenizer.json (developer tool, run by hand; the package never imports it).

Needs transformers and tokenizers (no torch). It builds a tiny Llama-2-like tokenizer.json (BPE
with byte fallback, "<unk>" "<s>" "</s>"), once with a post-processor adding BOS and once with
none, and prints, for each tokenizer_config.json case, the ids transformers gives for "ab" with
and without special tokens. Run it in one venv per transformers version and compare: it is the
evidence for dsnot_ref.data.BOS_EOS_FROM_CONFIG.

    python tools/probe_tokenizer_flags.py
"""

from __future__ import annotations

import json
import tempfile
import warnings
from pathlib import Path

import transformers
from tokenizers import Tokenizer, decoders, models, normalizers, processors

SPECIALS = {"bos_token": "<s>", "eos_token": "</s>", "unk_token": "<unk>"}
# (name, tokenizer_config.json, whether tokenizer.json's post-processor adds BOS)
CASES = [
    ("Llama fast, no flags", {"tokenizer_class": "LlamaTokenizerFast"}, False),
    ("Llama fast, no flags", {"tokenizer_class": "LlamaTokenizerFast"}, True),
    ("Llama fast, add_bos_token false", {"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": False}, True),
    ("Llama fast, add_bos_token true", {"tokenizer_class": "LlamaTokenizerFast", "add_bos_token": True}, False),
    ("Llama fast, add_eos_token true", {"tokenizer_class": "LlamaTokenizerFast", "add_eos_token": True}, True),
    ("Llama fast, add_eos_token false", {"tokenizer_class": "LlamaTokenizerFast", "add_eos_token": False}, True),
    ("Llama slow, add_bos_token false", {"tokenizer_class": "LlamaTokenizer", "add_bos_token": False}, True),
    ("CodeLlama fast, no flags", {"tokenizer_class": "CodeLlamaTokenizerFast"}, False),
    ("CodeLlama slow, add_bos_token false", {"tokenizer_class": "CodeLlamaTokenizer", "add_bos_token": False}, True),
    ("PreTrainedTokenizerFast, add_bos_token true",
     {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": True}, False),
    ("PreTrainedTokenizerFast, add_bos_token false",
     {"tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": False}, True),
    ("PreTrainedTokenizerFast, add_eos_token true",
     {"tokenizer_class": "PreTrainedTokenizerFast", "add_eos_token": True}, True),
    ("GPT2 fast, add_bos_token true", {"tokenizer_class": "GPT2TokenizerFast", "add_bos_token": True}, False),
    ("GPT2 fast, add_bos_token false", {"tokenizer_class": "GPT2TokenizerFast", "add_bos_token": False}, True),
]


def llama_like_tokenizer(adds_bos: bool) -> Tokenizer:
    vocab = {"<unk>": 0, "<s>": 1, "</s>": 2, "▁": 3, "a": 4, "b": 5, "▁a": 6, "ab": 7, "▁ab": 8}
    merges = [("▁", "a"), ("a", "b"), ("▁a", "b")]
    tokenizer = Tokenizer(models.BPE(vocab=vocab, merges=merges, unk_token="<unk>", fuse_unk=True,
                                     byte_fallback=True))
    tokenizer.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    tokenizer.decoder = decoders.Sequence([decoders.Replace("▁", " "), decoders.ByteFallback(), decoders.Fuse(),
                                           decoders.Strip(" ", 1, 0)])
    tokenizer.add_special_tokens(["<unk>", "<s>", "</s>"])
    if adds_bos:
        tokenizer.post_processor = processors.TemplateProcessing(
            single="<s> $A", pair="<s> $A <s> $B", special_tokens=[("<s>", 1)])
    return tokenizer


def probe(name: str, config: dict, adds_bos: bool, root: Path) -> str:
    model = root / f"case{len(list(root.iterdir()))}"
    model.mkdir()
    llama_like_tokenizer(adds_bos).save(str(model / "tokenizer.json"))
    (model / "tokenizer_config.json").write_text(json.dumps({**SPECIALS, **config}))
    where = f"{name} (tokenizer.json {'adds BOS' if adds_bos else 'adds nothing'})"
    try:
        tokenizer = transformers.AutoTokenizer.from_pretrained(str(model))
    except Exception as exc:  # report the failure as one of the outcomes
        return f"{where}: cannot load ({type(exc).__name__})"
    ids = tokenizer("ab")["input_ids"]
    plain = tokenizer("ab", add_special_tokens=False)["input_ids"]
    return f"{where}: {type(tokenizer).__name__} ids {ids}, without special tokens {plain}"


def main() -> None:
    warnings.filterwarnings("ignore")
    transformers.logging.set_verbosity_error()
    print(f"transformers {transformers.__version__}; <s> is id 1, </s> id 2")
    with tempfile.TemporaryDirectory() as root:
        for name, config, adds_bos in CASES:
            print(probe(name, config, adds_bos, Path(root)))


if __name__ == "__main__":
    main()
