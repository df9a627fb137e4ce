"""The import rules docs/design.md states, read from the source (no module is imported).

The reading path (the forward pass, the statistics, the pipeline, DSnoT's reference variant)
never imports the released-code parity seam; in methods/dsnot/ the fast forms import the plain
ones, never the reverse, and no variant imports another.
"""

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "dsnot_ref"
DSNOT = PACKAGE / "methods" / "dsnot"
READING_PATH = ["ops.py", "ops_reference.py", "model.py", "stats.py", "pipeline.py", "methods/__init__.py",
                "methods/contract.py", "methods/dsnot/per_row.py", "methods/dsnot/orders.py",
                "methods/dsnot/reference.py", "methods/dsnot/common.py"]
# each file of methods/dsnot/ and the siblings it may import
DSNOT_IMPORTS = {
    "common.py": set(),
    "per_row.py": {"common"},
    "orders.py": {"per_row"},
    "reference.py": {"common", "orders", "per_row"},
    "official_per_row.py": {"common", "per_row"},
    "official.py": {"common", "per_row"},
    "exact_per_row.py": {"common", "per_row"},
    "exact.py": {"common", "orders", "per_row"},
}


def imported_modules(path: Path) -> set[str]:
    """Absolute dotted names of the dsnot_ref modules a file imports (relative imports resolved)."""
    package = ["dsnot_ref", *path.relative_to(PACKAGE).parent.parts]
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            base = package[: len(package) - node.level + 1] if node.level else []
            module = ".".join([*base, *(node.module.split(".") if node.module else [])])
            names.add(module)
            names.update(f"{module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
    return {n for n in names if n.startswith("dsnot_ref")}


@pytest.mark.parametrize("name", READING_PATH)
def test_reading_path_does_not_import_the_parity_seam(name):
    assert not {m for m in imported_modules(PACKAGE / name) if m.startswith("dsnot_ref.released")}


def test_dsnot_package_imports_run_one_way():
    assert {p.name for p in DSNOT.glob("*.py")} - {"__init__.py"} == set(DSNOT_IMPORTS)
    for name, allowed in DSNOT_IMPORTS.items():
        siblings = {m.split(".")[3] for m in imported_modules(DSNOT / name)
                    if m.startswith("dsnot_ref.methods.dsnot.")}
        assert siblings <= allowed, (name, siblings - allowed)


def test_only_the_official_variant_reaches_the_parity_seam():
    users = {str(p.relative_to(PACKAGE)) for p in PACKAGE.rglob("*.py")
             if "released" not in p.relative_to(PACKAGE).parts
             and any(m.startswith("dsnot_ref.released") for m in imported_modules(p))}
    assert users == {"methods/dsnot/official.py", "methods/dsnot/official_per_row.py"}
