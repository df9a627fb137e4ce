"""The committed golden cases catch every plausible bug (tests/golden_mutants.py), one per rule.

Each mutant is the plain per-row code with one documented rule broken. Its outputs for every
committed case it applies to are written as another implementation would write them, and
``dsnot-ref golden check`` (the CLI, default precision contract, no flags) must report a
difference. A mutant that no case catches means a rule of data/golden/FORMAT.md that the
committed set does not decide: add a case (tools/make_golden.py), do not drop the mutant.
A correct implementation that only sums in another order must pass.
"""

import re

import numpy as np
import pytest

from dsnot_ref.cli import main
from dsnot_ref.golden import GOLDEN_DIR, read_case, write_case
from dsnot_ref.methods.dsnot import official_per_row, per_row
from dsnot_ref.methods.dsnot.common import DSnoTPointerError

import golden_mutants as gm

FILES = sorted(GOLDEN_DIR.glob("*.npz"))
FORMAT = GOLDEN_DIR / "FORMAT.md"
CASES = [(path, *read_case(path)) for path in FILES]


def check_outputs(tmp_path, capsys, mutant):
    """Write the (mutated) plain code's outputs for every case it applies to, run golden check.
    -> (exit status, its stdout, names of the cases written)."""
    written = []
    for path, case, _ in CASES:
        if mutant is not None and not gm.applies(mutant, case):
            continue
        try:
            outputs = gm.outputs(case, mutant)
        except DSnoTPointerError:      # the bug walks a pointer off its list: no outputs to check
            continue
        write_case(tmp_path / path.name, case, outputs)
        written.append(case.name)
    capsys.readouterr()
    status = main(["golden", "check", str(tmp_path)])
    return status, capsys.readouterr().out, written


@pytest.mark.parametrize("mutant", gm.MUTANTS, ids=lambda m: m.name)
def test_golden_check_catches_the_mutant(mutant, tmp_path, capsys):
    status, out, written = check_outputs(tmp_path, capsys, mutant)
    assert written, f"no committed case applies to {mutant.name!r}"
    caught = [line for line in out.splitlines() if "DIFFERENT" in line]
    assert status == 1 and caught, f"no committed case catches {mutant.name!r} ({mutant.rule}):\n{out}"
    documented = table_cases(mutant.name)
    assert {line.split(":")[0] for line in caught} == documented, \
        f"FORMAT.md's coverage table is out of date for {mutant.name!r}:\n{out}"


def table_cases(name: str) -> set[str]:
    """The cases FORMAT.md's "Coverage by rule" table says catch mutant ``name``."""
    escaped = name.replace("|", "\\|")
    for line in FORMAT.read_text().splitlines():
        cells = [c.strip() for c in line.split(" | ")]
        if line.startswith("| ") and len(cells) >= 4 and cells[2] == escaped:
            return set(re.findall(r"`([^`]+)`", cells[3]))
    raise AssertionError(f"FORMAT.md's coverage table has no row for {name!r}")


def reversed_row_errors(c, pruned):
    """ε₀ added from the last column to the first (another order; float64 or float32 as c)."""
    terms = np.where(pruned, c, c.dtype.type(0))
    eps = np.zeros(c.shape[0], dtype=c.dtype)
    for j in range(c.shape[1] - 1, -1, -1):
        eps = eps + terms[:, j]
    return eps


def reversed_torch_sum(x, lanes=8):
    return reversed_row_errors(np.asarray(x), np.ones(np.shape(x), dtype=bool))


def test_another_summation_order_passes(tmp_path, capsys, monkeypatch):
    """The plain code with ε₀ summed in reverse column order (float32 for the official variant,
    whose random cases then differ from ours in the last bits of ε) passes every case."""
    monkeypatch.setattr(per_row, "row_errors", reversed_row_errors)
    monkeypatch.setattr(official_per_row, "torch_row_sum", reversed_torch_sum)
    status, out, written = check_outputs(tmp_path, capsys, None)
    assert len(written) == len(FILES)
    assert status == 0, out
    official = [c for p, c, _ in CASES if c.variant == "official" and not p.stem.startswith("hard_")]
    got = gm.outputs(official[0], None).eps_trace
    ours = read_case(GOLDEN_DIR / f"{official[0].name}.npz")[1].eps_trace
    assert not np.array_equal(got, ours)          # the order did change some ε, within the contract


def test_every_rule_has_a_mutant():
    rules = {m.rule for m in gm.MUTANTS}
    for variant in ("reference", "official", "exact", "swaps"):
        assert any(variant in m.variants for m in gm.MUTANTS), variant
    assert len(rules) >= 25
    text = FORMAT.read_text()
    table = text[text.index("## Coverage by rule"):text.index("Rules without a catching case")]
    rows = [line for line in table.splitlines() if line.startswith("| ") and not line.startswith("| rule")]
    assert len(rows) == len(gm.MUTANTS)                         # no row for a mutant that is gone
