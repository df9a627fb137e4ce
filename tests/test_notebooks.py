"""The teaching notebooks run top to bottom, import the package, and keep their promises.

Each notebook source (jupytext percent format, notebooks/NN_*.py) is converted, executed in a
fresh python3 kernel by nbclient with DSNOT_REF_NOTEBOOK_SIZE=small, and any cell error fails
the test with the cell and traceback. The fast tests run all three on the tiny test model
(seconds each), with every exercise checked against notebooks/answers.py, and once more for
each "Try this" constant changed, checking the claim its box makes. The slow tests run the
notebooks on the cached demo model (skipped when it is not cached). Test ids and the printed
``Model used:`` line say which model each run used, and the test checks the notebook's own
line agrees.
"""

from __future__ import annotations

import ast
import functools
import importlib.util
import inspect
import json
import pkgutil
import re
import sys
from pathlib import Path

import numpy as np
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
FACTS_PREFIX = "Numbers the Try-this boxes compare:"


@functools.lru_cache(maxsize=None)
def _executed(stem: str, overrides: tuple = (), answers: bool = True):
    """The notebook run on the tiny model, small size (cached: several tests read one run)."""
    source = NOTEBOOK_DIR / f"{stem}.py"
    return render.execute_notebook(source, "small", model="tiny", timeout=600, answers=answers,
                                   overrides=dict(overrides))


def _facts(nb) -> dict:
    lines = [ln for ln in _stream_text(nb).splitlines() if ln.startswith(FACTS_PREFIX)]
    assert len(lines) == 1, f"expected one '{FACTS_PREFIX}' line, found {len(lines)}"
    return json.loads(lines[0][len(FACTS_PREFIX):])


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
    nb = _executed(source.stem)
    line = _check_executed(nb, source, "tiny test model")
    text = _stream_text(nb)
    assert "passed with notebooks/answers.py" in text, "no exercise check ran with an answer"
    assert "not written yet" not in text
    print(f"{source.stem}: {line}")


# Each "Try this" box: the constant, the value the box suggests, and its claim in bold, checked
# on the run with the change (changed) against the run without it (default).
TRY_THIS = {
    ("01_one_layer_one_row", "SPARSITY", 0.7): lambda default, changed: (
        all(changed[f"{m}_error"] > default[f"{m}_error"] for m in ("magnitude", "wanda"))
        and all(changed[f"{m}_mean_abs_eps"] > default[f"{m}_mean_abs_eps"] for m in ("magnitude", "wanda"))
        and all(abs(np.log(changed[f"{m}_mean_share"] / default[f"{m}_mean_share"]))
                < np.log(changed[f"{m}_error"] / default[f"{m}_error"]) for m in ("magnitude", "wanda"))),
    ("01_one_layer_one_row", "TOY_SPREAD", 0.0): lambda default, changed: (
        default["toy_E_dsnot"] > default["toy_E_start"]
        and changed["toy_E_dsnot"] == 0.0 and changed["toy_swaps_sparseswaps"] >= 1
        and changed["toy_E_sparseswaps"] == 0.0),
    ("01_one_layer_one_row", "CENTRE_INPUTS", True): lambda default, changed: (
        all(changed[f"{m}_mean_share"] < 1e-9 for m in ("magnitude", "wanda"))
        and all(changed[f"{m}_mean_abs_eps"] < 1e-5 * default[f"{m}_mean_abs_eps"] for m in ("magnitude", "wanda"))),
    ("02_prune_and_grow", "START", "magnitude"): lambda default, changed: (
        changed["start_mean_share"] > default["start_mean_share"]
        and changed["change_reference"] < default["change_reference"]),
    ("02_prune_and_grow", "UPDATE_THRESHOLD", 0.0): lambda default, changed: (
        changed["threshold_rows"] == 0 and changed["reference_swaps"] >= default["reference_swaps"]),
    ("02_prune_and_grow", "POW_OF_VAR", 0.0): lambda default, changed: (
        changed["change_reference"] != default["change_reference"]),
    ("02_prune_and_grow", "OFFICIAL_SIGN_CHECK", True): lambda default, changed: (
        changed["official_sign_changes"] == 0 < default["official_sign_changes"]
        and abs(changed["change_official"] - changed["change_reference"])
        < abs(default["change_official"] - default["change_reference"])),
    ("03_whole_model", "SPARSITY", 0.7): lambda default, changed: (
        changed["wanda_calib_error"] > default["wanda_calib_error"]),
    ("03_whole_model", "SKIP_LAYER", None): lambda default, changed: (
        changed["refined_mlp"] and not default["refined_mlp"]
        and all(changed[f"swaps_{n}"] > default[f"swaps_{n}"] for n in ("reference", "exact", "SparseSwaps"))),
    ("03_whole_model", "CALIBRATION_SCALE", 4): lambda default, changed: (
        changed["calibration_windows"] == 4 * default["calibration_windows"]
        and changed["swaps_heldout_change"] - changed["swaps_calib_change"]
        < default["swaps_heldout_change"] - default["swaps_calib_change"]),
}


def _box_constants(source: Path) -> list[tuple[str, object]]:
    """(NAME, value) of each "Try this" bullet, which must start with `NAME = value`."""
    section = source.read_text().split("## Try this", 1)[1]
    found = re.findall(r"^# - `([A-Z_]+) = ([^`]+)`", section, flags=re.M)
    return [(name, ast.literal_eval(value)) for name, value in found]


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_every_try_this_is_a_constant_the_tests_change(source):
    boxes = _box_constants(source)
    assert boxes, f"{source.name}: no Try-this bullet starts with `NAME = value`"
    assert sorted(boxes, key=str) == sorted(((n, v) for (stem, n, v) in TRY_THIS if stem == source.stem), key=str)
    code = source.read_text()
    for name, _ in boxes:
        assert re.search(rf"^{name} = ", code, flags=re.M), f"{name} is not a constant of {source.name}"


@pytest.mark.parametrize("case", list(TRY_THIS), ids=[f"{s[:2]}-{n}={v}" for s, n, v in TRY_THIS])
def test_try_this_does_what_its_box_says(case):
    stem, name, value = case
    default, changed = _facts(_executed(stem)), _facts(_executed(stem, ((name, value),)))
    assert TRY_THIS[case](default, changed), (default, changed)


def _exercise_stubs(source: Path) -> list[str]:
    """Functions my_* whose body is a docstring and `raise NotImplementedError(...)`."""
    stubs = []
    for node in ast.parse(source.read_text()).body:
        if isinstance(node, ast.FunctionDef) and node.name.startswith("my_"):
            body = [b for b in node.body if not (isinstance(b, ast.Expr) and isinstance(b.value, ast.Constant))]
            assert len(body) == 1 and isinstance(body[0], ast.Raise) and "NotImplementedError" in ast.unparse(body[0]), \
                f"{source.name}: {node.name} is an exercise stub, but its body is not just `raise NotImplementedError`"
            stubs.append(node.name)
    return stubs


@pytest.mark.parametrize("source", SOURCES, ids=[s.stem for s in SOURCES])
def test_exercises_are_stubs_with_a_check_and_an_answer(source):
    stubs = _exercise_stubs(source)
    assert len(stubs) >= 3, f"{source.name} has {len(stubs)} exercises"
    answers = ast.parse((NOTEBOOK_DIR / "answers.py").read_text())
    answered = {n.name for n in answers.body if isinstance(n, ast.FunctionDef)}
    text = source.read_text()
    for name in stubs:
        assert name in answered, f"notebooks/answers.py has no {name}"
        assert f'nbutil.exercise("{name}", {name},' in text, f"{source.name} never checks {name}"


def test_a_reader_who_has_written_nothing_can_still_run_notebook_1():
    nb = _executed("01_one_layer_one_row", answers=False)
    text = _stream_text(nb)
    assert "not written yet" in text and "passed with notebooks/answers.py" not in text


@pytest.mark.slow
def test_whole_model_notebook_on_the_demo_model():
    """Notebook 3 as the README promises: the demo model when it is cached (small budgets)."""
    if not _demo_cached():
        pytest.skip("demo model not cached (python -m dsnot_ref fetch-model)")
    source = next(s for s in SOURCES if s.stem.startswith("03_"))
    nb = render.execute_notebook(source, "small", model="demo", timeout=1800)
    line = _check_executed(nb, source, "demo model")
    print(f"{source.stem}[demo]: {line}")


@pytest.mark.slow
@pytest.mark.parametrize("source", SOURCES, ids=[f"{s.stem}[demo,full]" for s in SOURCES])
def test_notebook_at_its_default_size_on_the_demo_model(source):
    """What the rendered copies show: the demo model at the full size, every claim's assert
    armed (each notebook asserts its demo-model claims when it runs there)."""
    if not _demo_cached():
        pytest.skip("demo model not cached (python -m dsnot_ref fetch-model)")
    nb = render.execute_notebook(source, "full", model="demo", timeout=1800)
    line = _check_executed(nb, source, "demo model")
    print(f"{source.stem}[demo, full]: {line}")


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
