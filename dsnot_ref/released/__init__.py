"""Parity with the released DSnoT code (zyxxmu/DSnoT): what exists only to reproduce its rounding.

``torch_sum`` adds float32 sums in the order of torch's CPU kernels; ``averages`` keeps the
released wrapper's float32 running averages of the input statistics. Only the official DSnoT
variant reaches this package: its refiner names ``averages.ReleasedAverages`` as its
``StatsNeeds.moments`` and sums ε₀ with ``torch_sum`` (``DSnoTSettings.torch_sum_lanes``);
the forward pass, the reference variant and the pipeline read plainly and never import it.
"""
