"""The teaching notebooks run top to bottom and import the package, never copy it.

Each notebook source (jupytext percent format, notebooks/NN_*.py) is converted, executed in a
fresh python3 kernel by nbclient with DSNOT_REF_NOTEBOOK_SIZE=small, and any cell error fails
the test with the cell and traceback. The fast tests run all three on the tiny test model
(seconds each); the slow test runs notebook 3 on the cached demo model with the small budgets
(minutes of CPU; skipped when the demo model is not cached). Test ids and the printed
``Model used:`` line say which model each run used, and the test checks the notebook's own
line agrees.
"""

from __future__ import annotations

import ast
import importlib.util
import inspect
import pkgutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
MODEL_LINE = "model used:"


def _render_module():
    spec = importlib.util.spec_from_file_location("notebook_render", NOTEBOOK_DIR / "render.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("notebook_render", module)
    spec.loader.exec_module(module)
    return module


render = _render_module()
SOURCES = render.notebook_sources()


def _demo_cached() -> bool:
    from dsnot_ref import demo_model

    return demo_model.is_complete(demo_model.demo_model_dir())


def _stream_text(nb) -> str:
    parts = []
    for cell in nb.cells:
        for out in cell.get("outputs", []):
            if out.get("output_type") == "stream":
                parts.append(out.get("text", ""))
    return "".join(parts)


def _check_executed(nb, source: Path, expect_model: str) -> str:
    """Every code cell ran, a figure was drawn, and the notebook names the expected model."""
    code_cells = [c for c in nb.cells if c.cell_type == "code"]
    assert code_cells and all(c.get("execution_count") for c in code_cells), "a code cell did not run"
    lines = [ln for ln in _stream_text(nb).splitlines() if ln.lower().startswith(MODEL_LINE)]
    assert lines, f"{source.name} printed no '{MODEL_LINE} ...' line"
    assert expect_model in lines[0], f"{source.name} said {lines[0]!r}; expected the {expect_model}"
    assert any(out.get("output_type") == "display_data" and "image/png" in out.get("data", {})
               for c in code_cells for out in c.get("outputs", [])), f"{source.name} drew no figure"
    return lines[0]


def test_the_three_notebooks_exist():
    assert [s.stem[:3] for s in SOURCES] == ["01_", "02_", "03_"]


@pytest.mark.parametrize("source", SOURCES, ids=[f"{s.stem}[tiny]" for s in SOURCES])
def test_notebook_runs_top_to_bottom(source):
    nb = render.execute_notebook(source, "small", model="tiny", timeout=600)
    line = _check_executed(nb, source, "tiny test model")
    print(f"{source.stem}: {line}")


@pytest.mark.slow
def test_whole_model_notebook_on_the_demo_model():
    """Notebook 3 as the README promises: the demo model when it is cached (small budgets)."""
    if not _demo_cached():
        pytest.skip("demo model not cached (python -m dsnot_ref fetch-model)")
    source = next(s for s in SOURCES if s.stem.startswith("03_"))
    nb = render.execute_notebook(source, "small", model="demo", timeout=1800)
    line = _check_executed(nb, source, "demo model")
    print(f"{source.stem}[demo]: {line}")


def _package_function_names() -> set[str]:
    import dsnot_ref

    names = set()
    for info in pkgutil.walk_packages(dsnot_ref.__path__, "dsnot_ref."):
        if ".cli" in info.name or info.name.endswith("__main__"):
            continue  # the CLI (and python -m) parse sys.argv when imported
        try:
            module = importlib.import_module(info.name)
        except Exception:  # a module another engineer is still writing
            continue
        names.update(n for n, obj in vars(module).items()
                     if not n.startswith("_") and inspect.isfunction(obj)
                     and obj.__module__ == info.name)
    return names


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_notebook_imports_the_package_and_redefines_none_of_it(source):
    tree = ast.parse(source.read_text())
    imported = {node.module for node in ast.walk(tree)
                if isinstance(node, ast.ImportFrom) and node.module}
    assert any(m.startswith("dsnot_ref") for m in imported), f"{source.name} does not import dsnot_ref"
    defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
    clash = defined & _package_function_names()
    assert not clash, f"{source.name} redefines package functions: {sorted(clash)}"


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_every_try_this_has_a_collapsed_answer(source):
    """Each "Try this" bullet comes with a collapsed "What you should see" box."""
    text = source.read_text()
    assert "## Try this" in text, f"{source.name} has no Try this section"
    section = text[text.index("## Try this"):]
    bullets = [ln for ln in section.splitlines() if ln.startswith("# - ")]
    boxes = section.count("<details><summary>What you should see</summary>")
    assert bullets and boxes == len(bullets) == section.count("</details>"), (len(bullets), boxes)


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_rendered_copy_matches_its_source_and_has_figures(source):
    """notebooks/rendered/NN_*.ipynb was produced from the current source (re-render if not)."""
    import jupytext
    import nbformat

    rendered_path = NOTEBOOK_DIR / "rendered" / (source.stem + ".ipynb")
    assert rendered_path.is_file(), f"{rendered_path} missing: run python notebooks/render.py"
    rendered = nbformat.read(str(rendered_path), as_version=4)
    want = [c.source for c in jupytext.read(source).cells if c.cell_type == "code"]
    got = [c.source for c in rendered.cells if c.cell_type == "code"]
    assert got == want, f"{rendered_path.name} is stale: run python notebooks/render.py {source.stem}"
    assert all(c.get("execution_count") for c in rendered.cells if c.cell_type == "code")
    assert any("image/png" in out.get("data", {}) for c in rendered.cells for out in c.get("outputs", []))
