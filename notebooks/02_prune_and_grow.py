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
# Notebook 1 ended with a Wanda mask, its row errors `ε[r] = Σ_{j pruned} c[r, j]`, and the
# split of each row's squared output error into a mean part (which ε measures) and a variance
# part (which it does not). DSnoT now edits the mask without touching a single weight value: in
# every row, each cycle regrows one pruned weight `g` and prunes one kept weight `q`, so that
#
#     ε_after = ε[r] + c[r, q] − c[r, g]
#
# moves toward zero, while the number of zeros in the row stays the same. We start with a toy
# row you can check by hand, then run DSnoT on notebook 1's layer with `trace=True` and read
# the trace: which weights were swapped and why, why rows stopped, how the released code's rules
# (the *official* variant) differ, what the *exact* variant does, and, at the end, what happened
# to the mean and variance parts of the error. The rules are in `docs/dsnot.md` §4. To read the
# method itself, start with `dsnot_ref/methods/dsnot/per_row.py`: DSnoT one row at a time, in
# plain Python (the vectorised `dsnot_ref/methods/dsnot/reference.py` gives the same masks).

# %%
import matplotlib.pyplot as plt
import numpy as np

import nbutil
from dsnot_ref import data
from dsnot_ref.methods import reconstruction_error
from dsnot_ref.methods.dsnot.common import DSnoTPointerError, DSnoTSettings, floored_variance
from dsnot_ref.methods.dsnot.orders import growth_order, prune_order
from dsnot_ref.methods.dsnot.per_row import contributions, regrowth_metric, row_errors
from dsnot_ref.methods.dsnot.reference import accept_swaps
from dsnot_ref.methods.gram import gram_from_hessian
from dsnot_ref.methods.refiners import dsnot
from dsnot_ref.methods.scores import unstructured_mask, wanda_score
from dsnot_ref.model import load_layer, load_model
from dsnot_ref.stats import StatsAccumulator

settings = DSnoTSettings()                                                       # reference, 50 cycles
print(f"reference settings: update_threshold = {settings.update_threshold}, "
      f"pow_of_var_regrowing = {settings.pow_of_var_regrowing}, max_cycle_time = {settings.max_cycle_time}")

# %% [markdown]
# ## A toy row you can check by hand
#
# One row of eight weights, made-up input statistics, half of the weights pruned by Wanda
# (`|W| · sqrt(seq_sq)`, the four smallest scores). The contributions `c = W · seq_sum` are
# round numbers so that every step can be done in your head.

# %%
toy_W = np.array([[-0.1, 0.25, 0.8, 0.35, -1.0, 0.25, -1.5, 1.2]])               # [1, 8]
toy_seq_sum = np.array([1.0, 2.0, -0.25, 1.0, -0.8, 1.0, 0.1, 0.5])               # [8]
toy_seq_sq = np.array([1.0, 4.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0])                   # [8]
toy_var = np.array([1.0, 1.0, 1.0, 4.0, 1.0, 1.0, 1.0, 1.0])                      # [8]
toy_c = contributions(toy_W, toy_seq_sum)[0]                                      # [8]
toy_score = wanda_score(toy_W, toy_seq_sq)[0]                                     # [8]
toy_pruned = unstructured_mask(wanda_score(toy_W, toy_seq_sq), 0.5)               # [1, 8]
toy_eps = row_errors(contributions(toy_W, toy_seq_sum), toy_pruned)[0]
print("column       ", "  ".join(f"{j:6d}" for j in range(8)))
print("c = W·seq_sum", "  ".join(f"{v:+6.2f}" for v in toy_c))
print("Wanda score  ", "  ".join(f"{v:6.2f}" for v in toy_score))
print("c / var      ", "  ".join(f"{v:+6.3f}" for v in toy_c / toy_var))
print("pruned       ", "  ".join(f"{'yes' if p else '':>6s}" for p in toy_pruned[0]))
print(f"ε = sum of the pruned contributions = {' + '.join(f'({v:+.2f})' for v in toy_c[toy_pruned[0]])} = {toy_eps:+.2f}")

fig, axes = plt.subplots(1, 2, figsize=(13, 3.2), gridspec_kw={"width_ratios": [1.4, 1]})
axes[0].bar(range(8), toy_c, color=["tab:red" if p else "tab:gray" for p in toy_pruned[0]])
axes[0].bar([9], [toy_eps], color="tab:orange")
axes[0].set_xticks(list(range(8)) + [9], [str(j) for j in range(8)] + ["ε"])
axes[0].axhline(0, color="k", lw=0.8)
axes[0].set(xlabel="column j (red: pruned, gray: kept)", ylabel="c[j]",
            title="toy row: contributions, and ε = Σ of the red bars")
steps = [("start", toy_eps, "tab:orange", None),
         ("cycle 1: grow 1,\nprune 2 (accepted)", toy_eps + toy_c[2] - toy_c[1], "tab:green", None),
         ("cycle 2: grow 5,\nprune 6 (rejected)", toy_eps + toy_c[2] - toy_c[1] + toy_c[6] - toy_c[5], "white", "//")]
axes[1].axhspan(-settings.update_threshold, settings.update_threshold, color="0.9", zorder=0,
                label="|ε| <= update_threshold")
for x, (name, value, color, hatch) in enumerate(steps):
    axes[1].bar(x, value, color=color, edgecolor="k", hatch=hatch, zorder=2)
    axes[1].text(x, value, f"{value:+.2f}", ha="center", va="bottom" if value >= 0 else "top")
axes[1].set_xticks(range(3), [name for name, *_ in steps], fontsize=8)
axes[1].axhline(0, color="k", lw=0.8)
axes[1].set(ylabel="ε", title="two swaps: the second would cross zero", ylim=(-0.3, 1.15))
axes[1].legend(fontsize=8)
plt.tight_layout()
plt.show()

# %% [markdown]
# ε = +1.0 > 0: the sparse row's expected output is 1.0 too small. To move ε toward zero, DSnoT
# regrows a pruned weight with **positive** contribution (ε loses `c[g]`) and prunes a kept weight
# with **negative** contribution (ε gains `c[q]`, a negative number).
#
# - Growth list (pruned, c > 0, largest `c / var` first): column 1 (0.5), then 5 (0.25), then
#   3 (0.35 / 4 = 0.0875: its input varies a lot, so it comes last).
# - Pruning list (kept, c < 0, smallest Wanda score first): column 2 (score 0.8), then 6 (1.5).
#
# **Cycle 1:** grow 1, prune 2: `ε_after = 1.0 + (−0.2) − 0.5 = +0.3`. Same sign as ε and
# `|ε| = 1.0 > 0.1`: accepted.
#
# **Cycle 2:** grow 5, prune 6: `ε_after = 0.3 + (−0.15) − 0.25 = −0.1`. That would make
# |ε| smaller (0.1 < 0.3), but it changes ε's sign, and the sign rule rejects it. The row stops
# for good at ε = +0.3.
#
# The package's acceptance rule agrees, and so does the whole algorithm run on this row:

# %%
print("cycle 1 accepted:", bool(accept_swaps(np.array([1.0]), np.array([1.0 - 0.2 - 0.5]), np.array([True]),
                                             settings.update_threshold)[0]))
print("cycle 2 accepted:", bool(accept_swaps(np.array([0.3]), np.array([0.3 - 0.15 - 0.25]), np.array([True]),
                                             settings.update_threshold)[0]))
toy = dsnot(toy_W, toy_pruned, toy_seq_sum, toy_seq_sq, toy_var, settings, trace=True)
print("ε after each cycle:", toy.trace.eps[:, 0])
print("accepted swaps (row, grown column, pruned column, cycle):", toy.trace.swaps.tolist())
print("pruned columns before:", np.nonzero(toy_pruned[0])[0].tolist(), "after:", np.nonzero(toy.pruned[0])[0].tolist())

# %% [markdown]
# ## The real layer
#
# Notebook 1's layer: its calibration inputs, their statistics, and Wanda's mask at 50%.

# %%
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
print(f"layer {LAYER} {SUBLAYER}: W [R={R}, C={C}], S={S} windows of L={L} tokens")
print(f"Wanda mask: {int(pruned0[0].sum())} of {C} weights pruned per row; mean |ε| = {np.abs(eps0).mean():.4g} "
      f"(per sequence; {np.abs(eps0).mean() / L:.3g} per token); update_threshold {settings.update_threshold} "
      f"per sequence = {settings.update_threshold / L:.2g} per token")

# %% [markdown]
# ## The two candidate lists of one row
#
# Take the row with the largest |ε|. The reference variant builds two lists from the initial
# mask, once:
#
# - **growth order**: pruned weights whose contribution has the *sign of ε* (regrowing one
#   subtracts `c[r, g]` from ε), ranked by `c[r, g] / var[g]^γ` (γ = 1): largest first when
#   ε > 0. Dividing by the input variance prefers columns whose input is steady from token to
#   token, so that fixing the mean does not add much token-to-token error (the variance part of
#   notebook 1).
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
# ### Where the candidates sit
#
# The same row as above: every weight's contribution against its Wanda score, the row's cut
# (dashed), and what the run did. The grown weights (stars) come from the pruned side, left of
# the cut, with the sign of ε; the newly pruned ones (crosses) from just right of the cut, with
# the opposite sign: cheap weights by Wanda's measure. DSnoT only trades weights near the cut.

# %%
grown_cols = trace.swaps[trace.swaps[:, 0] == row, 1]
newly_pruned_cols = trace.swaps[trace.swaps[:, 0] == row, 2]
is_grow_cand = np.zeros(C, bool)
is_grow_cand[grow[row, :n_grow[row]]] = True
is_prune_cand = np.zeros(C, bool)
is_prune_cand[prune[row, :n_prune[row]]] = True
fig, ax = plt.subplots(figsize=(9, 4.2))
for sel, style in ((pruned0[row] & ~is_grow_cand, dict(color="tab:red", alpha=0.25, label="pruned, wrong sign to grow")),
                   (is_grow_cand, dict(color="tab:red", label="growth candidates (pruned, sign of ε)")),
                   (~pruned0[row] & ~is_prune_cand, dict(color="tab:gray", alpha=0.25, label="kept, wrong sign to prune")),
                   (is_prune_cand, dict(color="tab:blue", label="pruning candidates (kept, opposite sign)"))):
    ax.scatter(wanda[row, sel], c[row, sel], s=8, **style)
ax.scatter(wanda[row, grown_cols], c[row, grown_cols], s=90, marker="*", color="gold", edgecolor="k", label="grown by the run")
ax.scatter(wanda[row, newly_pruned_cols], c[row, newly_pruned_cols], s=60, marker="X", color="cyan", edgecolor="k",
           label="pruned by the run")
ax.axvline(wanda[row, pruned0[row]].max(), color="k", ls="--", lw=0.8)
ax.axhline(0, color="k", lw=0.5)
ax.set(xscale="log", yscale="symlog", xlabel="Wanda score", ylabel="c[r, j] (symlog)",
       title=f"row {row}: ε = {eps0[row]:.3g} -> {ref.eps_after[row]:.3g} in {swaps_per_row[row]} swaps")
ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
plt.tight_layout()
plt.show()

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
def why_stopped(r):
    """(reason, details) for row r: cycle budget, threshold, an exhausted list, or the sign rule."""
    k = swaps_per_row[r]
    eps_now = ref.eps_after[r]
    if trace.active[-1, r]:
        return "cycle budget", "still active when max_cycle_time ran out"
    if abs(eps_now) <= settings.update_threshold:
        return "threshold", f"|ε| = {abs(eps_now):.3g} <= update_threshold"
    if k >= n_grow[r] or k >= n_prune[r]:
        return "list exhausted", "a candidate list is exhausted"
    g, q = grow[r, k], prune[r, k]
    after = eps_now + c[r, q] - c[r, g]
    ok = accept_swaps(np.array([eps_now]), np.array([after]), np.array([True]), settings.update_threshold)
    assert not ok[0]
    return "sign rule", f"next swap (grow {g}, prune {q}) would take ε from {eps_now:.4g} to {after:.4g}: sign change"


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
    print("  stopped:", why_stopped(r)[1])

# %% [markdown]
# ### Exercise 2: predict the next swap
#
# For the row with the largest |ε|, the k-th swap it tries regrows `grow[row, k]` and prunes
# `prune[row, k]` (a row stops at its first rejection, so k is the number of swaps it has made).
# Write your own function that takes ε before the swap and the two contributions and returns
# `ε_after` and whether the reference rule accepts the swap; then check your predictions against
# the trace, for every swap the row made and for the one that stopped it. Our answer is below;
# replace it with yours.

# %%
def my_swap_decision(eps_before, c_grown, c_pruned, threshold):
    """(ε_after, accepted?) of one reference-variant swap in one row."""
    eps_after = eps_before + c_pruned - c_grown
    accepted = abs(eps_before) > threshold and eps_after * eps_before >= 0
    return eps_after, accepted


k_stop = swaps_per_row[row]
for k in range(min(k_stop + 1, n_grow[row], n_prune[row])):
    g, q = grow[row, k], prune[row, k]
    before = trace.eps[k, row]
    predicted, accepted = my_swap_decision(before, c[row, g], c[row, q], settings.update_threshold)
    happened = k < k_stop                                   # the trace holds the row's k-th swap
    assert accepted == happened, (k, predicted, accepted)
    if happened:
        assert np.isclose(predicted, trace.eps[k + 1, row], rtol=1e-12, atol=1e-12), (k, predicted)
    if k < 3 or k >= k_stop - 1:
        print(f"swap {k}: ε {before:+.4g} -> predicted {predicted:+.4g}, "
              f"{'accepted' if accepted else 'rejected'}; trace: {'accepted' if happened else 'rejected'}")
print(f"all {min(k_stop + 1, n_grow[row], n_prune[row])} predictions for row {row} agree with the trace")

# %% [markdown]
# ### Why the rows stopped
#
# Every row stops for one of four reasons: its |ε| reached the threshold, a candidate list ran
# out, the sign rule rejected its next swap, or it was still going when the cycle budget ran
# out. Counting them over the layer shows which rule shapes the result: on the demo model
# almost every row stops on the sign rule after a handful of swaps (the trace above ran 16 of
# its 50 cycles), so the sign rule, not the cycle budget, decides how far DSnoT goes.

# %%
reasons = [why_stopped(r)[0] for r in range(R)]
labels = ["sign rule", "threshold", "list exhausted", "cycle budget"]
counts = [reasons.count(x) for x in labels]
fig, ax = plt.subplots(figsize=(7, 2.6))
ax.barh(labels, counts, color=["tab:red", "tab:green", "tab:orange", "tab:gray"])
for y, n in enumerate(counts):
    ax.text(n, y, f" {n}", va="center")
ax.invert_yaxis()
ax.set(xlabel="rows", title=f"why the {R} rows stopped (reference variant)")
plt.tight_layout()
plt.show()

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
# | acceptance | `|ε| > threshold` and no sign change | `|ε| > threshold` only (the sign check is off) |
#
# Why is the sign check off? The released script declares its `--without_same_sign` option with
# `type=bool`, and Python's `bool("False")` is `True` (any non-empty string is), so the option
# cannot be switched off from the command line: every published run had the check off. (The
# `without_same_sign=False` setting here turns it on, as the authors presumably meant it to.)
# A second quirk: in the pruning list, kept weights whose contribution is exactly `c == 0` (a
# dead input channel, `seq_sum[j] = 0`) are all mapped to list position 0, so one column can be
# proposed again and again; the official variant reproduces it, the reference variant never
# proposes a zero contribution.
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
# Signed ε divided by its initial value, for the same rows as above, each panel on its own
# scale: the reference curves (left) stay between 0 and 1; official curves (right) that dip
# below 0 overshot, and those that zig-zag were pushed back and forth by the re-read direction.
# The right panel is clipped to ±2; the count of rows that leave it is printed.

# %%
scale = np.where(np.abs(eps0) > 0, eps0, 1.0)
fig, axes = plt.subplots(1, 2, figsize=(12, 4))
axes[0].plot(trace.eps[:, rows_shown] / scale[rows_shown], lw=0.8, alpha=0.7)
axes[0].set(title="reference: ε / ε_initial", xlabel="cycle", ylabel="ε[r] / ε_initial[r]", ylim=(-0.1, 1.05))
relative_off = off_eps[:, rows_shown] / scale[rows_shown]                         # [cycles+1, rows shown]
axes[1].plot(relative_off, lw=0.8, alpha=0.7)
axes[1].set(title=f"official ({official_settings.max_cycle_time} cycles): ε / ε_initial", xlabel="cycle",
            ylim=(-2, 2))
for ax in axes:
    ax.axhline(0, color="k", lw=0.8)
plt.tight_layout()
plt.show()
print(f"official rows shown that leave ±2 at some cycle: {int(np.any(np.abs(relative_off) > 2, axis=0).sum())} "
      f"of {rows_shown.size}")

# %% [markdown]
# ## The exact variant
#
# Both variants above steer ε, the error of the *expected* output: the mean part of notebook 1.
# The exact variant (`dsnot_ref.methods.dsnot.exact`, `docs/exact_variant.md`) proposes swaps
# from the same lists but accepts one only if it lowers the row's true squared error on the
# calibration tokens, `E_r = Σ_t e_t² = d_rᵀ G d_r`, where `d_r` is the row of removed weights
# (`W[r, j]` where pruned, 0 elsewhere) and `G = Σ_t x_t x_tᵀ` is the Gram matrix of the inputs
# (the code's `stats.hessian` is the same matrix times 2/S). So it sees the mean part and the
# variance part together.

# %%
exact = dsnot(W, pruned0, stats.seq_sum, stats.seq_sq, stats.var_pooled, DSnoTSettings(variant="exact"),
              gram=gram_from_hessian(stats.hessian, stats.n_seq))
exact_pruned = exact.pruned
print(f"exact: {exact.cycles} cycles, {exact.n_swaps} swaps; "
      f"mean |ε| {np.abs(exact.eps_before).mean():.4g} -> {np.abs(exact.eps_after).mean():.4g}")

# %% [markdown]
# ## Did the layer's output get closer to the dense one? The mean and variance parts
#
# The quantity that matters downstream is the output error on the calibration tokens,
# `‖(W − W⊙keep) X‖² / ‖W X‖²` (`reconstruction_error`, from the Gram matrix of the same tokens).
# Notebook 1 split it, row by row, into the mean part `T·(ε/L)²` and the variance part
# `Σ_t (e_t − ε/L)²`. Here is that split for Wanda's mask and for each variant's final mask.
# The reference and official variants shrink the mean part, the only part they see; for a Wanda
# start it was a sliver of the total, so the total barely moves. The official variant, which
# overshoots and trades weights more freely, removes nearly all of the mean part but lets the
# variance part grow by more. The exact variant lowers the total, because its rule looks at
# the total; it leaves more of the mean part than the reference variant does.

# %%
results = {
    "Wanda (initial)": pruned0,
    "+ DSnoT reference": ref.pruned,
    f"+ DSnoT official ({official_settings.max_cycle_time} cycles)": off.pruned,
    "+ DSnoT exact": exact_pruned,
}
X_flat = X.reshape(S * L, C).astype(np.float64)                                  # [T, C]
dense_energy = ((X_flat @ W.T.astype(np.float64)) ** 2).sum()
split = {}                                             # mask -> (mean part, variance part), relative
for name, p in results.items():
    err = X_flat @ np.where(p, W, 0.0).T.astype(np.float64)                       # [T, R]
    mean_err = err.mean(axis=0)                                                   # [R] = ε / L
    split[name] = (S * L * (mean_err ** 2).sum() / dense_energy, ((err - mean_err) ** 2).sum() / dense_energy)
recon = {name: reconstruction_error(W, p, stats.hessian) for name, p in results.items()}
mean_eps = {name: float(np.abs(row_errors(c, p)).mean()) for name, p in results.items()}
names = list(results)
print(f"{'mask':32s} {'mean |ε|':>10s} {'recon error':>12s} {'mean part':>10s} {'var part':>10s} {'vs Wanda':>9s}")
for name in names:
    print(f"{name:32s} {mean_eps[name]:10.4g} {recon[name]:12.5f} {split[name][0]:10.5f} {split[name][1]:10.5f} "
          f"{100 * (recon[name] / recon[names[0]] - 1):+8.2f}%")

fig, axes = plt.subplots(1, 2, figsize=(13, 3.8), gridspec_kw={"width_ratios": [1, 1.6]})
axes[0].barh(names, [mean_eps[n] for n in names], color="tab:orange")
axes[0].set(title="mean |ε| (what DSnoT steers)")
axes[0].invert_yaxis()
base_var = split[names[0]][1]
axes[1].barh(names, [split[n][1] for n in names], color="tab:gray", label="variance part")
axes[1].barh(names, [split[n][0] for n in names], left=[split[n][1] for n in names], color="tab:orange",
             label="mean part")
axes[1].axvline(sum(split[names[0]]), color="k", ls="--", lw=0.8, label="Wanda's total")
for y, n in enumerate(names):
    axes[1].text(sum(split[n]), y, f" {100 * (recon[n] / recon[names[0]] - 1):+.1f}%", va="center", fontsize=8)
low = 0.9 * min(split[n][1] for n in names)
axes[1].set_xlim(low, 1.06 * max(sum(split[n]) for n in names))
axes[1].set(title=f"‖(W − W⊙keep) X‖² / ‖W X‖², split (axis starts at {low:.3g})", xlabel="relative error")
axes[1].set_yticklabels([])
axes[1].invert_yaxis()
axes[1].legend(fontsize=8, loc="lower right")
plt.tight_layout()
plt.show()

# %% [markdown]
# **Why DSnoT did not help Wanda here, and when it would.** DSnoT's reference and official
# rules can only remove the mean part of each row's error. For a Wanda mask that part is a
# small share of the total (notebook 1), so even driving ε to zero leaves the layer's error
# almost unchanged, and the swaps themselves move the variance part, which nothing in those
# rules watches. DSnoT helps where the mean part is large: from a magnitude mask on a layer
# with outlier input channels (notebook 1's stacked bars; try it below), and it helps most
# when its rule also watches the variance part (the exact variant). dsnot_ref's SparseSwaps
# refiner (`dsnot_ref/methods/swaps.py`, `docs/swaps.md`) goes all the way: it picks each
# swap by its exact change of `E_r`, with no ε in the rule at all.

# %% [markdown]
# ## Try this
#
# Change a setting and rerun the cells below the set-up; then open the box to compare.
#
# - Start from magnitude instead of Wanda: `pruned0 = unstructured_mask(magnitude_score(W), SPARSITY)`
#   (import `magnitude_score` from `dsnot_ref.methods.scores`). Notebook 1 says its mean part is
#   large: does the reference variant now lower the total error?
#
#   <details><summary>What you should see</summary>
#
#   On the demo model (layer 2 `q_proj`, 50%) the magnitude mask's error is 0.0472 of
#   ‖WX‖², 56% of it mean part. The reference variant lowers it to 0.0242 (-49%), the
#   official variant to 0.0206 (-56%), the exact variant to 0.0211 (-55%): the mean part
#   almost vanishes in all three, and the variance part hardly moves. Same code, same layer:
#   the starting mask decides whether DSnoT helps.
#   </details>
#
# - Set `update_threshold=0.0` or `pow_of_var_regrowing=0.0` in `DSnoTSettings` for the
#   reference run: how do the swaps per row, the reasons rows stop, and the split change?
#
#   <details><summary>What you should see</summary>
#
#   On the demo model: `update_threshold=0.0` gives the same 1673 swaps, the same mean |ε|
#   and the same error: the 52 rows that the threshold stopped make no further swap without
#   it, so the bar chart moves them from "threshold" to another reason. `pow_of_var_regrowing=0.0`
#   makes fewer swaps (1374) and lowers the error slightly more (-1.3% instead of -0.8%):
#   on this layer dividing by the variance did not help the total.
#   </details>
#
# - Turn the official variant's sign check on (`without_same_sign=False`): do the overshoots
#   disappear, and where does its reconstruction error land?
#
#   <details><summary>What you should see</summary>
#
#   On the demo model: no sign changes and no increase of |ε| any more; 1673 swaps, mean |ε|
#   0.74, and the reconstruction error 0.01218, the same as the reference variant's (-0.8%
#   against Wanda) instead of +7%. The sign rule, not the list details, separates the
#   released default from the reference variant here.
#   </details>
