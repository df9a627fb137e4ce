"""Corpus readers, calibration sampling (against a transcription of the paper's loops), errors,
the bundled corpora's hashes and layout, and (slow) the demo tokenizer's round trip."""

from __future__ import annotations

import gzip
import hashlib
import json
import random
import re
from pathlib import Path

import numpy as np
import pytest
from tokenizers import Tokenizer, decoders, models, pre_tokenizers

from dsnot_ref import data
from dsnot_ref.errors import UserError

REPO = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def byte_tokenizer():
    """Byte-level BPE without merges: one token per UTF-8 byte, so counts are checkable by hand."""
    alphabet = sorted(pre_tokenizers.ByteLevel.alphabet())
    tok = Tokenizer(models.BPE(vocab={ch: i for i, ch in enumerate(alphabet)}, merges=[]))
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    return tok


def write_jsonl(path: Path, texts, gz=False):
    body = "".join(json.dumps({"text": t, "id": k}) + "\n" for k, t in enumerate(texts))
    if gz:
        with gzip.open(path, "wt", encoding="utf-8") as fh:
            fh.write(body)
    else:
        path.write_text(body, encoding="utf-8")
    return path


DOCS = ["short", "A somewhat longer document, with punctuation.", "", "Ünïcode — text ✓ 123"]


# --- readers --------------------------------------------------------------------------------

def test_txt_is_one_text(tmp_path):
    p = tmp_path / "a.txt"
    p.write_bytes("line one\n\nline two\r\nend".encode())
    assert data.read_texts(p) == ["line one\n\nline two\r\nend"]
    assert data.corpus_kind(p) == "stream"


@pytest.mark.parametrize("name,gz", [("c.jsonl", False), ("c.jsonl.gz", True), ("c.json.gz", True), ("c.json", False)])
def test_json_lines_formats(tmp_path, name, gz):
    p = write_jsonl(tmp_path / name, DOCS, gz=gz)
    assert data.read_texts(p) == DOCS
    assert data.corpus_kind(p) == "documents"


def test_wikitext_raw_like_hf_rows(tmp_path):
    # wiki.test.raw layout; Hugging Face's rows keep the newline and turn blank lines into "".
    raw = " \n = Title = \n \n Para one . \n Para two . \n \n = = Sec = = \n \n"
    p = tmp_path / "wiki.test.raw"
    p.write_text(raw, encoding="utf-8")
    rows = data.read_texts(p)
    assert rows == ["", " = Title = \n", "", " Para one . \n", " Para two . \n", "", " = = Sec = = \n", ""]
    assert "".join(r if r else " \n" for r in rows) == raw
    # Line ends as Python's text-mode iteration sees them (what the Hugging Face loader does).
    odd = " a\u2028b \r\n \n c\x85d \r e"
    p.write_bytes(odd.encode("utf-8"))
    with open(p, encoding="utf-8") as fh:
        want = [row if row.strip() else "" for row in fh]
    assert data.read_texts(p) == want == [" a\u2028b \n", "", " c\x85d \n", " e"]


def test_eval_tokens_join_with_blank_lines(tmp_path, byte_tokenizer):
    p = write_jsonl(tmp_path / "e.jsonl", ["ab", "cé"])
    tokens = data.eval_tokens(byte_tokenizer, p)
    assert tokens.dtype == np.int64
    assert len(tokens) == len("ab\n\ncé".encode())  # one token per byte
    assert byte_tokenizer.decode(tokens.tolist()) == "ab\n\ncé"


def test_reader_errors(tmp_path):
    with pytest.raises(UserError, match="does not exist"):
        data.read_texts(tmp_path / "missing.txt")
    (tmp_path / "x.csv").write_text("a,b")
    with pytest.raises(UserError, match="unsupported corpus file type"):
        data.read_texts(tmp_path / "x.csv")
    (tmp_path / "empty.txt").write_text(" \n\n")
    with pytest.raises(UserError, match="empty"):
        data.read_texts(tmp_path / "empty.txt")
    (tmp_path / "bad.jsonl").write_text('{"text": "ok"}\n{not json}\n')
    with pytest.raises(UserError, match="line 2 is not JSON"):
        data.read_texts(tmp_path / "bad.jsonl")
    (tmp_path / "nofield.jsonl").write_text('{"content": "x"}\n')
    with pytest.raises(UserError, match="line 1 has no string 'text'"):
        data.read_texts(tmp_path / "nofield.jsonl")
    (tmp_path / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    with pytest.raises(UserError, match="not UTF-8"):
        data.read_texts(tmp_path / "latin1.txt")
    (tmp_path / "fake.jsonl.gz").write_bytes(b"not gzip")
    with pytest.raises(UserError, match="fake.jsonl.gz"):
        data.read_texts(tmp_path / "fake.jsonl.gz")


def test_load_tokenizer_errors(tmp_path):
    with pytest.raises(UserError, match="no tokenizer.json"):
        data.load_tokenizer(tmp_path)
    (tmp_path / "tokenizer.json").write_text("{}")
    with pytest.raises(UserError, match="cannot read tokenizer"):
        data.load_tokenizer(tmp_path)


# --- calibration sampling: a plain transcription of DSnoT's lib/data.py ----------------------

def paper_wikitext2_loop(tokenizer, train_rows, nsamples, seed, seqlen):
    """get_wikitext2: trainenc = tokenizer(" ".join(traindata['text'])) ..."""
    ids = tokenizer.encode(" ".join(train_rows)).ids
    random.seed(seed)
    out = []
    for _ in range(nsamples):
        i = random.randint(0, len(ids) - seqlen - 1)
        j = i + seqlen
        out.append(ids[i:j])
    return out


def paper_c4_loop(tokenizer, traindata, nsamples, seed, seqlen):
    """get_c4: redraw a document until it has more than seqlen tokens, then a random window."""
    random.seed(seed)
    out = []
    for _ in range(nsamples):
        while True:
            i = random.randint(0, len(traindata) - 1)
            trainenc = tokenizer.encode(traindata[i]).ids
            if len(trainenc) > seqlen:
                break
        i = random.randint(0, len(trainenc) - seqlen - 1)
        j = i + seqlen
        out.append(trainenc[i:j])
    return out


WORDS = "the of and to in a is was for on as with by he at from his it an were are which".split()


def random_docs(seed, n_docs, max_words):
    rng = np.random.default_rng(seed)
    return [" ".join(rng.choice(WORDS, size=int(rng.integers(1, max_words)))) for _ in range(n_docs)]


@pytest.mark.parametrize("seed", [0, 1, 7])
def test_document_sampling_matches_paper_loop(tmp_path, byte_tokenizer, seed):
    docs = random_docs(seed, 40, 30)  # many documents shorter than L: exercises the redraw
    path = write_jsonl(tmp_path / "c4.jsonl.gz", docs, gz=True)
    got = data.calibration_windows(byte_tokenizer, path, n_samples=12, seqlen=64, seed=seed)
    want = np.array(paper_c4_loop(byte_tokenizer, docs, 12, seed, 64), dtype=np.int64)
    assert got.shape == (12, 64) and got.dtype == np.int64
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("seed", [0, 3])
def test_stream_sampling_matches_paper_loop_raw(tmp_path, byte_tokenizer, seed):
    lines = random_docs(seed + 100, 30, 20)
    raw = "".join(f" {line} \n \n" for line in lines)
    path = tmp_path / "wiki.train.raw"
    path.write_text(raw, encoding="utf-8")
    # Independent reading of the rows: newline kept, blank lines "" (Hugging Face wikitext).
    rows = [r if r.strip() else "" for r in raw.splitlines(keepends=True)]
    got = data.calibration_windows(byte_tokenizer, path, n_samples=9, seqlen=50, seed=seed)
    np.testing.assert_array_equal(got, np.array(paper_wikitext2_loop(byte_tokenizer, rows, 9, seed, 50)))


def test_stream_sampling_txt_whole_file(tmp_path, byte_tokenizer):
    text = "\n".join(random_docs(5, 20, 20))
    path = tmp_path / "stream.txt"
    path.write_text(text, encoding="utf-8")
    got = data.calibration_windows(byte_tokenizer, path, n_samples=5, seqlen=32, seed=11)
    np.testing.assert_array_equal(got, np.array(paper_wikitext2_loop(byte_tokenizer, [text], 5, 11, 32)))
    # every window is a contiguous piece of the text
    for row in got:
        assert byte_tokenizer.decode(row.tolist()) in text


def test_sampling_deterministic_and_leaves_global_random_alone(tmp_path, byte_tokenizer):
    path = write_jsonl(tmp_path / "c.jsonl", random_docs(2, 30, 40))
    random.seed(1234)
    state = random.getstate()
    a = data.calibration_windows(byte_tokenizer, path, 6, 40, seed=0)
    assert random.getstate() == state
    b = data.calibration_windows(byte_tokenizer, path, 6, 40, seed=0)
    c = data.calibration_windows(byte_tokenizer, path, 6, 40, seed=1)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_sampling_errors(tmp_path, byte_tokenizer):
    short_docs = write_jsonl(tmp_path / "short.jsonl", ["tiny", "also tiny", "x" * 20])
    with pytest.raises(UserError, match=r"short.jsonl is too short.*L=20 .*longest: 20"):
        data.calibration_windows(byte_tokenizer, short_docs, 2, 20, seed=0)
    # exactly L tokens is not enough (the paper wants more than L), L+1 is
    np.testing.assert_array_equal(
        data.calibration_windows(byte_tokenizer, short_docs, 3, 19, seed=0),
        np.array([list(byte_tokenizer.encode("x" * 20).ids[:19])] * 3),
    )
    stream = tmp_path / "s.txt"
    stream.write_text("abcdefghij")  # 10 tokens
    with pytest.raises(UserError, match=r"s.txt is too short: 10 tokens"):
        data.calibration_windows(byte_tokenizer, stream, 1, 10, seed=0)
    assert data.calibration_windows(byte_tokenizer, stream, 1, 9, seed=0).shape == (1, 9)
    with pytest.raises(UserError, match="samples must be positive"):
        data.calibration_windows(byte_tokenizer, stream, 0, 4, seed=0)
    with pytest.raises(UserError, match="length must be positive"):
        data.calibration_windows(byte_tokenizer, stream, 2, 0, seed=0)


# --- .npy calibration tokens and their hash -------------------------------------------------

def test_load_calibration_tokens(tmp_path):
    good = np.arange(12, dtype=np.int32).reshape(3, 4)
    np.save(tmp_path / "good.npy", good)
    got = data.load_calibration_tokens(tmp_path / "good.npy", vocab_size=12, max_len=4)
    assert got.dtype == np.int64
    np.testing.assert_array_equal(got, good)

    cases = {
        "ndim.npy": (np.zeros(5, dtype=np.int64), "shape \\[S, L\\]"),
        "float.npy": (np.zeros((2, 3), dtype=np.float32), "must be integers"),
        "empty.npy": (np.zeros((0, 3), dtype=np.int64), "S and L must be positive"),
        "long.npy": (np.zeros((1, 5), dtype=np.int64), "L=5, more than the model's 4"),
        "high.npy": (np.full((1, 2), 12, dtype=np.int64), "outside the vocabulary \\[0, 12\\)"),
        "neg.npy": (np.full((1, 2), -1, dtype=np.int64), "outside the vocabulary"),
    }
    for name, (array, message) in cases.items():
        np.save(tmp_path / name, array)
        with pytest.raises(UserError, match=message):
            data.load_calibration_tokens(tmp_path / name, vocab_size=12, max_len=4)
    np.save(tmp_path / "obj.npy", np.array([[1, "a"]], dtype=object), allow_pickle=True)
    (tmp_path / "junk.npy").write_bytes(b"definitely not npy")
    for name in ("obj.npy", "junk.npy", "missing.npy"):
        with pytest.raises(UserError, match=name):
            data.load_calibration_tokens(tmp_path / name, vocab_size=12, max_len=4)


def test_tokens_hash():
    t = np.arange(6, dtype=np.int32).reshape(2, 3)
    expected = hashlib.sha256(b"shape=2,3;" + np.arange(6, dtype="<i8").tobytes()).hexdigest()
    assert data.tokens_hash(t) == expected
    assert data.tokens_hash(t.astype(np.int64)) == expected           # dtype-independent
    assert data.tokens_hash(t.reshape(3, 2)) != expected              # shape matters
    assert data.tokens_hash(np.asfortranarray(t)) == expected         # memory order does not
    assert data.tokens_hash(t[:, ::-1]) != expected


# --- bundled corpora ------------------------------------------------------------------------

def readme_hashes():
    text = (REPO / "data" / "README.md").read_text(encoding="utf-8")
    return dict(re.findall(r"^\| corpora/(\S+) \| `([0-9a-f]{64})` \|$", text, flags=re.M))


def test_bundled_corpora_match_readme_hashes():
    hashes = readme_hashes()
    assert set(hashes) == {data.BUNDLED_EVAL.name, data.BUNDLED_CALIBRATION.name}
    for path in (data.BUNDLED_EVAL, data.BUNDLED_CALIBRATION):
        assert path.parent == REPO / "data" / "corpora"
        assert hashlib.sha256(path.read_bytes()).hexdigest() == hashes[path.name], path


def eval_titles():
    return re.findall(r"^ = ([^=].*?) = $", data.BUNDLED_EVAL.read_text(encoding="utf-8"), flags=re.M)


def test_bundled_eval_has_wikitext_layout():
    text = data.BUNDLED_EVAL.read_text(encoding="utf-8")
    lines = text.split("\n")
    assert lines[-1] == "" and all(line.startswith(" ") and line.endswith(" ") for line in lines[:-1])
    assert len(eval_titles()) == 105
    assert not re.search(r"\{\{|\}\}|\[\[|\]\]|<ref|&nbsp;|https?://", text)
    assert len(re.findall(r"^ = = .+ = = $", text, flags=re.M)) > 500
    assert not re.search(r"^ = = (References|External links|See also) = = $", text, flags=re.M)
    assert data.read_texts(data.BUNDLED_EVAL) == [text]


def test_bundled_calibration_is_c4_like_and_disjoint():
    lines = data.BUNDLED_CALIBRATION.read_text(encoding="utf-8").splitlines()
    records = [json.loads(line) for line in lines]
    assert all(isinstance(r["text"], str) and r["text"].strip() for r in records)
    assert data.read_texts(data.BUNDLED_CALIBRATION) == [r["text"] for r in records]
    titles = [t.casefold() for r in records for t in r["titles"]]
    assert len(set(titles)) == len(titles) > 1500
    assert not set(titles) & {t.casefold() for t in eval_titles()}
    # one summary per title, blank lines between them (a summary may hold one itself)
    assert all(r["text"].count("\n\n") >= len(r["titles"]) - 1 for r in records)
    assert 900_000 < data.BUNDLED_CALIBRATION.stat().st_size <= 1_000_000


# --- slow: the demo model's tokenizer -------------------------------------------------------

@pytest.fixture(scope="module")
def demo_tokenizer():
    from dsnot_ref.demo_model import fetch_demo_model

    try:
        model_dir = fetch_demo_model()
    except UserError as exc:
        pytest.skip(f"demo model unavailable: {exc}")
    return data.load_tokenizer(model_dir)


@pytest.mark.slow
@pytest.mark.parametrize("path", [data.BUNDLED_EVAL, data.BUNDLED_CALIBRATION], ids=["eval", "calib"])
def test_demo_tokenizer_round_trip(demo_tokenizer, path):
    texts = data.read_texts(path)
    for text, enc in zip(texts, demo_tokenizer.encode_batch(texts)):
        assert demo_tokenizer.decode(enc.ids, skip_special_tokens=False) == text
    stream = data.eval_tokens(demo_tokenizer, path)
    assert stream.min() > 16  # no control tokens (ids 0-16), and no BOS (id 1) added
    assert len(stream) < len("\n\n".join(texts).encode()) / 3  # real merges: > 3 bytes a token


@pytest.mark.slow
def test_bundled_calibration_supports_paper_window_length(demo_tokenizer):
    """128 windows of 2048 tokens (the paper's setting) can be drawn from the bundled corpus."""
    windows = data.calibration_windows(demo_tokenizer, data.BUNDLED_CALIBRATION, 128, 2048, seed=0)
    assert windows.shape == (128, 2048)
    docs = data.read_texts(data.BUNDLED_CALIBRATION)
    for row in windows[:8]:
        piece = demo_tokenizer.decode(row[1:-1].tolist())  # inner tokens decode to a substring
        assert any(piece in doc for doc in docs)


@pytest.mark.slow
def test_demo_tokenizer_specials_and_digits(demo_tokenizer):
    assert demo_tokenizer.token_to_id("<|im_start|>") == 1 and demo_tokenizer.token_to_id("<|im_end|>") == 2
    assert demo_tokenizer.encode("<|im_start|>user").ids[0] == 1
    digits = demo_tokenizer.encode("year 2024").tokens
    assert digits[-4:] == ["2", "0", "2", "4"]  # every digit on its own
    assert demo_tokenizer.encode(" the").tokens == ["Ġthe"]  # GPT-2 byte-level space marker
