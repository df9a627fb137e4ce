"""Perplexity by the paper's protocol (spec §6), computed layer by layer over all windows.

The token stream is cut into ``n_tokens // L`` non-overlapping windows of L tokens; each window's
loss is the mean next-token cross-entropy over its L−1 predictions, and perplexity is
exp(mean over windows). Each layer's weights are read once for all windows: the hidden states
of every window are kept in one [W, L, D] array (a memory-mapped temporary file when large).
"""

from __future__ import annotations

import math
import os
import tempfile
import time
from pathlib import Path

import numpy as np

from . import model as model_lib
from .backend import to_device, to_numpy
from .errors import UserError
from .ops import QUERY_BLOCK, log_softmax_nll

ATTENTION_BUDGET_BYTES = 256 * 1024 * 1024   # scores of one chunk: B·H·L·L floats
CHUNK_TOKENS = 8192                          # tokens per chunk for everything else
MEMMAP_BYTES = 1024 * 1024 * 1024            # hidden states larger than this go to a temp file
HEAD_TOKENS = 256                            # positions per LM-head matmul: [T, V] logits stay small


def eval_windows(tokens_1d, seqlen: int, max_windows: int | None = None) -> np.ndarray:
    """Non-overlapping windows of the token stream.   [N] -> [W, L] int64, W = N // L (capped)"""
    tokens = np.asarray(tokens_1d)
    if tokens.ndim != 1:
        raise UserError(f"evaluation tokens must be one stream (1-D), got shape {list(tokens.shape)}")
    if seqlen < 2:
        raise UserError(f"seqlen must be at least 2 to have a next-token prediction, got {seqlen}")
    n_windows = tokens.size // seqlen
    if max_windows is not None:
        if max_windows < 1:
            raise UserError(f"max_windows must be at least 1, got {max_windows}")
        n_windows = min(n_windows, max_windows)
    if n_windows == 0:
        raise UserError(f"evaluation text has {tokens.size} tokens, fewer than one window of {seqlen}")
    return tokens[: n_windows * seqlen].astype(np.int64).reshape(n_windows, seqlen)


def chunk_size(config, seqlen: int, itemsize: int) -> int:
    """Windows per chunk: bounded by attention scores (B·H·QUERY_BLOCK·L) and by tokens (B·L)."""
    per_window = config.num_heads * min(seqlen, QUERY_BLOCK) * seqlen * itemsize
    return max(1, min(ATTENTION_BUDGET_BYTES // per_window, CHUNK_TOKENS // seqlen))


def window_nll(config, glob: dict, x, targets, xp) -> np.ndarray:
    """Per-position NLL of one window's next tokens.   x [L, D], targets [L−1] -> [L−1] float64

    The LM head runs on HEAD_TOKENS positions at a time so that [positions, V] logits stay small.
    """
    out = np.empty(targets.shape[0], dtype=np.float64)
    for start in range(0, targets.shape[0], HEAD_TOKENS):
        stop = min(start + HEAD_TOKENS, targets.shape[0])
        logits = model_lib.logits_with(config, glob, x[None, start:stop])[0]    # [T, V]
        out[start:stop] = to_numpy(log_softmax_nll(logits, to_device(targets[start:stop], xp)))
    return out


def hidden_buffer(shape: tuple[int, ...], dtype, tmp_dir: str):
    """[W, L, D] array for every window's hidden states; a memmap in ``tmp_dir`` when large.

    The file's blocks are allocated before it is mapped: a disk that fills up while the map is
    written would kill the process with SIGBUS; here it is a UserError naming the directory.
    """
    nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
    if nbytes <= MEMMAP_BYTES:
        return np.empty(shape, dtype=dtype)
    path = Path(tmp_dir) / "hidden.f"
    with open(path, "wb") as f:
        try:
            os.posix_fallocate(f.fileno(), 0, nbytes)
        except OSError as exc:
            raise UserError(f"the hidden states of the evaluation need {nbytes / 2**30:.2f} GiB in {tmp_dir} "
                            f"({exc.strerror}); set TMPDIR to a directory with room, or use --max-windows") from None
    return np.memmap(path, dtype=dtype, mode="r+", shape=shape)


def run_layers_(model, windows, hidden, dtype, xp, report) -> None:
    """Fill ``hidden`` [W, L, D] with the last layer's output for every window, in place.

    Layer by layer: each layer's weights are read once and applied to all windows, a chunk of
    windows at a time. ``report(done, message)`` counts windows finished across layers.
    """
    config = model.config
    n_windows, seqlen = windows.shape
    step = chunk_size(config, seqlen, np.dtype(dtype).itemsize)
    starts = range(0, n_windows, step)
    for s in starts:
        hidden[s: s + step] = to_numpy(model_lib.embed(model, windows[s: s + step], dtype, xp))
    for i in range(config.num_layers):
        layer = model_lib.load_layer(model, i, dtype, xp)
        for s in starts:
            x = to_device(np.asarray(hidden[s: s + step]), xp)             # [B, L, D]
            hidden[s: s + step] = to_numpy(model_lib.block_forward(config, layer, x))
            report(i * n_windows + min(s + step, n_windows), f"layer {i}")
        del layer


def exp_or_inf(x: float) -> float:
    """exp(x), or inf where it overflows a float (a mean NLL above about 709.78)."""
    try:
        return math.exp(x)
    except OverflowError:
        return math.inf


def perplexity(model, tokens_1d, seqlen: int, dtype=np.float32, max_windows: int | None = None,
               progress=None, xp=np) -> dict:
    """Perplexity of ``model`` on a token stream (spec §6).

    ``progress(done, total, message)`` is called after each chunk of windows in each pass
    (num_layers + 1 passes of W windows: every layer, then the LM head).
    Returns {"perplexity", "mean_nll", "window_nll" (each window's mean NLL, [W] as a list: the
    samples behind paired error bars), "n_windows", "n_tokens" (evaluated, W·L),
    "n_tokens_in_text", "seqlen", "seconds"}.
    """
    started = time.perf_counter()
    config = model.config
    dtype = model_lib.work_dtype(dtype)
    if seqlen > config.max_positions:
        raise UserError(f"seqlen {seqlen} exceeds max_position_embeddings {config.max_positions} "
                        f"of {model.path}")
    windows = eval_windows(tokens_1d, seqlen, max_windows)                # [W, L]
    model_lib.check_tokens(config, windows, "evaluation windows", model.path)
    n_windows = windows.shape[0]
    total = n_windows * (config.num_layers + 1)
    report = progress or (lambda done, total, message: None)
    with tempfile.TemporaryDirectory(prefix="dsnot-eval-") as tmp_dir:
        hidden = hidden_buffer((n_windows, seqlen, config.hidden_size), dtype, tmp_dir)
        run_layers_(model, windows, hidden, dtype, xp, lambda done, msg: report(done, total, msg))
        glob = model_lib.load_globals(model, dtype, xp)
        window_loss = np.empty(n_windows, dtype=np.float64)
        for w in range(n_windows):
            x = to_device(np.asarray(hidden[w]), xp)                         # [L, D]
            window_loss[w] = window_nll(config, glob, x, windows[w, 1:], xp).mean()
            report(config.num_layers * n_windows + w + 1, total, "LM head")
        del hidden
    mean_nll = float(window_loss.mean())
    return {
        "perplexity": exp_or_inf(mean_nll),
        "mean_nll": mean_nll,
        "window_nll": window_loss.tolist(),
        "n_windows": int(n_windows),
        "n_tokens": int(n_windows * seqlen),
        "n_tokens_in_text": int(np.asarray(tokens_1d).size),
        "seqlen": int(seqlen),
        "seconds": time.perf_counter() - started,
    }
