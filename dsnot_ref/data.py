"""Corpora, tokenising and calibration windows, following the data protocol of the paper's code.

The DSnoT code (``lib/data.py``, itself from SparseGPT's ``datautils.py``) does:

- WikiText-2 calibration: the train split's lines joined with ``" "``, tokenised once; then
  ``random.seed(seed)`` and for each sequence ``i = random.randint(0, n_tokens - L - 1)``,
  window ``tokens[i : i + L]``.
- C4 calibration: ``random.seed(seed)``; for each sequence draw
  ``random.randint(0, n_docs - 1)`` and tokenise that document until one has more than L
  tokens, then ``i = random.randint(0, doc_len - L - 1)``, window ``doc[i : i + L]``.
- WikiText-2 evaluation: the test split's lines joined with ``"\\n\\n"``, tokenised once.

Which of the two sampling schemes applies is decided by the file type: a token *stream* for
``.txt`` (the whole file is one text) and WikiText ``.raw`` files; *documents* for JSON lines
(``.jsonl``, ``.json``, optionally gzipped, with a ``"text"`` field, as C4 shards are
distributed).

Tokenising uses the ``tokenizer.json`` of the model as it is, with its special-token rules:
``tokenizer.encode(text)`` equals Hugging Face's ``tokenizer(text)``, which is what the paper
calls. (SmolLM2's tokenizer adds no BOS; a LLaMA tokenizer's post-processor adds one.)
"""

from __future__ import annotations

import codecs
import hashlib
import json
import random
import zlib
from pathlib import Path

import numpy as np

from . import validate
from .errors import UserError

_REPO_ROOT = Path(__file__).resolve().parent.parent
BUNDLED_EVAL = _REPO_ROOT / "data" / "corpora" / "wiki_eval.txt"
BUNDLED_CALIBRATION = _REPO_ROOT / "data" / "corpora" / "wiki_calib.jsonl"

_JSON_LINES_SUFFIXES = (".jsonl", ".jsonl.gz", ".json", ".json.gz")
_STREAM_SUFFIXES = (".txt", ".txt.gz", ".raw")


# --- tokenizer ------------------------------------------------------------------------------

def load_tokenizer(model_dir):
    """The model's ``tokenizer.json`` as a ``tokenizers.Tokenizer``.

    It is used exactly as saved: no BOS is added unless the file's post-processor adds one (the
    paper's protocol tokenises raw text with the model's own tokenizer). What is read:
    ``tokenizer.json``, and from ``tokenizer_config.json`` only what transformers would let
    override it (``check_special_tokens``); vocab.json, merges.txt, tokenizer.model and
    special_tokens_map.json are not read (transformers' fast tokenizers do not need them when
    tokenizer.json is there).
    """
    from tokenizers import Tokenizer

    path = validate.tokenizer_file(model_dir)
    try:
        tokenizer = Tokenizer.from_file(str(path))
    except Exception as exc:  # tokenizers raises a bare Exception on a bad file
        raise UserError(f"cannot read tokenizer {path}: {str(exc).splitlines()[0]}") from None
    # transformers' tokenizer(text) neither truncates nor pads unless asked; a tokenizer.json
    # may declare both (a max length, a fixed padded length), which we must not apply either.
    tokenizer.no_truncation()
    tokenizer.no_padding()
    check_special_tokens(tokenizer, model_dir)
    return tokenizer


# tokenizer classes whose transformers 4 implementation (LlamaTokenizerFast,
# CodeLlamaTokenizerFast) rebuilds the post-processor from tokenizer_config.json's add_bos_token
# (default True) and add_eos_token (default False), whatever tokenizer.json's post-processor does.
# transformers 5 keeps tokenizer.json's post-processor for them, as PreTrainedTokenizerFast and
# GPT2TokenizerFast do in both (tools/probe_tokenizer_flags.py shows each case): where the flags
# and tokenizer.json disagree, the two generations tokenise differently, so the model is refused.
BOS_EOS_FROM_CONFIG = ("LlamaTokenizer", "LlamaTokenizerFast", "CodeLlamaTokenizer", "CodeLlamaTokenizerFast")


def check_special_tokens(tokenizer, model_dir) -> None:
    """Refuse a tokenizer_config.json whose tokenizer class adds BOS/EOS by its own flags in
    transformers 4 (BOS_EOS_FROM_CONFIG) when tokenizer.json does not do the same: transformers 4
    would then tokenise the evaluation text differently from us and from transformers 5, which
    keeps tokenizer.json's post-processor as we do. Other classes use tokenizer.json as is in both."""
    config_path = Path(model_dir) / "tokenizer_config.json"
    if not config_path.exists() and not config_path.is_symlink():
        return
    validate.model_file(model_dir, "tokenizer_config.json", "tokenizer config")
    config = validate.json_object(validate.read_json_file(config_path, "tokenizer config"), config_path,
                                  "tokenizer config")
    if config.get("tokenizer_class") not in BOS_EOS_FROM_CONFIG:
        return
    with_special, plain = tokenizer.encode("a").ids, tokenizer.encode("a", add_special_tokens=False).ids
    for key, token_key, default, added in (
            ("add_bos_token", "bos_token", True, with_special[:1] != plain[:1]),
            ("add_eos_token", "eos_token", False, with_special[-1:] != plain[-1:])):
        token = config.get(token_key)
        token = token.get("content") if isinstance(token, dict) else token
        wanted = config.get(key, default)
        if not isinstance(wanted, bool):
            raise UserError(f"invalid tokenizer config {config_path}: {key} must be true or false")
        if token is None:  # no such token: transformers adds nothing
            wanted = False
        if wanted != added:
            raise UserError(f"tokenizer config {config_path}: {key} is {str(wanted).lower()} for "
                            f"{config['tokenizer_class']}, but {validate.tokenizer_file(model_dir).name} "
                            f"{'does not add' if wanted else 'adds'} it; transformers 4 follows the flag, so it would "
                            "tokenise differently")


PIECE_CHARS = 1 << 16   # characters tokenised at a time
CONTEXT_CHARS = 256     # context kept on each side of a cut between pieces


def encode(tokenizer, text: str, where="text", limit: int | None = None, complete: bool = True) -> np.ndarray:
    """Token ids of ``text`` as int64 [T] (what ``tokenizer(text).input_ids`` gives in HF),
    tokenised a piece at a time (``encode_pieces``), so that memory holds the ids and one piece's
    encoding, not an encoding of the whole text (hundreds of bytes per character). With
    ``limit``, reading stops once at least ``limit`` ids are known (the first ids of the text).

    ``complete=False``: ``text`` is the beginning of a longer text; only the ids that the rest
    cannot change are returned (possibly fewer than ``limit``).

    A tokenizer that fails on the text (an error or a panic in the library) is a UserError
    naming ``where``.
    """
    try:
        ids = encode_pieces(tokenizer, text, limit, complete=complete)
        if ids is None and not complete:
            ids = np.zeros(0, dtype=np.int64)  # no safe cut in this beginning: read more of the text
        if ids is None:  # the tokenizer gave no place to cut: the whole text at once
            ids = np.asarray(tokenizer.encode(text).ids, dtype=np.int64)
    except Exception as exc:  # tokenizers raises bare Exceptions
        raise UserError(f"the tokenizer cannot encode {where}: {first_line(exc)}") from None
    except BaseException as exc:
        if type(exc).__name__ != "PanicException":  # a Rust panic (pyo3 makes it a BaseException)
            raise
        raise UserError(f"the tokenizer cannot encode {where} (it panicked: {first_line(exc)})") from None
    return ids if limit is None else ids[:max(limit, 0)]


def first_line(exc: BaseException) -> str:
    return (str(exc).strip().splitlines() or [type(exc).__name__])[0][:200]


def special_affixes(tokenizer) -> tuple[list[int], list[int]] | None:
    """(ids before, ids after) that the tokenizer's post-processor puts around one text (a BOS,
    an EOS), found on a probe; None if the probe's plain ids do not appear inside them."""
    plain = tokenizer.encode("a", add_special_tokens=False).ids
    full = tokenizer.encode("a").ids
    for k in range(len(full) - len(plain) + 1):
        if full[k:k + len(plain)] == plain:
            return full[:k], full[k + len(plain):]
    return None


def encode_pieces(tokenizer, text: str, limit: int | None = None, piece_chars: int = PIECE_CHARS,
                  context: int = CONTEXT_CHARS, complete: bool = True) -> np.ndarray | None:
    """The ids of ``text`` as one ``tokenizer.encode(text)`` gives them, from pieces of
    ``piece_chars`` characters; None when no safe cut is found (the caller encodes it whole).

    Each piece is ``text[pos - context : pos + piece_chars]``, encoded without special tokens.
    Its tokens from the one starting exactly at ``pos`` to the last one starting at least
    ``context`` characters before the piece's end are kept; the next piece starts at that
    token. A token is a cut only where it starts a new character (byte-level tokens of one
    character share its offsets), and ``pos`` must be a token start in the new piece too, or the
    pieces disagree and None is returned. The post-processor's special ids (``special_affixes``)
    go around the whole. Equality with the whole-text encoding: tests/test_faults.py. With
    ``complete=False`` the text's end is not the end of the text: the last piece ends at a cut too.
    """
    affixes = special_affixes(tokenizer)
    if complete and (affixes is None or len(text) <= piece_chars):
        return None if affixes is None else np.asarray(tokenizer.encode(text).ids, dtype=np.int64)
    if affixes is None:
        return None
    before, after = affixes
    parts, count, pos = [np.asarray(before, dtype=np.int64)], len(before), 0
    while True:
        lo, hi = max(0, pos - context), min(len(text), pos + piece_chars)
        encoding = tokenizer.encode(text[lo:hi], add_special_tokens=False)
        ids = encoding.ids
        starts = [lo + start for start, _ in encoding.offsets]
        ends = [lo + end for _, end in encoding.offsets]
        cuts = [k for k in range(1, len(ids)) if ends[k - 1] <= starts[k] and starts[k] > starts[k - 1]]
        first = 0 if pos == 0 else next((k for k in cuts if starts[k] == pos), None)
        if first is None:
            return None
        if hi == len(text) and complete:
            return np.concatenate([*parts, np.asarray(ids[first:], dtype=np.int64), np.asarray(after, dtype=np.int64)])
        cut = next((k for k in reversed(cuts) if k > first and starts[k] <= hi - context), None)
        if cut is None:
            return None if complete else np.concatenate(parts)
        if hi == len(text):  # the beginning of a longer text: what follows the cut may change
            return np.concatenate([*parts, np.asarray(ids[first:cut], dtype=np.int64)])
        parts.append(np.asarray(ids[first:cut], dtype=np.int64))
        count, pos = count + cut - first, starts[cut]
        if limit is not None and count >= limit:
            return np.concatenate(parts)


# --- reading corpora ------------------------------------------------------------------------

def corpus_kind(path) -> str:
    """``"stream"`` (one token stream) or ``"documents"`` (sampled document by document)."""
    name = Path(path).name.lower()
    if name.endswith(_JSON_LINES_SUFFIXES):
        return "documents"
    if name.endswith(_STREAM_SUFFIXES):
        return "stream"
    raise UserError(
        f"unsupported corpus file type {path}: expected .txt, .raw (WikiText), "
        ".jsonl, .jsonl.gz, .json or .json.gz (JSON lines with a 'text' field)"
    )


def _read_text(path: Path, universal_newlines: bool = False) -> str:
    """The file's text; line endings kept as they are unless ``universal_newlines``.

    Refuses a FIFO or other non-regular file, text that is not UTF-8, and more than
    ``validate.MAX_CORPUS_BYTES`` of text (a .gz is decompressed up to that many bytes, never
    further: a small archive that unpacks to gigabytes is refused, not unpacked).
    """
    path = validate.regular_file(path, "corpus")
    cap = validate.MAX_CORPUS_BYTES
    try:
        if path.name.lower().endswith(".gz"):
            data = gunzip_capped(path, cap)
        else:
            if path.stat().st_size > cap:
                raise UserError(f"corpus {path} is larger than {validate.format_bytes(cap)}")
            data = path.read_bytes()
    except (OSError, EOFError, zlib.error) as exc:  # e.g. a truncated or non-gzip .gz
        raise UserError(f"cannot read corpus {path}: {exc}") from None
    if len(data) > cap:
        raise UserError(f"corpus {path} decompresses to more than {validate.format_bytes(cap)}")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserError(f"corpus {path} is not UTF-8 text (byte {exc.start})") from None
    if universal_newlines:
        text = text.replace("\r\n", "\n").replace("\r", "\n")
    return text


MAX_GZIP_RATIO = 200  # text compresses 3-10x; deflate's most is ~1000x (a bomb, not text)


def gunzip_capped(path: Path, cap: int, max_ratio: int = MAX_GZIP_RATIO) -> bytes:
    """The decompressed bytes of a gzip file (every member), stopping once past ``cap`` bytes.

    UserError when the output passes ``cap``, or passes 64 MiB at more than ``max_ratio``
    output bytes per compressed byte read (a decompression bomb is refused after 64 MiB).
    """
    out = bytearray()
    inflate = zlib.decompressobj(wbits=31)
    with open(path, "rb") as f:
        data = f.read(2**20)
        n_read = len(data)
        while data and len(out) <= cap:
            out += inflate.decompress(data, min(cap + 1 - len(out), 2**24))
            if len(out) > 2**26 and len(out) > max_ratio * n_read:
                raise UserError(f"corpus {path} decompresses at more than {max_ratio}:1 "
                                "(a decompression bomb, not text)")
            if inflate.eof:  # the end of one member; what follows may be another
                data = inflate.unused_data
                if not data:
                    data = f.read(2**20)
                    n_read += len(data)
                if data:
                    inflate = zlib.decompressobj(wbits=31)
            else:
                data = inflate.unconsumed_tail
                if not data:
                    data = f.read(2**20)
                    n_read += len(data)
    if len(out) > cap:
        raise UserError(f"corpus {path} decompresses to more than {validate.format_bytes(cap)}")
    if not inflate.eof:
        raise EOFError("compressed file ended before the end-of-stream marker was reached")
    return bytes(out)


def _json_lines_texts(path: Path, content: str) -> list[str]:
    """The "text" of each line; lines end at "\n" only (JSON strings may hold a raw U+2028,
    U+2029 or U+0085, which ``str.splitlines`` would split at)."""
    texts = []
    for lineno, line in enumerate(content.split("\n"), start=1):
        if not line.strip():
            continue
        if validate.too_deep(line):
            raise UserError(f"corpus {path} line {lineno} nests JSON deeper than {validate.MAX_JSON_DEPTH} levels")
        try:
            record = json.loads(line)
        except json.JSONDecodeError as exc:
            raise UserError(f"corpus {path} line {lineno} is not JSON: {exc.msg}") from None
        except (ValueError, RecursionError):
            raise UserError(f"corpus {path} line {lineno} is not JSON") from None
        if not isinstance(record, dict) or not isinstance(record.get("text"), str):
            raise UserError(f"corpus {path} line {lineno} has no string 'text' field")
        if not validate.is_text(record["text"]):
            raise UserError(f"corpus {path} line {lineno}: the 'text' holds a lone surrogate escape (\\ud800 to "
                            "\\udfff), not text")
        texts.append(record["text"])
    return texts


def _wikitext_raw_lines(content: str) -> list[str]:
    """WikiText ``.raw`` lines as Hugging Face ``datasets`` rows: newline kept, blanks -> "".

    The ``wikitext`` loader iterates the file opened in text mode (universal newlines, so lines
    end at "\n" only after translation, not at the other separators ``str.splitlines`` knows)
    and yields ``row`` if ``row.strip()`` else ``""``.
    """
    parts = content.split("\n")
    lines = [part + "\n" for part in parts[:-1]] + ([parts[-1]] if parts[-1] else [])
    return [line if line.strip() else "" for line in lines]


def read_texts(path) -> list[str]:
    """The texts of a corpus file.

    ``.txt`` / ``.txt.gz``: the whole file is one text. ``.raw`` (WikiText-2 raw, e.g.
    ``wiki.test.raw``): one text per line, newline kept and whitespace-only lines empty, as the
    Hugging Face ``wikitext-2-raw-v1`` rows the paper joins. JSON lines (``.jsonl``,
    ``.jsonl.gz``, ``.json``, ``.json.gz``): the ``"text"`` field of each line, in file order.
    """
    path = Path(path)
    kind = corpus_kind(path)
    if not path.exists():
        raise UserError(f"corpus file {path} does not exist")
    name = path.name.lower()
    content = _read_text(path, universal_newlines=name.endswith(".raw"))
    if kind == "documents":
        texts = _json_lines_texts(path, content)
    elif name.endswith(".raw"):
        texts = _wikitext_raw_lines(content)
    else:
        texts = [content]
    if not any(t.strip() for t in texts):
        raise UserError(f"corpus {path} is empty")
    return texts


# --- evaluation -----------------------------------------------------------------------------

def eval_tokens(tokenizer, path, limit: int | None = None) -> np.ndarray:
    """The evaluation token stream [T] int64: texts joined by ``"\\n\\n"``, tokenised as one text
    (in pieces); with ``limit``, only its first ``limit`` tokens (or all, if fewer), read no
    further than needed."""
    tokens = None
    if limit is not None and Path(path).name.lower().endswith(PREFIX_SUFFIXES):
        tokens = first_tokens(tokenizer, Path(path), limit)
    if tokens is None:
        tokens = encode(tokenizer, "\n\n".join(read_texts(path)), f"corpus {path}", limit)
    if tokens.size == 0:
        raise UserError(f"corpus {path} gives no tokens")
    return tokens


PREFIX_SUFFIXES = (".txt", ".raw", ".jsonl", ".json")  # plain files read a beginning at a time


def first_tokens(tokenizer, path: Path, limit: int) -> np.ndarray | None:
    """The first ``limit`` ids of a plain (not gzipped) corpus, from as little of the file as gives
    them (1 MiB, then four times more each time); None when that would be the whole file anyway.

    A beginning of the file gives a beginning of the joined text: .txt up to its last complete
    character; .raw and JSON lines up to their last complete line, whose rows or texts are joined
    as ``read_texts`` would (what follows is "\\n\\n" and the next one).
    """
    path = validate.regular_file(path, "corpus")
    if path.stat().st_size > validate.MAX_CORPUS_BYTES:
        raise UserError(f"corpus {path} is larger than {validate.format_bytes(validate.MAX_CORPUS_BYTES)}")
    name = path.name.lower()
    n_bytes = 1 << 20
    while n_bytes < path.stat().st_size:
        with open(path, "rb") as f:
            data = f.read(n_bytes)
        if not name.endswith(".txt"):
            data = data[:data.rfind(b"\n") + 1]  # complete lines only
        try:  # an incomplete last character waits for the next, longer read
            content = codecs.getincrementaldecoder("utf-8")().decode(data, final=False)
        except UnicodeDecodeError as exc:
            raise UserError(f"corpus {path} is not UTF-8 text (byte {exc.start})") from None
        if name.endswith(".txt"):
            texts = [content]
        elif name.endswith(".raw"):
            texts = _wikitext_raw_lines(content.replace("\r\n", "\n").replace("\r", "\n"))
        else:
            texts = _json_lines_texts(path, content)
        ids = encode(tokenizer, "\n\n".join(texts), f"corpus {path}", limit, complete=False)
        if ids.size >= limit:
            return ids[:limit]
        n_bytes *= 4
    return None


# --- calibration ----------------------------------------------------------------------------

def calibration_windows(tokenizer, path, n_samples: int, seqlen: int, seed: int) -> np.ndarray:
    """S = ``n_samples`` calibration windows of L = ``seqlen`` tokens: [S, L] int64.

    Draws exactly the random numbers the paper's code draws, in the same order, from a
    ``random.Random(seed)`` (the same sequence as ``random.seed(seed)`` on the module, without
    touching the global generator). Stream corpora (.txt, .raw) use ``stream_windows`` on the
    texts joined by ``" "`` (as the WikiText-2 train split is); document corpora use
    ``document_windows``.
    """
    path = Path(path)
    if int(n_samples) < 1:
        raise UserError(f"number of calibration samples must be positive, got {n_samples}")
    if int(seqlen) < 1:
        raise UserError(f"calibration sequence length must be positive, got {seqlen}")
    texts = read_texts(path)
    rng = random.Random(seed)
    if corpus_kind(path) == "stream":
        return stream_windows(encode(tokenizer, " ".join(texts), f"corpus {path}"), int(n_samples), int(seqlen),
                              rng, path)
    return document_windows(tokenizer, texts, int(n_samples), int(seqlen), rng, path)


def stream_windows(tokens: np.ndarray, n_samples: int, seqlen: int, rng: random.Random,
                   path="corpus") -> np.ndarray:
    """[T] -> [S, L]: for each sample ``i = randint(0, T - L - 1)``, window ``tokens[i:i+L]``."""
    n_tokens = tokens.shape[0]
    if n_tokens < seqlen + 1:  # randint needs T - L - 1 >= 0
        raise UserError(
            f"corpus {path} is too short: {n_tokens} tokens, a window of L={seqlen} needs {seqlen + 1}"
        )
    windows = np.empty((n_samples, seqlen), dtype=np.int64)
    for s in range(n_samples):
        i = rng.randint(0, n_tokens - seqlen - 1)
        windows[s] = tokens[i:i + seqlen]
    return windows


def document_windows(tokenizer, docs: list[str], n_samples: int, seqlen: int,
                     rng: random.Random, path="corpus") -> np.ndarray:
    """Documents -> [S, L], the paper's C4 loop.

    For each sample: draw ``randint(0, len(docs) - 1)`` until the drawn document has more than
    L tokens, then ``i = randint(0, doc_len - L - 1)``. Documents are tokenised once each,
    when first drawn. If every document has been drawn and none is long enough the loop
    could never end, so that is a UserError.
    """
    cache: dict[int, np.ndarray] = {}
    n_long = 0  # tokenised documents with more than L tokens
    windows = np.empty((n_samples, seqlen), dtype=np.int64)
    for s in range(n_samples):
        while True:
            d = rng.randint(0, len(docs) - 1)
            if d not in cache:
                cache[d] = encode(tokenizer, docs[d], f"corpus {path} document {d + 1}")
                n_long += cache[d].shape[0] > seqlen
            if cache[d].shape[0] > seqlen:
                break
            if n_long == 0 and len(cache) == len(docs):
                longest = max(t.shape[0] for t in cache.values())
                raise UserError(
                    f"corpus {path} is too short: no document has more than L={seqlen} tokens "
                    f"(longest: {longest})"
                )
        tokens = cache[d]
        i = rng.randint(0, tokens.shape[0] - seqlen - 1)
        windows[s] = tokens[i:i + seqlen]
    return windows


# --- pre-tokenised calibration --------------------------------------------------------------

def load_calibration_tokens(path, vocab_size: int, max_len: int) -> np.ndarray:
    """An integer ``.npy`` of calibration windows [S, L], checked, as int64."""
    path = Path(path)
    if not path.exists():
        raise UserError(f"calibration tokens file {path} does not exist")
    shape, _ = validate.npy_file(path, "calibration tokens")  # declared shape, checked before loading
    if len(shape) != 2:
        raise UserError(f"calibration tokens {path} must have shape [S, L], got {shape}")
    try:
        tokens = np.load(path, allow_pickle=False)
    except (ValueError, OSError, EOFError) as exc:
        raise UserError(f"cannot read calibration tokens {path} as .npy: {exc}") from None
    if not isinstance(tokens, np.ndarray):
        raise UserError(f"calibration tokens {path} is not a single .npy array")
    if tokens.ndim != 2:
        raise UserError(f"calibration tokens {path} must have shape [S, L], got {tokens.shape}")
    if tokens.dtype.kind not in "iu":
        raise UserError(f"calibration tokens {path} must be integers, got dtype {tokens.dtype}")
    n_seq, seqlen = tokens.shape
    if n_seq < 1 or seqlen < 1:
        raise UserError(f"calibration tokens {path} has shape {tokens.shape}; S and L must be positive")
    if seqlen > max_len:
        raise UserError(f"calibration tokens {path} has L={seqlen}, more than the model's {max_len} positions")
    low, high = int(tokens.min()), int(tokens.max())
    if low < 0 or high >= vocab_size:
        raise UserError(
            f"calibration tokens {path} hold ids in [{low}, {high}], outside the vocabulary [0, {vocab_size})"
        )
    return tokens.astype(np.int64)


def tokens_hash(tokens) -> str:
    """sha256 hex of ``b"shape=S,L;"`` followed by the tokens as int64 little-endian, C order."""
    tokens = np.asarray(tokens)
    if tokens.dtype.kind not in "iu":
        raise TypeError(f"tokens_hash expects integer tokens, got {tokens.dtype}")
    digest = hashlib.sha256()
    digest.update(("shape=" + ",".join(str(n) for n in tokens.shape) + ";").encode("ascii"))
    digest.update(np.ascontiguousarray(tokens, dtype="<i8").tobytes())
    return digest.hexdigest()
