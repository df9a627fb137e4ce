"""`dsnot-ref compare-masks A B`: do two pruned models prune the same weights?

A and B are pruned HF directories. Ours carry masks.safetensors; another implementation's output
(e.g. the official PyTorch code's save_pretrained) does not, and then its mask is weight == 0.
Exit status 0 when every mask is identical, 1 otherwise, 2 when the models are not comparable.
"""

from __future__ import annotations

import argparse

from .. import report, save
from . import user_help


def add_parser(subparsers) -> argparse.ArgumentParser:
    p = subparsers.add_parser(
        "compare-masks",
        help="compare the pruning masks of two pruned models",
        **user_help(
            "Compare the pruning masks of two pruned models, layer by layer.",
            ["dsnot-ref compare-masks out/ours path/to/their-pruned-model"],
            "A model saved by dsnot-ref carries its masks (masks.safetensors); for any other pruned model\n"
            "the mask is where the weight is zero. Exit status 0 when every mask is identical, 1 when\n"
            "some differ, 2 when the two models cannot be compared.",
        ),
    )
    p.add_argument("model_a", metavar="A", help="pruned model directory")
    p.add_argument("model_b", metavar="B", help="pruned model directory")
    return p


def run(args) -> int:
    masks_a, source_a = save.model_masks(args.model_a)
    masks_b, source_b = save.model_masks(args.model_b)
    comparisons = save.compare_mask_sets(masks_a, masks_b, "A", "B")
    print(f"A: {args.model_a} (mask from {source_a})")
    print(f"B: {args.model_b} (mask from {source_b})")
    print(report.comparison_table(comparisons, "A", "B"))
    n_same = sum(c.rows_differ == 0 for c in comparisons)
    identical = n_same == len(comparisons)
    total = sum(c.shape[0] * c.shape[1] for c in comparisons)
    agree = sum(c.identical_fraction * c.shape[0] * c.shape[1] for c in comparisons) / total
    verdict = "identical" if identical else "different"
    print(f"{n_same}/{len(comparisons)} weights have identical masks; {agree:.6f} of all entries agree: {verdict}")
    return 0 if identical else 1
