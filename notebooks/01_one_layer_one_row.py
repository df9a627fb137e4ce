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
# # 1 · One layer, one row: the quantity DSnoT steers, and the part of the error it can reach
#
# DSnoT ([Zhang et al., "Dynamic Sparse No Training", ICLR 2024, arXiv 2310.08915](https://arxiv.org/abs/2310.08915))
# changes *which* weights of a pruned layer are zero so that the layer's **expected output**
# moves back toward the dense layer's. This notebook puts every quantity of that sentence on
# real numbers for one linear layer, and ends with the one fact that decides how much DSnoT
# can help: a row's squared output error splits exactly into a **mean part**, which DSnoT
# steers, and a **variance part**, which it does not.
#
# 1. the layer's calibration inputs `X` (we run the first decoder layers on a few windows of
#    text and capture what enters the layer),
# 2. the contribution of each weight to the expected output, `c[r, j] = W[r, j] · seq_sum[j]`,
# 3. the per-row error `ε[r] = Σ_{j pruned} c[r, j]` of a magnitude mask and a Wanda mask,
# 4. how ε relates to the real output error on the calibration tokens, and the mean/variance
#    split of that error.
#
# Everything below is `dsnot_ref` code; this notebook only calls it and plots
# (`nbutil` picks the model and the size, see `notebooks/README.md`).
#
# ### From the paper's symbols to the code's names
#
# | in the paper (in words) | in `dsnot_ref` | notes |
# |---|---|---|
# | weight matrix `W`, `C_out × C_in` | `W`, shape `[R, C]` | R output rows, C input columns (Hugging Face orientation) |
# | mask `M` (1 = weight kept) | `pruned`, bool `[R, C]` | **the complement**: True = weight is zero |
# | calibration input `X` of the layer | `X`, shape `[S, L, C]` | S sequences of L tokens |
# | expected input `E[X_j]` | `seq_sum[j] = L · mean_t x[t, j]` | the released code's "per-sequence sum" units |
# | input norm `‖X_j‖₂` (Wanda) | `sqrt(seq_sq[j])` | `seq_sq[j] = (1/S) Σ_s Σ_t x[s, t, j]²`, so `‖X_j‖₂ / sqrt(S)`: the same ranking |
# | input variance `Var(X_j)` | `stats.var_pooled` (reference), `stats.var_within` (official) | notebook 2 |
# | expected reconstruction error of row r | `ε[r] = Σ_{j pruned} c[r, j]` (`row_errors`) | L × the mean error per token |
# | contribution of weight (r, j) | `c[r, j] = W[r, j] · seq_sum[j]` (`contributions`) | |
# | growth criterion: the contribution over the variance | `regrowth_metric`: `c / var**γ` | γ = `pow_of_var_regrowing` (released code), default 1 |
# | pruning criterion: Wanda score with a sign condition | `wanda_score`, `prune_order` | notebook 2 |
# | update threshold | `DSnoTSettings.update_threshold` (0.1) | in per-sequence-sum units, see below |
# | maximum cycles | `DSnoTSettings.max_cycle_time` (50) | at most one swap per row and cycle |
# | Gram matrix of the inputs, `X Xᵀ` | `stats.hessian` = `(2/S) Σ_s X_sᵀ X_s` | SparseGPT calls it the Hessian; here it is "the Gram matrix" |
# | the removed part of row r | `d_r[j] = W[r, j]` if pruned, else 0 | the row's error at token t is `e_t = d_r · x_t` |
#
# **Units of the threshold.** `seq_sum` is a sum over the L tokens of a sequence, so ε and
# `update_threshold` are in "per sequence" units: the default 0.1 means a mean output error of
# 0.1 / L per token, about 4e-4 at L = 256. The threshold therefore means something different
# at every L; dsnot_ref keeps it as the released code has it.

# %%
import inspect

import matplotlib.pyplot as plt
import numpy as np

import nbutil
from dsnot_ref import data
from dsnot_ref.methods import reconstruction_error
from dsnot_ref.methods.dsnot.common import DSnoTSettings
from dsnot_ref.methods.dsnot.per_row import contributions, row_errors
from dsnot_ref.methods.scores import magnitude_score, unstructured_mask, wanda_score
from dsnot_ref.model import load_layer, load_model
from dsnot_ref.stats import StatsAccumulator

size = nbutil.notebook_size()
model_dir, label = nbutil.pick_model_dir(size)
model = load_model(model_dir)
cfg = model.config
print(f"Model used: {label}")
print(f"size setting: {size.name}; {cfg.num_layers} layers, hidden size {cfg.hidden_size}")

LAYER = min(size.layer_demo, cfg.num_layers - 1)  # a layer with a few dense layers before it
SUBLAYER = "self_attn.q_proj"                      # DSnoT's default adjusts attention projections
SPARSITY = 0.5                                     # fraction of each row set to zero

# %% [markdown]
# ## The layer and its calibration inputs
#
# Calibration windows are `S` random windows of `L` tokens from the bundled calibration corpus
# (the paper's protocol, `docs/dsnot.md` §6, with a much smaller budget). The dense model runs up
# to our layer; a capture callback of `block_forward` keeps the input of `SUBLAYER`. This is the
# helper doing it (the pipeline gathers its statistics the same way):

# %%
print(inspect.getsource(nbutil.layer_inputs))

# %%
tokenizer = data.load_tokenizer(model_dir)
tokens = data.calibration_windows(tokenizer, data.BUNDLED_CALIBRATION,
                                  size.n_calibration, size.seqlen, seed=0)        # [S, L]
X = nbutil.layer_inputs(model, tokens, LAYER, SUBLAYER)                          # [S, L, C]
W = load_layer(model, LAYER)[SUBLAYER + ".weight"]                               # [R, C]
S, L, C = X.shape
R = W.shape[0]
T = S * L                                                                        # calibration tokens
X_flat = X.reshape(T, C).astype(np.float64)                                      # [T, C]

acc = StatsAccumulator(C, with_hessian=True)   # the Gram matrix is only for the reconstruction error
acc.update(X)
stats = acc.finalize()
print(f"layer {LAYER} {SUBLAYER}: W is [R={R}, C={C}]; X is [S={S}, L={L}, C={C}]")
print("first window:", repr(tokenizer.decode(tokens[0].tolist())[:160]))
threshold = DSnoTSettings().update_threshold
print(f"update_threshold = {threshold} per sequence = {threshold / L:.2g} per token at L = {L}")

# %% [markdown]
# ## The contribution of one weight to the expected output
#
# `seq_sum[j]` is the input of column `j` summed over the `L` tokens of a sequence and averaged
# over sequences (so it is `L ×` the mean input: the units of the released code). Each weight
# contributes `c[r, j] = W[r, j] · seq_sum[j]` to row `r`'s expected output; summing a row's
# contributions gives that row's output summed over a sequence, averaged over sequences.
# The check below computes that output the long way, `X @ Wᵀ`, token by token: the two agree.

# %%
contribution = contributions(W, stats.seq_sum)                                   # [R, C]
dense_out = X_flat @ W.T.astype(np.float64)                                      # [T, R]
expected_row_output = dense_out.reshape(S, L, R).sum(axis=1).mean(axis=0)        # [R]
print("max |Σ_j c[r, j] − mean_s Σ_t y[s, t, r]| =",
      np.abs(contribution.sum(axis=1) - expected_row_output).max())
print(f"typical |expected output| per row: {np.median(np.abs(expected_row_output)):.4g} per sequence, "
      f"{np.median(np.abs(expected_row_output)) / L:.3g} per token")

# %% [markdown]
# ## Two masks and their row errors ε
#
# Magnitude prunes the smallest `|W|` in each row; Wanda the smallest `|W| · ‖x_j‖`
# (`‖x_j‖ = sqrt(seq_sq[j])`). Pruning removes those weights' contributions, so the expected
# output of row `r` drops by `ε[r] = Σ_{j pruned} c[r, j]`: the quantity DSnoT drives toward
# zero. Look at the spread of ε: it is signed, and most rows are far from zero.

# %%
masks = {
    "magnitude": unstructured_mask(magnitude_score(W), SPARSITY),                # pruned [R, C]
    "wanda": unstructured_mask(wanda_score(W, stats.seq_sq), SPARSITY),          # pruned [R, C]
}
eps = {name: row_errors(contribution, pruned) for name, pruned in masks.items()}  # [R]
for name, pruned in masks.items():
    print(f"{name:9s}: {pruned.mean():.3f} of weights pruned, mean |ε| = {np.abs(eps[name]).mean():.4g}")
print("masks agree on", f"{(masks['magnitude'] == masks['wanda']).mean():.1%}", "of the weights")

# %% [markdown]
# ### Exercise 1: compute ε from the tokens yourself
#
# Write a function (your own name, not the package's) that takes `X [S, L, C]`, `W [R, C]` and a
# mask and returns every row's ε *from the tokens*: the output error `e[s, t, r]` of every token
# (the pruned weights times the inputs), summed over each sequence's tokens, averaged over
# sequences. Then compare with the package's `row_errors(contributions(W, seq_sum), pruned)`.
# Our answer is below; replace it with yours and rerun the check.

# %%
def my_eps_from_tokens(X, W, pruned):
    """ε of every row, from the tokens: mean over sequences of Σ_t (removed weights · x_t). -> [R]"""
    removed = np.where(pruned, W, 0.0).astype(np.float64)                         # [R, C] the rows d_r
    e = X.astype(np.float64) @ removed.T                                          # [S, L, R]
    return e.sum(axis=1).mean(axis=0)


for name, pruned in masks.items():
    mine = my_eps_from_tokens(X, W, pruned)
    gap = np.abs(mine - eps[name]).max()
    assert np.allclose(mine, eps[name], rtol=1e-9, atol=1e-9 * np.abs(eps[name]).max()), gap
    print(f"{name:9s}: your ε agrees with the package's; largest difference {gap:.2g}")

# %% [markdown]
# ### One row, weight by weight
#
# The row with the largest Wanda |ε|. Left: every weight's contribution against its Wanda score;
# Wanda prunes by score, everything left of the dashed line (the row's cut), whatever the
# contribution, so the pruned contributions (red) need not cancel. Right: the pruned
# contributions added up in score order; the end point is ε. A mask that pruned as much positive
# as negative contribution would have ε = 0 with the same number of zeros: that freedom is what
# DSnoT uses.

# %%
row = int(np.argmax(np.abs(eps["wanda"])))
row_score = wanda_score(W, stats.seq_sq)[row]                                     # [C]
pruned_row = masks["wanda"][row]                                                  # [C]
row_cut = row_score[pruned_row].max()             # the largest pruned score: the row's cut
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for is_pruned, color, name in ((False, "tab:gray", "kept"), (True, "tab:red", "pruned")):
    sel = pruned_row == is_pruned
    axes[0].scatter(row_score[sel], contribution[row, sel], s=8, color=color, label=name)
axes[0].axvline(row_cut, color="k", ls="--", lw=0.8, label="this row's cut")
axes[0].set(xscale="log", yscale="symlog", xlabel="Wanda score of W[r, j]", ylabel="c[r, j] (symlog)",
            title=f"row {row}: contribution vs score")
axes[0].legend()
pruned_cols = np.nonzero(pruned_row)[0]
in_score_order = pruned_cols[np.argsort(row_score[pruned_cols], kind="stable")]
axes[1].plot(np.cumsum(contribution[row, in_score_order]), color="tab:red")
axes[1].axhline(0, color="k", lw=0.6)
axes[1].set(xlabel="pruned weights, by increasing score", ylabel="running sum of c[r, j]",
            title=f"ε[{row}] = {eps['wanda'][row]:.3g} is where the curve ends")
plt.tight_layout()
plt.show()

# %% [markdown]
# ## ε against the real output error on the calibration tokens
#
# The output error of row `r` at token `t` is `e[t, r] = d_r · x_t = Σ_{j pruned} W[r, j] x[t, j]`
# (dense minus sparse). Summed over a sequence and averaged over sequences it is exactly ε[r]
# (exercise 1): the left plot lies on the diagonal. But ε says nothing about how the error
# *varies* from token to token: the right plot compares `|ε| / L` (the mean error per token)
# with the root-mean-square error. Every point sits above the diagonal (RMS ≥ |mean|), often far
# above: a row can have ε ≈ 0 and still a large error on each token.

# %%
errors = {name: X_flat @ np.where(pruned, W, 0.0).T.astype(np.float64)           # [T, R] e[t, r]
          for name, pruned in masks.items()}
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for name in masks:
    err = errors[name]
    err_seq_sum = err.reshape(S, L, R).sum(axis=1).mean(axis=0)                   # [R]
    rms = np.sqrt((err ** 2).mean(axis=0))                                        # [R]
    axes[0].scatter(eps[name], err_seq_sum, s=6, alpha=0.6, label=name)
    axes[1].scatter(np.abs(eps[name]) / L, rms, s=6, alpha=0.6, label=name)
    corr = np.corrcoef(np.abs(eps[name]), rms)[0, 1]
    print(f"{name:9s}: max |ε − measured| = {np.abs(eps[name] - err_seq_sum).max():.2e}; "
          f"corr(|ε|, RMS error) = {corr:.2f}; median RMS / (|ε|/L) = {np.median(rms / (np.abs(eps[name]) / L)):.1f}")
lim = np.abs(axes[0].get_xlim()).max()
axes[0].plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
axes[0].set(title="ε vs measured mean output error (× L)", xlabel="ε[r]", ylabel="mean_s Σ_t e[s, t, r]")
axes[0].legend()
top = axes[1].get_xlim()[1]
axes[1].plot([0, top], [0, top], "k--", lw=0.8, label="RMS = |mean|")
axes[1].set(title="|ε| / L vs RMS output error per token", xlabel="|ε[r]| / L", ylabel="RMS_t e[t, r]")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# ## The mean part and the variance part of the error
#
# For one row, the squared output error over the `T = S·L` calibration tokens splits exactly
# into a part from the mean error `ē = ε / L` and a part from the spread around it:
#
#     Σ_t e_t²  =  T · ē²  +  Σ_t (e_t − ē)²          (mean part + variance part)
#
# DSnoT (reference and official variants) steers ε, so it acts on the **mean part** only.
# Driving every ε to exactly zero would remove the mean part and nothing else (and the swaps
# that do it also change the variance part, up or down). So the mean part's share of the error
# is the most ε-steering can gain. For one row it follows from the ratio printed above: the
# total is `T · RMS²`, so mean part / total = `(|ε|/L)² / RMS² = 1 / ratio²`. A ratio of 10
# means the mean part is 1% of that row's error; a ratio of 1.8, about 30%.
#
# The bars are summed over all rows of the layer and divided by the dense output energy
# `‖W X‖²`, so they add up to the relative reconstruction error of notebook 2 and 3.

# %%
dense_energy = (dense_out ** 2).sum()
parts = {}                                             # mask -> (mean part, variance part), relative
for name in masks:
    err = errors[name]                                                            # [T, R]
    mean_err = eps[name] / L                                                      # [R] ē per row
    mean_part = T * mean_err ** 2                                                 # [R]
    variance_part = ((err - mean_err) ** 2).sum(axis=0)                           # [R]
    total = (err ** 2).sum(axis=0)                                                # [R]
    assert np.allclose(mean_part + variance_part, total, rtol=1e-9)               # the identity
    parts[name] = (mean_part.sum() / dense_energy, variance_part.sum() / dense_energy)
    share = mean_part.sum() / total.sum()
    print(f"{name:9s}: error {total.sum() / dense_energy:.4f} of ‖WX‖² = mean part {parts[name][0]:.4f} "
          f"+ variance part {parts[name][1]:.4f}; perfect ε-steering removes at most {share:.1%}; "
          f"median over rows of the mean share {np.median(mean_part / total):.1%}")

fig, axes = plt.subplots(1, 2, figsize=(12, 3.4), gridspec_kw={"width_ratios": [1, 1.2]})
names = list(masks)
axes[0].bar(names, [parts[n][1] for n in names], color="tab:gray", label="variance part: DSnoT cannot reach it")
axes[0].bar(names, [parts[n][0] for n in names], bottom=[parts[n][1] for n in names], color="tab:orange",
            label="mean part: what ε-steering can remove")
for x, n in enumerate(names):
    axes[0].text(x, sum(parts[n]), f"mean part {parts[n][0] / sum(parts[n]):.0%}", ha="center", va="bottom")
axes[0].set(ylabel="‖(W − W⊙keep) X‖² / ‖W X‖²", title="the layer's error, split")
axes[0].set_ylim(0, 1.15 * max(sum(parts[n]) for n in names))
axes[0].legend(fontsize=8, loc="upper right")
for name in names:
    err = errors[name]
    share = T * (eps[name] / L) ** 2 / (err ** 2).sum(axis=0)                     # [R]
    axes[1].hist(share, bins=np.linspace(0, 1, 41), alpha=0.6, label=name)
axes[1].set(xlabel="mean part / total error of the row", ylabel="rows",
            title="per row: how much of the error is the mean part")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# **What this predicts.** On the demo model, Wanda's error is almost all variance part: its
# scores weigh each weight by its input's norm, so big inputs are rarely pruned, and what is
# pruned adds up to a small mean. DSnoT can only work on the sliver of mean part, so even if it
# zeroes every ε, the layer's error barely moves (notebook 2 measures it). A magnitude mask
# prunes small weights on big input channels, so its pruned contributions add up to a large
# mean error: a much larger share, which ε-steering can remove. That is where DSnoT helps: from
# starts whose error has a large mean part (magnitude, or higher sparsity), not from Wanda's.
# (The tiny test model has random weights and no outlier channels; its numbers differ.)

# %% [markdown]
# The layer's relative reconstruction error `‖(W ⊙ pruned) X‖² / ‖W X‖²` summarises the whole
# output error in one number. `reconstruction_error` computes it from the Gram matrix
# (`stats.hessian`) without touching the tokens again; the second column measures it directly
# on the tokens. Wanda, which weighs each weight by its input's norm, is usually the lower of
# the two.

# %%
for name, pruned in masks.items():
    print(f"{name:9s}: reconstruction_error = {reconstruction_error(W, pruned, stats.hessian):.4f}; "
          f"measured on the tokens = {(errors[name] ** 2).sum() / dense_energy:.4f}")

# %% [markdown]
# ## Distributions
#
# Left: weight magnitudes. Middle: input norms per column, on a log scale: on the demo model a
# few "outlier" channels carry far larger inputs than the rest (the reason Wanda multiplies by
# them). They also explain why magnitude's |ε| came out much larger than Wanda's there:
# magnitude happily prunes small weights on those channels, and a small weight times a large
# input is a large contribution. (The tiny test model has random weights and no outliers.) Right:
# Wanda scores, with Wanda's cut: in each row the weights left of that row's cut are pruned; the
# dashed line is the median of the rows' cuts.

# %%
act_norm = np.sqrt(stats.seq_sq)                                                  # [C]
wanda = wanda_score(W, stats.seq_sq)                                              # [R, C]
cut = np.median(np.sort(wanda, axis=1, kind="stable")[:, int(C * SPARSITY) - 1])
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
axes[0].hist(np.abs(W).ravel(), bins=80, color="tab:blue")
axes[0].set(title="|W|", xlabel="|W[r, j]|", ylabel="weights", yscale="log")
axes[1].hist(act_norm, bins=np.geomspace(act_norm[act_norm > 0].min(), act_norm.max(), 50), color="tab:green")
axes[1].set(title="input norm ‖x_j‖ per column", xlabel="sqrt(seq_sq[j])", xscale="log", ylabel="columns")
axes[2].hist(wanda.ravel(), bins=np.geomspace(wanda[wanda > 0].min(), wanda.max(), 80), color="tab:orange")
axes[2].axvline(cut, color="k", ls="--", label="median of the rows' cuts")
axes[2].set(title="Wanda score |W|·‖x_j‖", xscale="log", yscale="log", xlabel="score", ylabel="weights")
axes[2].legend()
plt.tight_layout()
plt.show()
print(f"largest / median input norm: {act_norm.max() / np.median(act_norm):.1f}")

# %% [markdown]
# ## Try this
#
# Change a setting in the set-up cell and rerun the notebook; then open the box to compare.
#
# - Raise `SPARSITY` to 0.7: ε grows, but does the mean part's share of the error grow with it?
#
#   <details><summary>What you should see</summary>
#
#   On the demo model (layer 2 `q_proj`, 32 × 256 tokens) the split barely changes its shape:
#   at 70% the magnitude mask's error is 60% mean part (56% at 50%), Wanda's 3.0% (2.3% at
#   50%); the median ratio RMS / (|ε|/L) is 1.6 and 8.2. The reference variant then lowers the
#   layer's error by 56% from magnitude and by 1.6% from Wanda (49% and 0.8% at 50%): what the
#   mean part allows.
#   </details>
#
# - Set `SUBLAYER = "mlp.down_proj"` (its inputs are the gated MLP activations) or
#   `"self_attn.o_proj"`: how do the outlier columns and the mean/variance split change?
#
#   <details><summary>What you should see</summary>
#
#   On the demo model (layer 2, 50%): `o_proj` (inputs are the attention outputs) has a
#   larger mean part under Wanda, 13% of its error (magnitude 36%), and there the reference
#   variant lowers Wanda's error by 11%. `mlp.down_proj` is the opposite: 1.0% for Wanda and
#   2.1% even for magnitude, so DSnoT can do almost nothing there (-0.4% and -1.0%). The
#   mean/variance split, not the method, decides how much a mask swap can gain.
#   </details>
#
# - Compute the mean share of one row from the two numbers of the ε-vs-RMS plot alone
#   (`(|ε|/L)² / RMS²`) and check it against the histogram.
#
#   <details><summary>What you should see</summary>
#
#   The same number: the mean part of a row is `T · (ε/L)²` and its total error `T · RMS²`.
#   A row at ratio RMS/(|ε|/L) = 10 has a mean share of 1%.
#   </details>
