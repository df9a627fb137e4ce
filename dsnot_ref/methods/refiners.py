"""The one registry of mask refiners: a name and its settings in, a refiner out.

    "reference"  DSnoT, the paper's method              methods/dsnot/reference.py
    "official"   DSnoT as the released code runs it     methods/dsnot/official.py
    "exact"      DSnoT accepting on the true error      methods/dsnot/exact.py
    "swaps"      SparseSwaps                            methods/swaps.py

Every refiner keeps the contract of methods/contract.py (``LayerProblem`` in, ``Refinement``
out) and declares its ``StatsNeeds``. The CLI, the pipeline (through ``prune_linear``), the
golden fixtures, the demo and the notebooks all make their refiner here. A new refiner is a new
entry in ``REFINERS``.
"""

from __future__ import annotations

from ..errors import UserError
from .contract import LayerProblem, Refinement, Refiner
from .dsnot.common import DSnoTSettings
from .dsnot.exact import Exact
from .dsnot.official import Official
from .dsnot.reference import Reference
from .swaps import Swaps, SwapSettings

# name -> (the refiner's class, the settings type it is made with)
REFINERS = {
    "reference": (Reference, DSnoTSettings),
    "official": (Official, DSnoTSettings),
    "exact": (Exact, DSnoTSettings),
    "swaps": (Swaps, SwapSettings),
}


# the sublayer group ("mlp", "self_attn") a method's refiners leave alone unless asked otherwise
# (PipelineSettings.skip_layer): DSnoT skips the MLP, as the released code does; SparseSwaps
# refines every sublayer
DEFAULT_SKIP_LAYER = {"dsnot": "mlp", "swaps": None}


def default_skip_layer(method: str) -> str | None:
    """The ``skip_layer`` a pruning method gets unless asked otherwise ("mlp" for a method with no
    refiner, where it changes nothing)."""
    return DEFAULT_SKIP_LAYER.get(method, "mlp")


def make_refiner(name: str, settings=None) -> Refiner:
    """The refiner registered as ``name``, made with ``settings`` (its settings type's defaults
    when None; a DSnoT variant's settings carry the variant's name)."""
    if name not in REFINERS:
        raise UserError(f"unknown refiner {name!r}; choose one of {', '.join(REFINERS)}")
    cls, settings_type = REFINERS[name]
    if settings is None:
        settings = settings_type(variant=name) if settings_type is DSnoTSettings else settings_type()
    if not isinstance(settings, settings_type):
        raise UserError(f"refiner {name!r} takes {settings_type.__name__}, got {type(settings).__name__}")
    if settings_type is DSnoTSettings and settings.variant != name:
        raise UserError(f"refiner {name!r} was given settings of the DSnoT variant {settings.variant!r}")
    return cls(settings)


def dsnot(weight, pruned0, seq_sum, seq_sq, var, settings: DSnoTSettings | None = None, *,
          nm: tuple[int, int] | None = None, initial_score=None, gram=None, trace: bool = False) -> Refinement:
    """DSnoT on one weight matrix, the variant that ``settings`` names, through the registry.

    weight [R, C] (never changed), pruned0 [R, C] bool (True = pruned), seq_sum / seq_sq / var
    [C] (the reference and exact variants expect the pooled variance, the official one the
    within-sequence variance), initial_score [R, C] (N:M's pruning order; default the Wanda
    score), gram [C, C] = Σ x xᵀ (the exact variant only). Same rows pruned as pruned0, in
    number per row.
    """
    settings = settings or DSnoTSettings()
    problem = LayerProblem(weight, pruned0, seq_sum, seq_sq, var, gram, nm, initial_score)
    return make_refiner(settings.variant, settings).refine(problem, trace=trace)
