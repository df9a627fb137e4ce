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
# # 2 · Prune and grow: DSnoT cycle by cycle
#
# Notebook 1 ended with a Wanda mask and its row errors `ε[r] = Σ_{j pruned} c[r, j]`. DSnoT now
# edits that mask without touching a single weight value: in every row, each cycle regrows one
# pruned weight `g` and prunes one kept weight `q`, so that
#
#     ε_after = ε[r] + c[r, q] − c[r, g]
#
# moves toward zero, while the number of zeros in the row stays the same. Here we run it on the
# same layer with `trace=True` and read the trace: which weights were swapped in a few rows and
# why, how ε evolves in every row, how the released code's rules (the *official* variant) differ,
# what the *exact* variant does, and whether the layer's real reconstruction error went down.
# The rules are in `docs/dsnot.md` §4; the code is `dsnot_ref/methods/dsnot.py`.

# %%
import matplotlib.pyplot as plt
import numpy as np

import nbutil
from dsnot_ref import data
from dsnot_ref.methods import reconstruction_error
from dsnot_ref.methods.dsnot import (DSnoTPointerError, DSnoTSettings, accept_swaps, contributions,
                                     dsnot, floored_variance, growth_order, prune_order,
                                     regrowth_metric, row_errors)
from dsnot_ref.methods.scores import unstructured_mask, wanda_score
from dsnot_ref.model import load_layer, load_model
from dsnot_ref.stats import StatsAccumulator

size = nbutil.notebook_size()
model_dir, label = nbutil.pick_model_dir(size)
model = load_model(model_dir)
print(f"Model used: {label}")

LAYER = min(size.layer_demo, model.config.num_layers - 1)
SUBLAYER = "self_attn.q_proj"
SPARSITY = 0.5

tokenizer = data.load_tokenizer(model_dir)
tokens = data.calibration_windows(tokenizer, data.BUNDLED_CALIBRATION,
                                  size.n_calibration, size.seqlen, seed=0)        # [S, L]
X = nbutil.layer_inputs(model, tokens, LAYER, SUBLAYER)                          # [S, L, C]
W = load_layer(model, LAYER)[SUBLAYER + ".weight"]                               # [R, C]
S, L, C = X.shape
R = W.shape[0]
acc = StatsAccumulator(C, with_hessian=True)
acc.update(X)
stats = acc.finalize()

c = contributions(W, stats.seq_sum)                                              # [R, C]
wanda = wanda_score(W, stats.seq_sq)                                             # [R, C]
pruned0 = unstructured_mask(wanda, SPARSITY)                                     # [R, C] Wanda's mask
eps0 = row_errors(c, pruned0)                                                    # [R]
settings = DSnoTSettings()                                                       # reference, 50 cycles
print(f"layer {LAYER} {SUBLAYER}: W [R={R}, C={C}], S={S} windows of L={L} tokens")
print(f"Wanda mask: {int(pruned0[0].sum())} of {C} weights pruned per row; "
      f"mean |ε| = {np.abs(eps0).mean():.4g}; update_threshold = {settings.update_threshold}")

# %% [markdown]
# ## The two candidate lists of one row
#
# Take the row with the largest |ε|. The reference variant builds two lists from the initial
# mask, once:
#
# - **growth order**: pruned weights whose contribution has the *sign of ε* (regrowing one
#   subtracts `c[r, g]` from ε), ranked by `c[r, g] / var[g]^γ` (γ = 1): largest first when
#   ε > 0. Dividing by the input variance prefers columns whose input is steady from token to
#   token, so that fixing the mean does not add much token-to-token error.
# - **pruning order**: kept weights whose contribution has the *opposite sign* (pruning one adds
#   `c[r, q]`, again toward zero), smallest Wanda score first: the cheapest weights to lose.
#
# Look at the signs: every growth candidate has the sign of ε, every pruning candidate the other.

# %%
row = int(np.argmax(np.abs(eps0)))
var = floored_variance(stats.var_pooled)                                         # [C]
metric = regrowth_metric(c, var, settings.pow_of_var_regrowing)                  # [R, C]
grow, n_grow = growth_order(c, var, pruned0, eps0, settings.pow_of_var_regrowing)  # [R, C], [R]
prune, n_prune = prune_order(c, wanda, pruned0, eps0)                             # [R, C], [R]
print(f"row {row}: ε = {eps0[row]:.4g}; {n_grow[row]} growth and {n_prune[row]} pruning candidates")
print("\nfirst growth candidates      column        c       var     c/var")
for j in grow[row, :6]:
    print(f"{'':29s}{j:6d} {c[row, j]:9.4g} {var[j]:9.4g} {metric[row, j]:9.4g}")
print("\nfirst pruning candidates     column        c     Wanda")
for j in prune[row, :6]:
    print(f"{'':29s}{j:6d} {c[row, j]:9.4g} {wanda[row, j]:9.4g}")

# %% [markdown]
# How much does the variance term matter? With γ = 0 the growth list is ranked by contribution
# alone. The overlap of the first 10 candidates under γ = 1 and γ = 0 shows how often dividing by
# the variance changes which weight comes back first.

# %%
grow_plain, _ = growth_order(c, var, pruned0, eps0, 0.0)
top = 10
overlap = np.mean([len(set(grow[r, :top]) & set(grow_plain[r, :top])) / top for r in range(R)])
same_first = np.mean(grow[:, 0] == grow_plain[:, 0])
print(f"first {top} growth candidates shared by γ=1 and γ=0: {overlap:.0%} on average; "
      f"same first candidate in {same_first:.0%} of rows")

# %% [markdown]
# ## Running the reference variant with a trace
#
# `dsnot(..., trace=True)` records ε of every row after each cycle (`trace.eps`, row 0 is the
# initial ε), which rows were still active, and every accepted swap as (row, grown column,
# pruned column, cycle). A swap is accepted only while `|ε| > update_threshold` and only if ε
# does not change sign (`ε_after · ε ≥ 0`); a row that rejects a swap, or runs out of
# candidates, stops for good.

# %%
ref = dsnot(W, pruned0, stats.seq_sum, stats.seq_sq, stats.var_pooled, settings, trace=True)
trace = ref.trace
swaps_per_row = np.bincount(trace.swaps[:, 0], minlength=R)                       # [R]
print(f"{ref.cycles} cycles, {ref.n_swaps} swaps; mean |ε| {np.abs(ref.eps_before).mean():.4g} "
      f"-> {np.abs(ref.eps_after).mean():.4g}")
print("pruned weights per row unchanged:", bool(np.all(ref.pruned.sum(1) == pruned0.sum(1))))

# %% [markdown]
# ### Three rows, swap by swap
#
# The row with the largest initial |ε|, the busiest other row (most swaps), and a row that
# stopped after a single swap. For each swap: the regrown column g and its contribution, the pruned column q
# and its contribution, and ε before → after. The last line says why the row stopped; the
# reason is read from the package's own acceptance rule (`accept_swaps`) applied to the row's
# next proposal. Note how conservative the sign rule is: a row often stops on a swap that would
# have *reduced* |ε| by crossing zero; the rule gives up those swaps in exchange for the
# guarantee that |ε| never grows.

# %%
def stop_reason(r):
    """Why row r stopped: threshold, an exhausted list, the sign rule, or the cycle budget."""
    k = swaps_per_row[r]
    eps_now = ref.eps_after[r]
    if k == ref.cycles:
        return "still active when max_cycle_time ran out"
    if abs(eps_now) <= settings.update_threshold:
        return f"|ε| = {abs(eps_now):.3g} <= update_threshold"
    if k >= n_grow[r] or k >= n_prune[r]:
        return "a candidate list is exhausted"
    g, q = grow[r, k], prune[r, k]
    after = eps_now + c[r, q] - c[r, g]
    ok = accept_swaps(np.array([eps_now]), np.array([after]), np.array([True]), settings.update_threshold)
    assert not ok[0]
    return f"next swap (grow {g}, prune {q}) would take ε from {eps_now:.4g} to {after:.4g}: sign change"


busiest = np.argsort(-swaps_per_row, kind="stable")                             # most swaps first
single = np.nonzero(swaps_per_row == 1)[0]
chosen = [row, int(busiest[busiest != row][0])] + ([int(single[0])] if single.size else [])
for r in dict.fromkeys(chosen):
    print(f"row {r}: initial ε = {eps0[r]:.4g}")
    for rr, g, q, cycle in trace.swaps[trace.swaps[:, 0] == r][:8]:
        print(f"  cycle {cycle:2d}: grow {g:4d} (c = {c[r, g]:+9.4g}), prune {q:4d} (c = {c[r, q]:+9.4g}): "
              f"ε {trace.eps[cycle - 1, r]:+9.4g} -> {trace.eps[cycle, r]:+9.4g}")
    if swaps_per_row[r] > 8:
        print(f"  ... {swaps_per_row[r] - 8} more swaps, final ε = {ref.eps_after[r]:+.4g}")
    print("  stopped:", stop_reason(r))

# %% [markdown]
# ### ε per cycle in many rows
#
# Left: |ε| of 60 rows cycle by cycle (log scale): each curve only goes down and flattens when
# the row stops. The assertion below checks it for every row and cycle: in the reference variant
# |ε| never increases (the sign rule guarantees it). Right: how many swaps each row made.

# %%
abs_eps = np.abs(trace.eps)                                                       # [cycles+1, R]
largest_increase = np.max(np.diff(abs_eps, axis=0)) if ref.cycles else 0.0
print(f"largest increase of |ε| from one cycle to the next, over all {R} rows: {largest_increase:.3g}")
assert largest_increase <= 0.0

rows_shown = np.random.default_rng(0).choice(R, size=min(60, R), replace=False)
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
axes[0].plot(np.maximum(abs_eps[:, rows_shown], 1e-6), lw=0.8, alpha=0.7)
axes[0].plot(abs_eps.mean(axis=1), "k", lw=2.5, label="mean over all rows")
axes[0].axhline(settings.update_threshold, color="k", ls=":", label="update_threshold")
axes[0].set(yscale="log", xlabel="cycle", ylabel="|ε[r]|", title="reference variant: |ε| per cycle")
axes[0].legend()
axes[1].hist(swaps_per_row, bins=np.arange(ref.cycles + 2) - 0.5, color="tab:blue")
axes[1].set(xlabel="accepted swaps in the row", ylabel="rows", title="swaps per row")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The official variant: the released code's rules
#
# The official variant reproduces the released PyTorch code pointer for pointer. What changes:
#
# | | reference | official |
# |---|---|---|
# | variance in `c / var` | pooled over all S·L tokens | mean of each sequence's own variance |
# | growth list | pruned weights with the sign of ε | all C columns sorted by `c / var`, kept ones as 0, read from both ends |
# | pruning list | kept weights of opposite sign, by Wanda score | all kept weights, negatives first and positives last |
# | direction | fixed by the initial sign of ε | re-read every cycle from the current ε |
# | acceptance | `|ε| > threshold` and no sign change | `|ε| > threshold` only (the sign check is off by default) |
#
# Without the sign rule a swap can overshoot: ε jumps past zero, and the next cycle works in
# the other direction. So |ε| can go up. The released code also cannot run on very narrow
# layers: its pointers leave their lists (the official variant raises `DSnoTPointerError` there
# instead of misbehaving); on such a layer we run fewer cycles.

# %%
official_settings = DSnoTSettings(variant="official")
try:
    off = dsnot(W, pruned0, stats.seq_sum, stats.seq_sq, stats.var_within, official_settings, trace=True)
except DSnoTPointerError as err:
    print("50 cycles are impossible here:", err)
    official_settings = DSnoTSettings(variant="official", max_cycle_time=4)
    off = dsnot(W, pruned0, stats.seq_sum, stats.seq_sq, stats.var_within, official_settings, trace=True)
off_eps = off.trace.eps                                                           # [cycles+1, R]
sign_changed = np.any(np.sign(off_eps[1:]) * np.sign(eps0)[None, :] < 0, axis=0)  # [R]
went_up = np.any(np.diff(np.abs(off_eps), axis=0) > 0, axis=0)                   # [R]
print(f"official: {off.cycles} cycles, {off.n_swaps} swaps; mean |ε| {np.abs(off.eps_before).mean():.4g} "
      f"-> {np.abs(off.eps_after).mean():.4g}")
print(f"rows where ε changed sign at some cycle: {sign_changed.sum()} of {R}; "
      f"rows where |ε| went up at some cycle: {went_up.sum()}")
print(f"masks of the two variants differ in {np.mean(off.pruned != ref.pruned):.2%} of the weights")

# %% [markdown]
# Signed ε divided by its initial value, for the same rows as above: the reference curves stay
# between 0 and 1; official curves that dip below 0 overshot, and those that zig-zag were pushed
# back and forth by the re-read direction.

# %%
scale = np.where(np.abs(eps0) > 0, eps0, 1.0)
fig, axes = plt.subplots(1, 2, figsize=(12, 4), sharey=True)
axes[0].plot(trace.eps[:, rows_shown] / scale[rows_shown], lw=0.8, alpha=0.7)
axes[0].set(title="reference: ε / ε_initial", xlabel="cycle", ylabel="ε[r] / ε_initial[r]")
axes[1].plot(off_eps[:, rows_shown] / scale[rows_shown], lw=0.8, alpha=0.7)
axes[1].set(title=f"official ({official_settings.max_cycle_time} cycles): ε / ε_initial", xlabel="cycle")
for ax in axes:
    ax.axhline(0, color="k", lw=0.8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The exact variant
#
# Both variants above steer ε, the error of the *expected* output. Notebook 1 showed that a small
# ε does not mean a small error on each token. The exact variant (`dsnot_ref.methods.dsnot_exact`,
# `docs/exact_variant.md`) proposes swaps from the same lists but accepts one only if it lowers
# the row's true squared error on the calibration tokens, `E_r = d_rᵀ G d_r` with `G = Σ x xᵀ`.

# %%
from dsnot_ref.methods.dsnot_exact import dsnot_exact  # noqa: E402

exact_pruned, exact_diag = dsnot_exact(W, pruned0, stats, DSnoTSettings(variant="exact"))
print(f"exact: {exact_diag['cycles']} cycles, {exact_diag['swaps']} swaps; "
      f"mean |ε| {exact_diag['eps_before']:.4g} -> {exact_diag['eps_after']:.4g}")

# %% [markdown]
# ## Did the layer's output get closer to the dense one?
#
# The quantity that matters downstream is the output error on the calibration tokens,
# `‖(W − W⊙keep) X‖² / ‖W X‖²` (`reconstruction_error`, from the Hessian of the same tokens).
# Compare it with mean |ε| for each mask. Reducing ε (what the reference and official variants
# do) need not reduce this error; the exact variant cannot increase it.

# %%
results = {
    "Wanda (initial)": pruned0,
    "+ DSnoT reference": ref.pruned,
    f"+ DSnoT official ({official_settings.max_cycle_time} cycles)": off.pruned,
    "+ DSnoT exact": exact_pruned,
}
recon = {name: reconstruction_error(W, p, stats.hessian) for name, p in results.items()}
mean_eps = {name: float(np.abs(row_errors(c, p)).mean()) for name, p in results.items()}
print(f"{'mask':32s} {'mean |ε|':>10s} {'recon error':>12s} {'pruned/row':>11s}")
for name, p in results.items():
    print(f"{name:32s} {mean_eps[name]:10.4g} {recon[name]:12.5f} {int(p.sum(1).min()):>5d}-{int(p.sum(1).max())}")

fig, axes = plt.subplots(1, 2, figsize=(12, 3.5))
names = list(results)
axes[0].barh(names, [mean_eps[n] for n in names], color="tab:orange")
axes[0].set(title="mean |ε| (what DSnoT steers)")
change = [100 * (recon[n] / recon[names[0]] - 1) for n in names]
axes[1].barh(names, change, color=["tab:red" if v > 0 else "tab:blue" for v in change])
axes[1].axvline(0, color="k", lw=0.8)
axes[1].set(title="change of ‖(W − W⊙keep)X‖² / ‖WX‖² vs Wanda (%)", xlabel="%")
axes[1].set_yticklabels([])
for ax in axes:
    ax.invert_yaxis()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## Try this
#
# - Set `update_threshold=0.0` or `pow_of_var_regrowing=0.0` in `DSnoTSettings` for the
#   reference run: how do the swaps per row and the reconstruction error change?
# - Turn the official variant's sign check on (`without_same_sign=False`): do the overshoots
#   disappear, and where does its reconstruction error land?
