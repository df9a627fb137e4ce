"""Perplexity against an independent computation (whole-model forward + scipy log-softmax),
invariance to chunking and memory-mapping, one read per weight, overlays, and the eval CLI."""

import json
import math
from pathlib import Path

import numpy as np
import pytest
import scipy.special

from dsnot_ref import evaluate
from dsnot_ref.cli import main
from dsnot_ref.errors import UserError
from dsnot_ref.evaluate import eval_windows, perplexity
from dsnot_ref.model import forward, load_model
from dsnot_ref.weights import OverlayStore, WeightStore

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"


def stream(n: int, vocab: int = 256, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, vocab, size=n, dtype=np.int64)


def oracle_perplexity(model, tokens, seqlen, max_windows=None) -> float:
    """exp(mean over windows of mean next-token NLL), from float64 logits of whole windows."""
    n = len(tokens) // seqlen if max_windows is None else min(len(tokens) // seqlen, max_windows)
    windows = tokens[: n * seqlen].reshape(n, seqlen)
    logp = scipy.special.log_softmax(forward(model, windows, dtype=np.float64), axis=-1)
    nll = -np.take_along_axis(logp[:, :-1], windows[:, 1:, None], axis=-1)[..., 0]   # [W, L-1]
    return math.exp(nll.mean(axis=1).mean())


@pytest.mark.parametrize("name", ["tiny-llama", "tiny-opt", "opt-postln-proj"])
def test_perplexity_matches_independent_computation(name):
    model = load_model(FIXTURES / name)
    tokens = stream(1000)
    result = perplexity(model, tokens, 64)
    assert result["n_windows"] == 1000 // 64 and result["n_tokens"] == 15 * 64 and result["seqlen"] == 64
    assert result["perplexity"] == pytest.approx(oracle_perplexity(model, tokens, 64), rel=1e-5)
    assert result["perplexity"] == pytest.approx(math.exp(result["mean_nll"]))
    r64 = perplexity(model, tokens, 64, dtype=np.float64)
    assert r64["perplexity"] == pytest.approx(oracle_perplexity(model, tokens, 64), rel=1e-10)


def test_window_losses_are_each_windows_own_perplexity():
    model = load_model(FIXTURES / "tiny-llama")
    tokens = stream(5 * 32 + 7, seed=2)
    result = perplexity(model, tokens, 32)
    assert len(result["window_nll"]) == result["n_windows"] == 5
    assert np.mean(result["window_nll"]) == pytest.approx(result["mean_nll"], rel=1e-12)
    for w, loss in enumerate(result["window_nll"]):
        alone = perplexity(model, tokens[w * 32:(w + 1) * 32], 32)
        assert loss == pytest.approx(alone["mean_nll"], rel=1e-5)
        assert math.exp(loss) == pytest.approx(oracle_perplexity(model, tokens[w * 32:(w + 1) * 32], 32), rel=1e-5)


def test_chunking_and_memmap_do_not_change_the_result(monkeypatch):
    model = load_model(FIXTURES / "tiny-llama")
    tokens = stream(700, seed=3)
    plain = perplexity(model, tokens, 32)["perplexity"]
    monkeypatch.setattr(evaluate, "CHUNK_TOKENS", 96)       # 3 windows per chunk
    monkeypatch.setattr(evaluate, "MEMMAP_BYTES", 0)        # hidden states on disk
    monkeypatch.setattr(evaluate, "HEAD_TOKENS", 5)         # LM head in pieces
    assert perplexity(model, tokens, 32)["perplexity"] == pytest.approx(plain, rel=1e-6)


def test_max_windows_and_progress():
    model = load_model(FIXTURES / "tiny-opt")
    tokens = stream(2000, seed=1)
    calls = []
    result = perplexity(model, tokens, 50, max_windows=7, progress=lambda d, t, m: calls.append((d, t, m)))
    assert result["n_windows"] == 7
    assert result["perplexity"] == pytest.approx(oracle_perplexity(model, tokens, 50, 7), rel=1e-5)
    total = 7 * (model.config.num_layers + 1)
    assert calls[-1][:2] == (total, total)
    assert [d for d, _, _ in calls] == sorted(d for d, _, _ in calls)


def test_weights_are_read_once_per_layer_for_many_windows():
    class CountingStore(WeightStore):
        reads: list

        def get(self, name, dtype=np.float32):
            self.reads.append(name)
            return super().get(name, dtype)

    store = CountingStore(FIXTURES / "tiny-llama")
    store.reads = []
    perplexity(load_model(FIXTURES / "tiny-llama", store=store), stream(40 * 16), 16)
    layer_reads = [n for n in store.reads if ".layers." in n]
    assert len(layer_reads) == len(set(layer_reads)) == sum(".layers." in n for n in store.names())


def test_overlay_store_is_evaluated():
    base = load_model(FIXTURES / "tiny-llama")
    name = "model.layers.0.mlp.down_proj.weight"
    overlay = OverlayStore(base.store, {name: np.zeros(base.store.shape(name), np.float32)})
    pruned = load_model(FIXTURES / "tiny-llama", store=overlay)
    tokens = stream(300, seed=5)
    got = perplexity(pruned, tokens, 30)["perplexity"]
    assert got == pytest.approx(oracle_perplexity(pruned, tokens, 30), rel=1e-5)
    assert got != pytest.approx(perplexity(base, tokens, 30)["perplexity"], rel=1e-3)


def test_windows_and_errors():
    assert eval_windows(np.arange(10), 3).tolist() == [[0, 1, 2], [3, 4, 5], [6, 7, 8]]
    with pytest.raises(UserError, match="fewer than one window"):
        eval_windows(np.arange(10), 11)
    with pytest.raises(UserError, match="1-D"):
        eval_windows(np.zeros((2, 5)), 2)
    with pytest.raises(UserError, match="at least 1"):
        eval_windows(np.arange(10), 2, max_windows=0)
    model = load_model(FIXTURES / "tiny-llama")
    with pytest.raises(UserError, match="max_position_embeddings"):
        perplexity(model, stream(1000), model.config.max_positions + 1)
    with pytest.raises(UserError, match="outside the model.s vocabulary"):
        perplexity(model, np.full(20, 300), 10)


# --------------------------------------------------------------------------- CLI

def test_eval_cli_writes_results(tmp_path, capsys):
    from dsnot_ref.data import eval_tokens, load_tokenizer

    text = tmp_path / "corpus.txt"
    text.write_text("The quick brown fox jumps over the lazy dog.\n" * 40, encoding="utf-8")
    results = tmp_path / "out" / "r.json"
    model_dir = FIXTURES / "tiny-llama"
    rc = main(["eval", "--model", str(model_dir), "--dataset", str(text), "--seqlen", "64",
               "--max-windows", "5", "--results", str(results), "--quiet"])
    assert rc == 0
    out = capsys.readouterr()
    saved = json.loads(results.read_text())
    tokens = eval_tokens(load_tokenizer(model_dir), text)
    expected = perplexity(load_model(model_dir), tokens, 64, max_windows=5)["perplexity"]
    assert saved["perplexity"] == pytest.approx(expected, rel=1e-9)
    assert saved["n_windows"] == 5 and saved["n_tokens"] == 320
    assert saved["settings"]["seqlen"] == 64 and saved["settings"]["dtype"] == "float32"
    assert saved["wall_seconds"] >= saved["eval_seconds"] > 0
    assert f"{expected:.4f}" in out.out and out.err == ""


def test_eval_cli_default_seqlen_is_capped_and_a_given_one_is_not(tmp_path, capsys):
    """The default window (2048) is capped at the model's positions and recorded as used; a
    window given larger than the model takes is refused, not silently shortened."""
    text = tmp_path / "corpus.txt"
    text.write_text("abcdefghij" * 100, encoding="utf-8")
    results = tmp_path / "r.json"
    rc = main(["eval", "--model", str(FIXTURES / "tiny-opt"), "--dataset", str(text), "--results", str(results),
               "--quiet"])
    assert rc == 0
    settings = json.loads(results.read_text())["settings"]
    assert (settings["seqlen"], settings["seqlen_requested"]) == (256, None)
    capsys.readouterr()
    rc = main(["eval", "--model", str(FIXTURES / "tiny-opt"), "--dataset", str(text), "--seqlen", "4096",
               "--results", str(tmp_path / "r2.json"), "--quiet"])
    err = capsys.readouterr().err
    assert rc == 2 and "--seqlen 4096 exceeds the 256 positions" in err and err.count("\n") == 1
    assert not (tmp_path / "r2.json").exists()


@pytest.mark.parametrize("args, words", [
    (["--model", "/no/such/model"], "/no/such/model"),
    (["--model", str(FIXTURES / "tiny-llama"), "--dataset", "/no/such.txt"], "/no/such.txt"),
])
def test_eval_cli_user_errors_exit_2_with_one_line(args, words, capsys):
    assert main(["eval", *args, "--quiet"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("dsnot-ref: error:") and words in err and "\n" not in err
