"""One answer to each exercise of the teaching notebooks.

The notebooks leave each exercise as a stub for the reader. ``nbutil.exercise`` runs the
exercise's check on the reader's function, and, when the stub is still unwritten and
DSNOT_REF_NOTEBOOK_ANSWERS=1 (the rendered copies and the tests), on the function of the same
name here. Read these after writing your own.
"""

from __future__ import annotations

import numpy as np

# --- notebook 1 ---------------------------------------------------------------------------------


def my_error_split(X, d):
    """(mean part, variance part) of one row's squared error: X [T, C], d [C] -> (float, float)."""
    e = X.astype(np.float64) @ np.asarray(d, dtype=np.float64)                  # [T] error per token
    mean = e.mean()
    return e.size * mean ** 2, float(((e - mean) ** 2).sum())


def my_eps_from_tokens(X3, W, pruned):
    """ε of every row from the tokens: X3 [S, L, C], W [R, C], pruned [R, C] -> [R]."""
    removed = np.where(pruned, W, 0.0).astype(np.float64)                       # [R, C] the rows d_r
    e = X3.astype(np.float64) @ removed.T                                       # [S, L, R]
    return e.sum(axis=1).mean(axis=0)                                           # Σ over L, mean over S


def my_wanda_from_gram(W, G, S):
    """Wanda's score from the Gram matrix: W [R, C], G [C, C], S sequences -> [R, C]."""
    return np.abs(W) * np.sqrt(np.diag(G) / S)[None, :]


# --- notebook 2 ---------------------------------------------------------------------------------


def my_swap_decision(eps, c_grown, c_pruned, tau):
    """(ε_after, accepted?) of one reference-variant swap in one row."""
    eps_after = eps + c_pruned - c_grown
    return eps_after, bool(abs(eps) > tau and eps_after * eps >= 0)


def my_dsnot_row(c_r, metric_r, wanda_r, pruned0_r, tau, max_cycles):
    """Reference DSnoT on one row: c_r, metric_r, wanda_r [C] float, pruned0_r [C] bool -> [C] bool."""
    eps = np.where(pruned0_r, c_r, 0.0).sum()                                   # ε of the initial mask
    s = np.sign(eps)
    grow = np.nonzero(pruned0_r & (s * c_r > 0))[0]                             # pruned, sign of ε
    grow = grow[np.argsort(-s * metric_r[grow], kind="stable")]                 # best c / var^γ first
    prune = np.nonzero(~pruned0_r & (s * c_r < 0))[0]                           # kept, opposite sign
    prune = prune[np.argsort(wanda_r[prune], kind="stable")]                    # smallest score first
    pruned = pruned0_r.copy()
    for g, q in list(zip(grow, prune))[:max_cycles]:
        eps_after = eps + c_r[q] - c_r[g]
        if not (abs(eps) > tau and eps_after * eps >= 0):
            break
        pruned[g], pruned[q], eps = False, True, eps_after
    return pruned


def my_delta_E(w, pruned, G, i, j):
    """Change of E_r = dᵀGd when pruned column i is regrown and kept column j pruned (w, pruned [C])."""
    u = G @ np.where(pruned, w, 0.0)                                            # [C] u = G d
    return (w[i] ** 2 * G[i, i] - 2 * w[i] * u[i]) + (w[j] ** 2 * G[j, j] + 2 * w[j] * u[j]) \
        - 2 * w[i] * w[j] * G[i, j]


# --- notebook 3 ---------------------------------------------------------------------------------


def my_perplexity(losses):
    """Perplexity from per-window mean next-token losses [W] (every window has L − 1 predictions)."""
    return float(np.exp(np.mean(losses)))


def my_paired_change(loss_a, loss_b):
    """(change %, low %, high %) of model b against model a from per-window losses [W] each."""
    diff = np.asarray(loss_b) - np.asarray(loss_a)                              # [W], same windows
    se = diff.std(ddof=1) / np.sqrt(diff.size)
    return tuple(100 * (np.exp(diff.mean() + k * se) - 1) for k in (0, -2, 2))


def my_layer_error(W, W_sparse, X):
    """‖(W − Ŵ) Xᵀ‖² / ‖W Xᵀ‖² on tokens X [T, C]; W, W_sparse [R, C]."""
    X = np.asarray(X, dtype=np.float64)
    removed = X @ (np.asarray(W, np.float64) - W_sparse).T                      # [T, R]
    return float((removed ** 2).sum() / ((X @ np.asarray(W, np.float64).T) ** 2).sum())
