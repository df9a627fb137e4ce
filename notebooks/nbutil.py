"""What the three notebooks share: the size setting, which model to use, a layer's inputs.

Nothing here is part of the method; the method lives in ``dsnot_ref`` and the notebooks import
it from there. This module only keeps the notebooks' set-up cells short and identical.

Size (environment variable DSNOT_REF_NOTEBOOK_SIZE):
- ``small``: what the test suite runs: the tiny test model of data/fixtures/tiny-llama (random
  weights), a few short calibration windows, a few evaluation windows; seconds per notebook.
- ``full`` (default): what the rendered copies show: the demo model (SmolLM2-135M) when it is
  cached, more and longer windows; minutes per notebook on a laptop.

Model (environment variable DSNOT_REF_NOTEBOOK_MODEL, optional): ``auto`` (the size's default:
the demo model when cached in ``full``, the tiny model in ``small``), ``tiny``, or ``demo``
(required: an error if it is not cached). The slow test runs notebook 3 with ``small`` and
``auto``-on-demo to check the whole-model notebook on the real model with small budgets.
Nothing here downloads anything: ``python -m dsnot_ref fetch-model`` (or
``dsnot_ref.demo_model.fetch_demo_model()``) fetches the demo model once.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import numpy as np

SIZE_VARIABLE = "DSNOT_REF_NOTEBOOK_SIZE"
MODEL_VARIABLE = "DSNOT_REF_NOTEBOOK_MODEL"
ANSWERS_VARIABLE = "DSNOT_REF_NOTEBOOK_ANSWERS"  # "1": an unwritten exercise is checked with answers.py
FACTS_PREFIX = "Numbers the Try-this boxes compare:"
MODEL_CHOICES = ("auto", "tiny", "demo")


@dataclass(frozen=True)
class NotebookSize:
    name: str                 # "small" | "full"
    n_calibration: int        # S, calibration sequences for one layer (notebooks 1, 2)
    seqlen: int               # L, tokens per calibration sequence
    layer_demo: int           # which decoder layer to study on the demo model
    n_calibration_model: int  # S for pruning the whole model (notebook 3)
    seqlen_model: int         # L for notebook 3 (calibration and evaluation windows)
    n_eval_windows: int       # evaluation windows for perplexity (notebook 3)
    prefer_demo: bool         # use the demo model when it is cached (DSNOT_REF_NOTEBOOK_MODEL=auto)


SIZES = {
    "small": NotebookSize("small", n_calibration=4, seqlen=32, layer_demo=2,
                          n_calibration_model=2, seqlen_model=64, n_eval_windows=2,
                          prefer_demo=False),
    "full": NotebookSize("full", n_calibration=32, seqlen=256, layer_demo=2,
                         n_calibration_model=8, seqlen_model=256, n_eval_windows=16,
                         prefer_demo=True),
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


def pick_model_dir(size: NotebookSize) -> tuple[Path, str]:
    """(model directory, label) as DSNOT_REF_NOTEBOOK_MODEL and the size ask.

    ``auto``: the cached demo model if the size prefers it, else the tiny test model.
    ``demo``: the demo model, FileNotFoundError if it is not cached. ``tiny``: the tiny model.
    """
    from dsnot_ref import demo_model

    choice = os.environ.get(MODEL_VARIABLE, "auto") or "auto"
    if choice not in MODEL_CHOICES:
        raise ValueError(f"{MODEL_VARIABLE}={choice!r}; expected one of {', '.join(MODEL_CHOICES)}")
    demo_dir = demo_model.demo_model_dir()
    cached = demo_model.is_complete(demo_dir)
    if choice == "demo" and not cached:
        raise FileNotFoundError(f"{MODEL_VARIABLE}=demo but the demo model is not in {demo_dir}; "
                                "run `python -m dsnot_ref fetch-model` first")
    if choice == "demo" or (choice == "auto" and size.prefer_demo and cached):
        return demo_dir, "demo model SmolLM2-135M (cached)"
    return tiny_model_dir(), "tiny test model data/fixtures/tiny-llama (random weights)"


def layer_inputs(model, tokens: np.ndarray, layer_index: int, sublayer: str,
                 chunk: int = 4) -> np.ndarray:
    """Inputs of one linear sublayer on the calibration tokens: [S, L] -> [S, L, C] float32."""
    return sublayer_inputs(model, tokens, layer_index, (sublayer,), chunk)[sublayer]


def sublayer_inputs(model, tokens: np.ndarray, layer_index: int, sublayers: tuple[str, ...],
                    chunk: int = 4) -> dict[str, np.ndarray]:
    """Inputs of several linear sublayers of one layer: [S, L] -> {name: [S, L, C] float32}.

    The dense model runs from the embeddings through layers 0 .. layer_index-1; layer
    ``layer_index`` runs with a capture callback that keeps the inputs of ``sublayers`` (the
    callback is how the pipeline gathers statistics in the same pass). Chunks of ``chunk``
    sequences keep memory small.
    """
    from dsnot_ref.model import block_forward, embed, load_layer

    layers = [load_layer(model, i) for i in range(layer_index + 1)]
    captured = {name: [] for name in sublayers}
    for start in range(0, tokens.shape[0], chunk):
        x = embed(model, tokens[start:start + chunk], np.float32, np)      # [B, L, D]
        for layer in layers[:-1]:
            x = block_forward(model.config, layer, x)                    # [B, L, D]

        def keep(name, x_in):                                            # x_in [B, L, C]
            if name in captured:
                captured[name].append(np.array(x_in, dtype=np.float32))

        block_forward(model.config, layers[-1], x, capture=keep)
    return {name: np.concatenate(parts, axis=0) for name, parts in captured.items()}  # [S, L, C]


def answers_filled_in() -> bool:
    """True when DSNOT_REF_NOTEBOOK_ANSWERS=1 (render.py and the tests set it)."""
    return os.environ.get(ANSWERS_VARIABLE, "") == "1"


def exercise(name: str, yours, check) -> None:
    """Run ``check(yours)``: the exercise's asserts on the reader's function.

    A function the reader has not written yet raises NotImplementedError. Then, when
    DSNOT_REF_NOTEBOOK_ANSWERS=1, the check runs on ``answers.<name>`` instead (so the rendered
    copies and the tests run every check with an answer filled in); otherwise it says so and the
    notebook goes on. Any other failure (a wrong answer) raises, as an assert should.
    """
    try:
        check(yours)
    except NotImplementedError:
        if not answers_filled_in():
            print(f"{name}: not written yet. Write it in the cell above and rerun this cell "
                  f"(one answer is in notebooks/answers.py).")
            return
        import answers

        check(getattr(answers, name))
        print(f"{name}: not written in this copy; the check passed with notebooks/answers.py's {name}")
        return
    print(f"{name}: your function passes the check")


def report_facts(facts: dict) -> None:
    """Print the run's headline numbers on one line that tests/test_notebooks.py reads."""
    import json

    print(FACTS_PREFIX, json.dumps({k: (float(v) if isinstance(v, (np.floating, np.integer)) else v)
                                    for k, v in facts.items()}, sort_keys=True))
