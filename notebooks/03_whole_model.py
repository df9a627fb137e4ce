# ---
# jupyter:
#   jupytext:
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3
#     language: python
#     name: python3
# ---

# %% [markdown]
# # 3 · The whole model: Wanda, Wanda + DSnoT, and perplexity
#
# Notebooks 1 and 2 looked at one layer with dense inputs. A real run prunes the decoder layers
# one after another (`docs/dsnot.md` §5): each layer is calibrated on the outputs of the layers
# before it, *already pruned*, then pruned, then run again to feed the next one. That is
# `dsnot_ref.pipeline.prune_model`. Here we prune the demo model three ways at one sparsity,
#
# - Wanda alone,
# - Wanda + DSnoT, reference variant (dsnot_ref's default),
# - Wanda + DSnoT, official variant (the released code's rules),
#
# measure perplexity on a few windows of the bundled evaluation text, and look at the per-layer
# diagnostics the pipeline writes. As in the released code, DSnoT only adjusts the attention
# projections (`skip_layer="mlp"`); the MLP layers keep their Wanda mask in all three runs.

# %%
import tempfile
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

import nbutil
from dsnot_ref import data
from dsnot_ref.evaluate import perplexity
from dsnot_ref.methods import DSnoTSettings, PruneSpec
from dsnot_ref.model import linear_names, load_model
from dsnot_ref.pipeline import PipelineSettings, prune_model

size = nbutil.notebook_size()
model_dir, label = nbutil.pick_model_dir(size)
model = load_model(model_dir)
cfg = model.config
print(f"Model used: {label}")
print(f"size setting: {size.name}; {cfg.num_layers} layers, hidden size {cfg.hidden_size}")

SPARSITY = 0.6
SEQLEN = min(size.seqlen_model, cfg.max_positions)
# The released code's pointers leave their lists on narrow layers (notebook 2); the official
# variant then raises DSnoTPointerError. The tiny test model (C = 64) only affords a few cycles.
OFFICIAL_CYCLES = 50 if cfg.hidden_size >= 256 else 4

# %% [markdown]
# ## Calibration and evaluation data
#
# Calibration: `S` random windows of the bundled calibration corpus (the paper uses 128 windows
# of 2048 tokens; we use far fewer). Evaluation: the bundled evaluation text, tokenised once and
# cut into non-overlapping windows of `L` tokens; we keep the first few windows only.

# %%
tokenizer = data.load_tokenizer(model_dir)
calib = data.calibration_windows(tokenizer, data.BUNDLED_CALIBRATION,
                                 size.n_calibration_model, SEQLEN, seed=0)           # [S, L]
eval_stream = data.eval_tokens(tokenizer, data.BUNDLED_EVAL)                         # [N]
print(f"calibration: {calib.shape[0]} windows of {calib.shape[1]} tokens; "
      f"evaluation text: {eval_stream.size} tokens, using {size.n_eval_windows} windows of {SEQLEN}")

dense = perplexity(model, eval_stream, SEQLEN, max_windows=size.n_eval_windows)
print(f"dense perplexity: {dense['perplexity']:.2f} on {dense['n_tokens']} tokens ({dense['seconds']:.0f} s)")

# %% [markdown]
# ## Pruning three ways
#
# Each run writes its pruned layers, masks and per-layer diagnostics into a run directory; the
# pruned model is the original checkpoint overlaid with the pruned layers
# (`PruneRun.weights_store()`), which `load_model` accepts like any checkpoint. With
# `recon_error=True` (the default) the pipeline also gathers each sublayer's Hessian, so the
# diagnostics include the relative reconstruction error before and after DSnoT.

# %%
runs = {
    "Wanda": PruneSpec(method="wanda", sparsity=SPARSITY),
    "Wanda + DSnoT (reference)": PruneSpec(method="dsnot", sparsity=SPARSITY, initial_method="wanda"),
    "Wanda + DSnoT (official)": PruneSpec(method="dsnot", sparsity=SPARSITY, initial_method="wanda",
                                          dsnot=DSnoTSettings(variant="official", max_cycle_time=OFFICIAL_CYCLES)),
}
ppl, diagnostics = {"dense": dense["perplexity"]}, {}
with tempfile.TemporaryDirectory(prefix="dsnot-notebook-") as tmp:
    for i, (name, spec) in enumerate(runs.items()):
        with prune_model(model, calib, PipelineSettings(spec=spec), Path(tmp) / f"run{i}") as run:
            pruned_model = load_model(model_dir, store=run.weights_store())
            result = perplexity(pruned_model, eval_stream, SEQLEN, max_windows=size.n_eval_windows)
            ppl[name] = result["perplexity"]
            diagnostics[name] = run.diagnostics
            seconds = sum(run.timings.values())
        print(f"{name:27s}: perplexity {ppl[name]:9.2f}  (pruning {seconds:.0f} s, evaluation {result['seconds']:.0f} s)")

# %% [markdown]
# ## Perplexity
#
# Lower is better. Read the bars with the budgets in mind: a handful of calibration windows and
# a handful of evaluation windows. A difference of a few percent between the pruned models is
# within what another calibration seed or another slice of the evaluation text can change.

# %%
fig, ax = plt.subplots(figsize=(8, 2.8))
names = list(ppl)
ax.barh(names, [ppl[n] for n in names], color=["tab:gray", "tab:blue", "tab:green", "tab:red"][:len(names)])
for y, n in enumerate(names):
    ax.text(ppl[n], y, f" {ppl[n]:.1f}", va="center")
ax.invert_yaxis()
ax.set(xlabel="perplexity", title=f"{SPARSITY:.0%} unstructured sparsity, {size.n_eval_windows} windows of {SEQLEN} tokens")
plt.tight_layout()
plt.show()
for name in names[2:]:
    print(f"{name}: {100 * (ppl[name] / ppl['Wanda'] - 1):+.1f}% perplexity relative to Wanda")

# %% [markdown]
# ## Per-layer diagnostics
#
# For every attention projection of every layer the pipeline recorded mean |ε| and the relative
# reconstruction error `‖(W − W⊙keep) X‖² / ‖W X‖²` of the Wanda mask (before DSnoT) and of the
# final mask (after), both on that layer's own calibration inputs. Both panels show after / before
# on a log scale, so 1 means "no change". Left: how far DSnoT cut mean |ε|, what it optimises.
# Right: how the reconstruction error changed, which is closer to what perplexity feels. Points
# above the line in the right panel are layers whose output DSnoT made *worse* while improving
# its surrogate.

# %%
attention = [n for n in linear_names(cfg) if n.startswith("self_attn.")]
styles = ["-", "--", ":", "-."]                        # one per attention projection
fig, axes = plt.subplots(1, 2, figsize=(13, 4.2))
recon_ratio = {}                                       # variant -> [layers, 4] after / before
for (name, diag), color in zip(list(diagnostics.items())[1:], ["tab:green", "tab:red"]):
    subs = [[d["sublayers"][sub] for sub in attention] for d in diag]               # [layers][4]
    eps_ratio = np.array([[x["eps_after"] / x["eps_before"] for x in row] for row in subs])
    recon_ratio[name] = np.array([[x["recon_after"] / x["recon_before"] for x in row] for row in subs])
    for k, (sub, style) in enumerate(zip(attention, styles)):
        kw = dict(color=color, ls=style, lw=1.2, marker=".", label=f"{name.split('(')[1][:-1]}: {sub.split('.')[1]}")
        axes[0].plot(eps_ratio[:, k], **kw)
        axes[1].plot(recon_ratio[name][:, k], **kw)
axes[0].set(yscale="log", xlabel="layer", ylabel="mean |ε| after / before",
            title="mean |ε| after DSnoT, relative to its Wanda mask")
axes[1].set(yscale="log", xlabel="layer", ylabel="after / before",
            title="reconstruction error after DSnoT, relative to its Wanda mask")
for ax in axes:
    ax.axhline(1.0, color="k", lw=0.8)
axes[1].legend(fontsize=7, ncol=2)
plt.tight_layout()
plt.show()

for name, diag in list(diagnostics.items())[1:]:
    ratio = recon_ratio[name]
    worst = np.unravel_index(np.argmax(ratio), ratio.shape)
    swaps = sum(d["sublayers"][s]["swaps"] for d in diag for s in attention)
    print(f"{name}: {swaps} swaps; reconstruction error up in {int((ratio > 1).sum())} of {ratio.size} "
          f"attention sublayers; median after/before {np.median(ratio):.3f}; "
          f"largest {ratio.max():.3g} (layer {worst[0]}, {attention[worst[1]]})")

# %% [markdown]
# ## What these numbers do and do not show
#
# - **They are small-budget measurements.** A few calibration windows and a few evaluation
#   windows of a few hundred tokens; the paper uses 128 × 2048 calibration tokens and the whole
#   WikiText-2 test set. Differences of a few percent in perplexity are not resolved here.
# - **DSnoT steers a first-moment surrogate.** It drives each row's *expected* output error ε to
#   zero; it does not look at the token-to-token error (notebook 1). The per-layer plot shows the
#   gap: mean |ε| falls by a large factor in almost every layer, while the reconstruction error
#   moves far less, and not always down.
# - **A better layer-wise error is not a better model.** Each layer's reconstruction error is
#   measured on its own calibration inputs, which already carry the earlier layers' errors; q and
#   k errors reach the output through a softmax, where a smaller squared error need not mean a
#   smaller change of the attention pattern; and the MLP sublayers, which DSnoT leaves alone
#   here, carry most of the pruned weights. So perplexity can rise even when most attention
#   sublayers' reconstruction errors fell: compare the printed lines above with the bars.
# - **The released rules can make things worse.** Without the sign rule, the official variant
#   overshoots ε (notebook 2) and its swaps can raise a layer's reconstruction error a lot. On
#   this small model DSnoT may give a higher perplexity than its Wanda start, in either variant;
#   the printed lines above say what happened in this run. We report what is measured and did
#   not tune anything to change it. For comparison, `docs/dsnot.md` records a larger run on the
#   same model at 60% (Wikipedia calibration): Wanda 141.0, reference variant 140.4, without the
#   sign rule 160.8.
# - **The paper's gains were measured on LLaMA-7B and larger.** A 135M-parameter model at 60%
#   sparsity is a different regime; nothing here confirms or refutes the paper's numbers.

# %% [markdown]
# ## Try this
#
# - Run the exact variant: `PruneSpec(method="dsnot", sparsity=SPARSITY,
#   dsnot=DSnoTSettings(variant="exact"))`. Its swaps never raise a layer's reconstruction error;
#   does the perplexity follow?
# - Let DSnoT adjust the MLP layers too (`PipelineSettings(spec=..., skip_layer=None)`) or change
#   `SPARSITY` to 0.5 and 0.7: when does DSnoT help, when does it hurt?
