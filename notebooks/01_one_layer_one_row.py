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
# # 1 · One layer, one row: the quantity DSnoT steers
#
# DSnoT changes *which* weights of a pruned layer are zero so that the layer's **expected
# output** moves back toward the dense layer's. This notebook puts every quantity of that
# sentence on real numbers for one linear layer:
#
# 1. the layer's calibration inputs `X` (we run the first decoder layers on a few windows of
#    text and capture what enters the layer),
# 2. the contribution of each weight to the expected output, `c[r, j] = W[r, j] · seq_sum[j]`,
# 3. the per-row error `ε[r] = Σ_{j pruned} c[r, j]` of a magnitude mask and a Wanda mask,
# 4. how ε relates to the real output error on the calibration tokens.
#
# Everything below is `dsnot_ref` code; this notebook only calls it and plots
# (`nbutil` picks the model and the size, see `notebooks/README.md`).

# %%
import inspect

import matplotlib.pyplot as plt
import numpy as np

import nbutil
from dsnot_ref import data
from dsnot_ref.methods import reconstruction_error
from dsnot_ref.methods.dsnot import contributions, row_errors
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

acc = StatsAccumulator(C, with_hessian=True)   # the Hessian is only for the reconstruction error
acc.update(X)
stats = acc.finalize()
print(f"layer {LAYER} {SUBLAYER}: W is [R={R}, C={C}]; X is [S={S}, L={L}, C={C}]")
print("first window:", repr(tokenizer.decode(tokens[0].tolist())[:160]))

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
dense_out = X.reshape(S * L, C).astype(np.float64) @ W.T.astype(np.float64)      # [T, R]
expected_row_output = dense_out.reshape(S, L, R).sum(axis=1).mean(axis=0)        # [R]
print("max |Σ_j c[r, j] − mean_s Σ_t y[s, t, r]| =",
      np.abs(contribution.sum(axis=1) - expected_row_output).max())
print("typical |expected output| per row:", np.median(np.abs(expected_row_output)))

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
# ### One row, weight by weight
#
# The row with the largest Wanda |ε|. Left: every weight's contribution against its Wanda score;
# Wanda prunes by score (left of the row's cut), whatever the contribution, so the pruned
# contributions (red) need not cancel. Right: the pruned contributions added up in score order;
# the end point is ε. A mask that pruned as much positive as negative contribution would have
# ε = 0 with the same number of zeros: that freedom is what DSnoT uses.

# %%
row = int(np.argmax(np.abs(eps["wanda"])))
row_score = wanda_score(W, stats.seq_sq)[row]                                     # [C]
pruned_row = masks["wanda"][row]                                                  # [C]
fig, axes = plt.subplots(1, 2, figsize=(12, 3.8))
for is_pruned, color, name in ((False, "tab:gray", "kept"), (True, "tab:red", "pruned")):
    sel = pruned_row == is_pruned
    axes[0].scatter(row_score[sel], contribution[row, sel], s=8, color=color, label=name)
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
# The output error of row `r` at token `t` is `e[t, r] = Σ_{j pruned} W[r, j] x[t, j]` (dense
# minus sparse). Summed over a sequence and averaged over sequences it is exactly ε[r]: the left
# plot lies on the diagonal. But ε says nothing about how the error *varies* from token to token:
# the right plot compares `|ε| / L` (the mean error per token) with the root-mean-square error.
# Every point sits above the diagonal (RMS ≥ |mean|), often far above: a row can have ε ≈ 0 and
# still a large error on each token. DSnoT steers this first-moment surrogate, not the error
# itself.

# %%
fig, axes = plt.subplots(1, 2, figsize=(11, 4.2))
for name, pruned in masks.items():
    err = X.reshape(S * L, C).astype(np.float64) @ np.where(pruned, W, 0.0).T.astype(np.float64)  # [T, R]
    err_seq_sum = err.reshape(S, L, R).sum(axis=1).mean(axis=0)                                   # [R]
    rms = np.sqrt((err ** 2).mean(axis=0))                                                        # [R]
    axes[0].scatter(eps[name], err_seq_sum, s=6, alpha=0.6, label=name)
    axes[1].scatter(np.abs(eps[name]) / L, rms, s=6, alpha=0.6, label=name)
    corr = np.corrcoef(np.abs(eps[name]), rms)[0, 1]
    print(f"{name:9s}: max |ε − measured| = {np.abs(eps[name] - err_seq_sum).max():.2e}; "
          f"corr(|ε|, RMS error) = {corr:.2f}; median RMS / (|ε|/L) = {np.median(rms / (np.abs(eps[name]) / L)):.1f}")
lim = np.abs(axes[0].get_xlim()).max()
axes[0].plot([-lim, lim], [-lim, lim], "k--", lw=0.8)
axes[0].set(title="ε vs measured mean output error (× L)", xlabel="ε[r]", ylabel="mean_s Σ_t e[s, t, r]")
top = axes[1].get_xlim()[1]
axes[1].plot([0, top], [0, top], "k--", lw=0.8, label="RMS = |mean|")
axes[1].set(title="|ε| / L vs RMS output error per token", xlabel="|ε[r]| / L", ylabel="RMS_t e[t, r]")
axes[1].legend()
plt.tight_layout()
plt.show()

# %% [markdown]
# The layer's relative reconstruction error `‖(W ⊙ pruned) X‖² / ‖W X‖²` summarises the whole
# output error in one number. `reconstruction_error` computes it from the Hessian
# `H = (2/S) Σ_s X_sᵀ X_s` without touching the tokens again; the second column measures it
# directly on the tokens. Wanda, which weighs each weight by its input's norm, is usually the
# lower of the two.

# %%
dense_energy = (dense_out ** 2).sum()
for name, pruned in masks.items():
    err = X.reshape(S * L, C).astype(np.float64) @ np.where(pruned, W, 0.0).T.astype(np.float64)  # [T, R]
    print(f"{name:9s}: reconstruction_error = {reconstruction_error(W, pruned, stats.hessian):.4f}; "
          f"measured on the tokens = {(err ** 2).sum() / dense_energy:.4f}")

# %% [markdown]
# ## Distributions
#
# Left: weight magnitudes. Middle: input norms per column, on a log scale: on the demo model a
# few "outlier" channels carry far larger inputs than the rest (the reason Wanda multiplies by
# them). They also explain why magnitude's |ε| came out much larger than Wanda's there:
# magnitude happily prunes small weights on those channels, and a small weight times a large
# input is a large contribution. (The tiny test model has random weights and no outliers.) Right:
# Wanda scores, with each mask's cut: weights left of the line in a row are pruned (the cut is
# per row; the line is the median over rows).

# %%
act_norm = np.sqrt(stats.seq_sq)                                                  # [C]
wanda = wanda_score(W, stats.seq_sq)                                              # [R, C]
cut = np.median(np.sort(wanda, axis=1, kind="stable")[:, int(C * SPARSITY) - 1])
fig, axes = plt.subplots(1, 3, figsize=(13, 3.5))
axes[0].hist(np.abs(W).ravel(), bins=80, color="tab:blue")
axes[0].set(title="|W|", xlabel="|W[r, j]|", ylabel="count", yscale="log")
axes[1].hist(act_norm, bins=np.geomspace(act_norm[act_norm > 0].min(), act_norm.max(), 50), color="tab:green")
axes[1].set(title="input norm ‖x_j‖ per column", xlabel="sqrt(seq_sq[j])", xscale="log", ylabel="columns")
axes[2].hist(wanda.ravel(), bins=np.geomspace(wanda[wanda > 0].min(), wanda.max(), 80), color="tab:orange")
axes[2].axvline(cut, color="k", ls="--", label="median per-row cut")
axes[2].set(title="Wanda score |W|·‖x_j‖", xscale="log", yscale="log", xlabel="score")
axes[2].legend()
plt.tight_layout()
plt.show()
print(f"largest / median input norm: {act_norm.max() / np.median(act_norm):.1f}")

# %% [markdown]
# ## Try this
#
# - Set `SUBLAYER = "mlp.down_proj"` (its inputs are the gated MLP activations) or
#   `"self_attn.o_proj"` and rerun: how do the outlier columns and the ε-vs-RMS picture change?
# - Raise `SPARSITY` to 0.7: ε grows, but does the ratio of RMS error to |ε|/L stay the same?
