"""What the three notebooks share: the size setting, which model to use, a layer's inputs.

Nothing here is part of the method; the method lives in ``dsnot_ref`` and the notebooks import
it from there. This module only keeps the notebooks' set-up cells short and identical.

Size (environment variable DSNOT_REF_NOTEBOOK_SIZE):
- ``small``: what the test suite runs. The tiny test model of data/fixtures/tiny-llama for
  notebooks 1 and 2, a few short calibration windows, a few evaluation windows.
- ``full``: what the rendered copies show. The demo model (SmolLM2-135M) when it is cached,
  more and longer windows.
Notebook 3 uses the demo model whenever it is cached (with small budgets in the small size).
Nothing here downloads anything: ``python -m dsnot_ref demo`` (or
``dsnot_ref.demo_model.fetch_demo_model()``) fetches the demo model once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZE_VARIABLE = "DSNOT_REF_NOTEBOOK_SIZE"


@dataclass(frozen=True)
class NotebookSize:
    name: str                 # "small" | "full"
    n_calibration: int        # S, calibration sequences for one layer (notebooks 1, 2)
    seqlen: int               # L, tokens per calibration sequence
    layer_demo: int           # which decoder layer to study on the demo model
    n_calibration_model: int  # S for pruning the whole model (notebook 3)
    seqlen_model: int         # L for notebook 3 (calibration and evaluation windows)
    n_eval_windows: int       # evaluation windows for perplexity (notebook 3)
    prefer_demo_for_layer: bool  # notebooks 1-2 use the demo model when it is cached


SIZES = {
    "small": NotebookSize("small", n_calibration=4, seqlen=32, layer_demo=2,
                          n_calibration_model=2, seqlen_model=64, n_eval_windows=2,
                          prefer_demo_for_layer=False),
    "full": NotebookSize("full", n_calibration=32, seqlen=256, layer_demo=2,
                         n_calibration_model=16, seqlen_model=256, n_eval_windows=24,
                         prefer_demo_for_layer=True),
}


def notebook_size() -> NotebookSize:
    """The size chosen by DSNOT_REF_NOTEBOOK_SIZE (default ``full``)."""
    name = os.environ.get(SIZE_VARIABLE, "full")
    if name not in SIZES:
        raise ValueError(f"{SIZE_VARIABLE}={name!r}; expected one of {', '.join(SIZES)}")
    return SIZES[name]


def repo_root() -> Path:
    """The checkout that holds data/fixtures (the notebooks run from notebooks/)."""
    here = Path(__file__).resolve().parent
    for candidate in (here, *here.parents):
        if (candidate / "data" / "fixtures" / "tiny-llama").is_dir():
            return candidate
    raise FileNotFoundError(f"no data/fixtures/tiny-llama above {here}")


def tiny_model_dir() -> Path:
    return repo_root() / "data" / "fixtures" / "tiny-llama"


def pick_model_dir(use_demo: bool) -> tuple[Path, str]:
    """(model directory, label): the cached demo model if ``use_demo`` and present, else the tiny one."""
    from dsnot_ref import demo_model

    demo_dir = demo_model.demo_model_dir()
    if use_demo and demo_model.is_complete(demo_dir):
        return demo_dir, "demo model SmolLM2-135M (cached)"
    return tiny_model_dir(), "tiny test model data/fixtures/tiny-llama (random weights)"


def layer_inputs(model, tokens: np.ndarray, layer_index: int, sublayer: str,
                 chunk: int = 4) -> np.ndarray:
    """Inputs of one linear sublayer on the calibration tokens: [S, L] -> [S, L, C] float32.

    The dense model runs from the embeddings through layers 0 .. layer_index-1; layer
    ``layer_index`` runs with a capture callback that keeps the input of ``sublayer`` (the
    callback is how the pipeline gathers statistics in the same pass). Chunks of ``chunk``
    sequences keep memory small.
    """
    from dsnot_ref.model import block_forward, embed, load_layer

    layers = [load_layer(model, i) for i in range(layer_index + 1)]
    captured = []
    for start in range(0, tokens.shape[0], chunk):
        x = embed(model, tokens[start:start + chunk], np.float32, np)      # [B, L, D]
        for layer in layers[:-1]:
            x = block_forward(model.config, layer, x)                    # [B, L, D]

        def keep(name, x_in):                                            # x_in [B, L, C]
            if name == sublayer:
                captured.append(np.array(x_in, dtype=np.float32))

        block_forward(model.config, layers[-1], x, capture=keep)
    return np.concatenate(captured, axis=0)                              # [S, L, C]
