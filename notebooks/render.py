"""Execute the teaching notebooks and write rendered copies with their outputs.

The jupytext "percent" sources ``notebooks/NN_*.py`` are the source of truth. This script
converts each one to a notebook, runs it top to bottom in a fresh ``python3`` kernel (nbclient),
and writes the executed copy, outputs and figures included, to ``notebooks/rendered/NN_*.ipynb``.

    python notebooks/render.py                 # full size (demo model when it is cached)
    python notebooks/render.py --size small    # tiny model, a few windows (what the tests run)
    python notebooks/render.py 02_prune_and_grow
    python notebooks/render.py --size small --model demo 03_whole_model

The size and model choice reach the notebooks through the environment variables
DSNOT_REF_NOTEBOOK_SIZE and DSNOT_REF_NOTEBOOK_MODEL, which the kernel inherits. tests/test_notebooks.py imports ``execute_notebook`` from here, so the
tests run the notebooks exactly as the rendered copies were produced.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import time
from pathlib import Path

NOTEBOOK_DIR = Path(__file__).resolve().parent
RENDERED_DIR = NOTEBOOK_DIR / "rendered"
SIZE_VARIABLE = "DSNOT_REF_NOTEBOOK_SIZE"
MODEL_VARIABLE = "DSNOT_REF_NOTEBOOK_MODEL"
ANSWERS_VARIABLE = "DSNOT_REF_NOTEBOOK_ANSWERS"
SIZES = ("small", "full")
MODELS = ("auto", "tiny", "demo")


def notebook_sources() -> list[Path]:
    """The notebook sources, in reading order (their names start with a two-digit number)."""
    return sorted(p for p in NOTEBOOK_DIR.glob("[0-9][0-9]_*.py"))


@contextlib.contextmanager
def _environment(**values: str):
    """Set environment variables for the kernel we are about to start, then restore them."""
    saved = {k: os.environ.get(k) for k in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for key, old in saved.items():
            if old is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = old


def set_constants(nb, overrides: dict) -> None:
    """Change Try-this constants in place: each ``NAME = ...`` line (at the start of a line of a
    code cell; exactly one in the notebook) becomes ``NAME = repr(value)``."""
    for name, value in overrides.items():
        hits = [(cell, i) for cell in nb.cells if cell.cell_type == "code"
                for i, line in enumerate(cell.source.split("\n")) if line.startswith(f"{name} = ")]
        if len(hits) != 1:
            raise ValueError(f"expected one line '{name} = ...' in the notebook, found {len(hits)}")
        cell, i = hits[0]
        lines = cell.source.split("\n")
        comment = lines[i].find("  #")
        lines[i] = f"{name} = {value!r}" + (lines[i][comment:] if comment >= 0 else "")
        cell.source = "\n".join(lines)


def execute_notebook(source: Path, size: str, model: str = "auto", timeout: int = 7200,
                     answers: bool = True, overrides: dict | None = None):
    """Run one jupytext source top to bottom; return the executed ``nbformat`` notebook.

    The kernel starts in ``notebooks/`` (so ``import nbutil`` works) with
    DSNOT_REF_NOTEBOOK_SIZE set to ``size`` and DSNOT_REF_NOTEBOOK_MODEL to ``model``
    (see nbutil.py); ``answers`` sets DSNOT_REF_NOTEBOOK_ANSWERS=1, so an exercise the source
    leaves unwritten is checked with notebooks/answers.py; ``overrides`` changes Try-this
    constants ({"SPARSITY": 0.7}). Any cell that raises stops the run with
    ``nbclient.exceptions.CellExecutionError``, which names the cell and the traceback.
    """
    import jupytext
    from nbclient import NotebookClient

    if size not in SIZES:
        raise ValueError(f"size must be one of {SIZES}, got {size!r}")
    if model not in MODELS:
        raise ValueError(f"model must be one of {MODELS}, got {model!r}")
    nb = jupytext.read(source)
    set_constants(nb, overrides or {})
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    client = NotebookClient(
        nb, kernel_name="python3", timeout=timeout,
        resources={"metadata": {"path": str(source.parent)}},
    )
    # Matplotlib must not try to open a window; the inline backend of ipykernel is the default,
    # MPLBACKEND only guards against a user setting that would override it.
    with _environment(**{SIZE_VARIABLE: size, MODEL_VARIABLE: model, ANSWERS_VARIABLE: "1" if answers else "0",
                          "MPLBACKEND": "module://matplotlib_inline.backend_inline"}):
        client.execute()
    return nb


def write_rendered(nb, source: Path) -> Path:
    """Write an executed notebook to notebooks/rendered/<name>.ipynb (atomically)."""
    import nbformat

    from dsnot_ref.io_utils import atomic_path

    RENDERED_DIR.mkdir(exist_ok=True)
    out = RENDERED_DIR / (source.stem + ".ipynb")
    with atomic_path(out) as tmp:
        nbformat.write(nb, str(tmp))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("names", nargs="*", help="notebook names (e.g. 01_one_layer_one_row); default all")
    parser.add_argument("--size", choices=SIZES, default=os.environ.get(SIZE_VARIABLE, "full"))
    parser.add_argument("--model", choices=MODELS, default=os.environ.get(MODEL_VARIABLE, "auto"),
                        help="auto: the demo model when cached in the full size, the tiny one in small")
    parser.add_argument("--timeout", type=int, default=7200,
                        help="seconds one cell may run")
    args = parser.parse_args(argv)
    sources = notebook_sources()
    if args.names:
        wanted = {n.removesuffix(".py") for n in args.names}
        sources = [s for s in sources if s.stem in wanted]
        missing = wanted - {s.stem for s in sources}
        if missing:
            print(f"no such notebook: {', '.join(sorted(missing))}", file=sys.stderr)
            return 2
    for source in sources:
        start = time.perf_counter()
        nb = execute_notebook(source, args.size, args.model, timeout=args.timeout)
        out = write_rendered(nb, source)
        print(f"{source.name}: executed ({args.size}, model {args.model}) in {time.perf_counter() - start:.0f} s -> {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
