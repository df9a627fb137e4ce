"""Regenerate data/golden/*.npz: the standard DSnoT and SparseSwaps cases with our expected outputs.

    python tools/make_golden.py [--out data/golden] [--variant official] [--case NAME ...]

Deterministic: fixed seeds (dsnot_ref.golden.STANDARD_CASES and HARD_CASES), float64 throughout.
Writes format version 3: reference, official, exact-variant and SparseSwaps ("swaps") cases (the
exact and swaps ones also store G = Σ x xᵀ and the E_r trace). data/golden/v1/ is a kept
version-1 file, not written here.
Run it only when the algorithm's intended behaviour changes, and say why in the commit;
tests/test_golden.py checks that the committed files equal what the code produces now.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from dsnot_ref.golden import GOLDEN_DIR, run_case, standard_cases, write_case


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=GOLDEN_DIR, help="output directory")
    parser.add_argument("--case", action="append", metavar="NAME",
                        help="regenerate only this case (repeatable)")
    parser.add_argument("--variant", choices=("reference", "official", "exact", "swaps"),
                        help="regenerate only this variant's cases (the statistics of the others "
                             "go through np.sum, whose last bits differ between machines)")
    args = parser.parse_args(argv)
    for case in standard_cases():
        if args.variant is not None and case.variant != args.variant:
            continue
        if args.case and case.name not in args.case:
            continue
        outputs = run_case(case)
        path = args.out / f"{case.name}.npz"
        write_case(path, case, outputs)
        print(f"{path}: {case.variant}, {outputs.cycles} cycles, {len(outputs.swaps)} swaps",
              file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
