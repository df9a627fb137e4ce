"""Hold dsnot_ref's official DSnoT variant against the released code (developer tool).

Needs torch, transformers and a copy of the released repository (zyxxmu/DSnoT, commit 4c029df)
given by ``--released DIR``; the package and its tests never import this file. The released
``lib/prune.py`` runs unmodified, on CPU, in float32; this tool only supplies what it cannot
reach here, by monkeypatching from outside:

- ``get_loaders`` returns our calibration token ids (an ``.npy`` [S, L] file) instead of C4;
  ``datasets`` is stubbed so that ``lib/data.py`` imports;
- the model is loaded in float32 with ``model.seqlen = L`` and an empty ``hf_device_map``;
- each decoder layer computes its rotary ``position_embeddings`` when the caller does not pass
  them (transformers >= 4.48 moved them out of the layer; the released loop calls
  ``layer(x, attention_mask=..., position_ids=...)``).

What the released run records (``capture``): for every sublayer its own statistics
(``scaler_row``, ``sum_metric_row``, ``var`` of ``WrappedGPT``), the initial and final masks
and, for the sublayers DSnoT adjusts, every cycle's pruned column q, grown column g,
``update_mask`` and ε before the cycle. They are read from the torch calls the loop makes
(``weight_mask.scatter_`` and ``abs(reconstruction_error)``), through a TorchFunctionMode.
The same sublayer inputs also go to dsnot_ref's float64 ``StatsAccumulator`` (``ours_*``) and
to the official variant's float32 running averages, ``released.averages.ReleasedAverages``
(``emulated_*``).

    # 0. a torch venv outside the repository, and the released code outside it too
    python3 -m venv ../venv-torch && ../venv-torch/bin/pip install torch transformers safetensors
    ../venv-torch/bin/pip install -e . --no-deps
    git clone https://github.com/zyxxmu/DSnoT ../released-dsnot    # commit 4c029df
    # 1. run the released code once and keep what it did (S = 8, L = 256: ~6 min on 2 busy cores)
    python tools/compare_released.py capture --released ../released-dsnot \
        --model ~/.cache/dsnot_ref/models/smollm2-135m --tokens calib.npy --out released.npz
    # 2. its statistics and initial masks into our official variant, sublayer by sublayer
    #    (--stats ours | emulated: our statistics of the same inputs instead)
    python tools/compare_released.py sublayers --model DIR --capture released.npz
    # 3. end to end: final masks of two captures, or of a capture and a pruned model directory
    python tools/compare_released.py end-to-end released.npz released-eager.npz|PRUNED_DIR
    # 4. statistics of the same inputs: released WrappedGPT, our official and float64 ones
    python tools/compare_released.py statistics --released ../released-dsnot --model DIR --tokens calib.npy
    # 5. rows of a capture whose Wanda threshold is a near-tie, per layer
    python tools/compare_released.py near-ties --model DIR --capture released.npz
    # 6. the dense forward pass: transformers eager and ours against sdpa, per layer
    python tools/compare_released.py forward --model DIR --tokens calib.npy

Shape letters: R output rows, C input columns, K cycles.
"""

from __future__ import annotations

import argparse
import re
import sys
import types
from pathlib import Path

import numpy as np

from dsnot_ref.stats import StatsAccumulator
from dsnot_ref.released.averages import ReleasedAverages

SUBLAYER = re.compile(r"pruning layer (\d+) name (\S+)")


# --------------------------------------------------------------------------- the released code

def import_released(released_dir: Path):
    """``lib.prune`` of the released repository, importable without ``datasets``."""
    stub = types.ModuleType("datasets")
    stub.load_dataset = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("no datasets here"))
    sys.modules.setdefault("datasets", stub)
    sys.path.insert(0, str(released_dir))
    import lib.prune as released  # noqa: PLC0415 - from the path given on the command line
    return released


def released_args(n_samples: int, sparsity: float, cycles: int):
    """The released main.py's defaults for ``--prune_method DSnoT --initial_method wanda``."""
    return argparse.Namespace(
        nsamples=n_samples, seed=0, sparsity_ratio=sparsity, sparsity_type="unstructured",
        initial_method="wanda", max_cycle_time=cycles, without_DSnoT=False, update_threshold=0.1,
        pow_of_var_regrowing=1.0, pow_of_var_pruning=1.0, skip_layer="mlp",
        skip_sub_layer="no_skip", without_same_sign=True, get_time_overhead=False)


def load_model(model_dir: Path, seqlen: int, attn: str):
    """The HF model in float32 on CPU, dressed as the released code expects it."""
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attn)
    model.eval()
    model.seqlen = seqlen
    model.hf_device_map = {}
    rotary = model.model.rotary_emb
    for layer in model.model.layers:
        layer.forward = with_position_embeddings(layer.forward, rotary)
    return model


def with_position_embeddings(forward, rotary):
    """A decoder layer's forward that computes (cos, sin) from position_ids when not given."""
    def call(hidden_states, *args, position_embeddings=None, position_ids=None, **kwargs):
        if position_embeddings is None:
            position_embeddings = rotary(hidden_states, position_ids=position_ids)
        return forward(hidden_states, *args, position_embeddings=position_embeddings,
                       position_ids=position_ids, **kwargs)
    return call


class ReleasedRecorder:
    """What the released ``prune_DSnoT`` does to each sublayer, read from its torch calls."""

    def __init__(self, torch, model):
        from torch.overrides import TorchFunctionMode  # noqa: PLC0415

        self.torch = torch
        self.names = {id(m): n for n, m in model.model.layers.named_modules()}
        self.wrappers = {}       # sublayer name -> WrappedGPT
        self.records = {}        # "model.layers.i.self_attn.q_proj" -> dict
        self.current = None
        recorder = self

        class Mode(TorchFunctionMode):
            def __torch_function__(self, func, types_, args=(), kwargs=None):
                out = func(*args, **(kwargs or {}))
                recorder.on_call(func, args, out)
                return out

        self.mode = Mode()

    def wrapper_class(self, base):
        recorder = self

        class Recording(base):
            """WrappedGPT that also feeds the same inputs to dsnot_ref's float64 accumulator,
            so that the two ways of computing the statistics can be compared on one input."""

            def __init__(self, layer, *args, **kwargs):
                super().__init__(layer, *args, **kwargs)
                recorder.wrappers[recorder.names[id(layer)]] = self
                self.ours = StatsAccumulator(self.columns)
                self.emulated = ReleasedAverages()

            def add_batch(self, inp, out):
                super().add_batch(inp, out)
                self.ours.update(inp.reshape(1, -1, self.columns).numpy())   # [1, L, C]
                self.emulated.update(inp.reshape(1, -1, self.columns).numpy())
        return Recording

    def on_print(self, *args, **kwargs):
        """The released code prints 'pruning layer i name n' before pruning a sublayer: the
        statistics are final and the weight is not yet pruned."""
        print(*args, **kwargs, file=sys.stderr)
        found = SUBLAYER.match(" ".join(str(a) for a in args))
        if not found:
            return
        layer, name = int(found.group(1)), found.group(2)
        wrapped = self.wrappers[f"{layer}.{name}"]
        self.current = {
            "scaler_row": wrapped.scaler_row.flatten().numpy().copy(),
            "sum_metric_row": wrapped.sum_metric_row.flatten().numpy().copy(),
            "var": wrapped.var.flatten().numpy().copy(),
            **our_statistics(wrapped.ours.finalize()),
            **{f"emulated_{k}": getattr(wrapped.emulated, k).copy() for k in ("scaler_row", "sum_metric_row", "var")},
            "mask_writes": [],   # (target tensor, index [R, 1], value [R, 1] or bool)
            "eps": [],           # [R] float32, ε before each cycle
        }
        self.records[f"model.layers.{layer}.{name}"] = self.current
        self.wrappers.pop(f"{layer}.{name}")

    def on_call(self, func, args, out):
        torch = self.torch
        if self.current is None:
            return
        if func is torch.Tensor.scatter_ and args[0].dtype == torch.bool and args[0].dim() == 2:
            value = args[3] if len(args) > 3 else None
            value = value.clone() if isinstance(value, torch.Tensor) else value
            self.current["mask_writes"].append((args[0], args[2].clone(), value))
        elif func is torch.Tensor.abs and out.dim() == 2 and out.shape[1] == 1:
            self.current["eps"].append(args[0][:, 0].clone())

    def result(self) -> dict:
        """Per sublayer: initial and final mask [R, C] bool, and for adjusted sublayers the
        per-cycle arrays q, g, active [K, R] and eps [K, R] (ε before each cycle)."""
        out = {}
        for name, rec in self.records.items():
            writes = rec["mask_writes"]
            target, index, _ = writes[0]      # weight_mask.scatter_(1, initial_prune_indices, True)
            initial = np.zeros(tuple(target.shape), dtype=np.bool_)
            np.put_along_axis(initial, index.numpy(), True, axis=1)
            item = {k: v for k, v in rec.items() if k not in ("mask_writes", "eps")}
            item["initial"] = initial
            item["final"] = target.numpy().copy()
            cycles = writes[1:]               # pairs: (pruning_indice, update_mask), (regrowing_indice, ~update_mask)
            if cycles:
                item["q"] = np.stack([w[1][:, 0].numpy() for w in cycles[0::2]])
                item["g"] = np.stack([w[1][:, 0].numpy() for w in cycles[1::2]])
                item["active"] = np.stack([w[2][:, 0].numpy() for w in cycles[0::2]])
                item["eps"] = np.stack([e.numpy() for e in rec["eps"]])
            out[name] = item
        return out


def our_statistics(stats) -> dict:
    """dsnot_ref's statistics (float64) under the released code's names, prefixed ``ours_``."""
    return {"ours_scaler_row": stats.seq_sq, "ours_sum_metric_row": stats.seq_sum,
            "ours_var": stats.var_within}


def run_released(released_dir: Path, model_dir: Path, tokens: np.ndarray, sparsity: float, attn: str,
                 cycles: int) -> dict:
    """The released ``prune_DSnoT`` on CPU over the given calibration tokens [S, L]."""
    import torch  # noqa: PLC0415

    released = import_released(released_dir)
    model = load_model(model_dir, tokens.shape[1], attn)
    recorder = ReleasedRecorder(torch, model)
    batches = [(torch.from_numpy(tokens[i:i + 1].astype(np.int64)), None) for i in range(len(tokens))]
    released.get_loaders = lambda *a, **k: (batches, None)
    released.WrappedGPT = recorder.wrapper_class(released.WrappedGPT)
    released.print = recorder.on_print
    args = released_args(len(tokens), sparsity, cycles)
    with torch.no_grad(), recorder.mode:
        released.prune_DSnoT(args, model, None, torch.device("cpu"))
    return recorder.result()


def save_capture(path: Path, capture: dict, meta: dict) -> None:
    """One .npz: '<sublayer>/<field>' arrays, masks bit-packed along C."""
    arrays = {f"meta/{k}": np.asarray(v) for k, v in meta.items()}
    for name, item in capture.items():
        for key, value in item.items():
            if key in ("initial", "final"):
                arrays[f"{name}/{key}_bits"] = np.packbits(value, axis=1)
                arrays[f"{name}/n_cols"] = np.asarray(value.shape[1])
            else:
                arrays[f"{name}/{key}"] = value
    np.savez_compressed(path, **arrays)


def load_capture(path: Path) -> dict:
    capture = {}
    with np.load(path) as f:
        for key in f.files:
            name, field = key.rsplit("/", 1)
            if name != "meta":
                capture.setdefault(name, {})[field] = f[key]
    for item in capture.values():
        n_cols = int(item.pop("n_cols"))
        for key in ("initial", "final"):
            item[key] = np.unpackbits(item.pop(f"{key}_bits"), axis=1, count=n_cols).astype(np.bool_)
    return capture


# --------------------------------------------------------------------------- our official variant

def our_official(weight, item: dict, sparsity: float, cycles: int, stats_from: str):
    """Our Wanda initial mask and our official variant on one sublayer.

    ``stats_from="released"``: the released code's statistics, and DSnoT starts from the
    released initial mask (identical inputs). ``"ours"``: dsnot_ref's statistics of the same
    inputs (float64, ``StatsAccumulator``), and DSnoT starts from our own initial mask.
    ``"emulated"``: as "ours" with the official variant's statistics (``ReleasedAverages``).
    -> (our initial mask [R, C], Refinement with trace, or None for a sublayer DSnoT skips).
    """
    from dsnot_ref.methods import DSnoTSettings, PruneSpec, prune_linear  # noqa: PLC0415
    from dsnot_ref.methods.refiners import dsnot  # noqa: PLC0415
    from dsnot_ref.stats import LinearStats  # noqa: PLC0415

    prefix = {"released": "", "ours": "ours_", "emulated": "emulated_"}[stats_from]
    seq_sum, seq_sq, var = (item[prefix + k] for k in ("sum_metric_row", "scaler_row", "var"))
    stats = LinearStats(n_seq=0, seq_len=0, seq_sum=seq_sum, seq_sq=seq_sq, var_pooled=var, var_within=var)
    settings = DSnoTSettings(variant="official", max_cycle_time=cycles, update_threshold=0.1,
                             pow_of_var_regrowing=1.0, without_same_sign=True)
    spec = PruneSpec(method="dsnot", sparsity=sparsity, initial_method="wanda", dsnot=settings)
    our_initial = prune_linear(weight, stats, spec, apply_refiner=False).pruned
    if "q" not in item:
        return our_initial, None
    pruned0 = item["initial"] if stats_from == "released" else our_initial
    return our_initial, dsnot(weight, pruned0, seq_sum, seq_sq, var, settings, trace=True)


def first_difference(item: dict, trace) -> tuple[np.ndarray, np.ndarray]:
    """Per row, the first cycle at which our loop and the released one do something different
    (a different active flag, or a different swap while both are active); -1 where none.

    -> (first cycle [R] int64, 1-based; the released ε before that cycle [R] float32).
    """
    released_active = item["active"]                        # [K, R]
    n_cycles, n_rows = released_active.shape
    ours_active = np.zeros((n_cycles, n_rows), dtype=np.bool_)
    ours_g = np.full((n_cycles, n_rows), -1, dtype=np.int64)
    ours_q = np.full((n_cycles, n_rows), -1, dtype=np.int64)
    k_ours = trace.active.shape[0] - 1
    ours_active[:min(k_ours, n_cycles)] = trace.active[1:n_cycles + 1]
    row, g, q, cycle = trace.swaps.T
    keep = cycle <= n_cycles
    ours_g[cycle[keep] - 1, row[keep]] = g[keep]
    ours_q[cycle[keep] - 1, row[keep]] = q[keep]
    differ = (ours_active != released_active) | (released_active & (
        (ours_g != item["g"]) | (ours_q != item["q"])))      # [K, R]
    first = np.where(differ.any(axis=0), differ.argmax(axis=0) + 1, -1)
    eps = item["eps"][np.maximum(first - 1, 0), np.arange(n_rows)]
    return first, eps


def max_relative_difference(a, b) -> float:
    """max_j |a_j − b_j| / |b_j| over the entries where b ≠ 0."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    nonzero = b != 0
    return float(np.max(np.abs(a - b)[nonzero] / np.abs(b[nonzero]))) if nonzero.any() else 0.0


def compare_sublayers(model_dir: Path, capture: dict, sparsity: float, cycles: int, stats_from: str) -> None:
    """Print, per sublayer, identical-row fractions of the initial and final masks, the first
    differing rows with the cycle where the loops part, and rows differing per layer."""
    from safetensors.numpy import load_file  # noqa: PLC0415

    weights = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        weights.update(load_file(f))
    prefix = {"released": "", "ours": "ours_", "emulated": "emulated_"}[stats_from]
    print(f"statistics: {stats_from}; ", end="")
    print("max relative difference to the released statistics in brackets (sum, sq, var)" if prefix else
          "DSnoT starts from the released initial masks")
    print(f"{'sublayer':<34} {'initial rows same':>18} {'final rows same':>16}  first difference")
    totals = {"adjusted": 0, "adjusted_same": 0, "rows": 0, "rows_differ": 0, "init_rows_differ": 0}
    by_layer = {}                                             # layer -> [rows, rows differing]
    for name, item in capture.items():
        weight = weights[f"{name}.weight"]                   # [R, C] float32, as stored
        our_initial, result = our_official(weight, item, sparsity, cycles, stats_from)
        init_differ = (our_initial != item["initial"]).any(axis=1)
        totals["init_rows_differ"] += int(init_differ.sum())
        line = f"{name:<34} {1 - init_differ.mean():>18.6f}"
        if result is None:
            print(line)
            continue
        final_differ = (result.pruned != item["final"]).any(axis=1)   # [R]
        totals["adjusted"] += 1
        totals["adjusted_same"] += int(not final_differ.any())
        totals["rows"] += final_differ.size
        totals["rows_differ"] += int(final_differ.sum())
        layer = by_layer.setdefault(int(name.split(".")[2]), [0, 0])
        layer[0] += final_differ.size
        layer[1] += int(final_differ.sum())
        line += f" {1 - final_differ.mean():>16.6f}"
        if prefix:
            line += " [" + ", ".join(f"{max_relative_difference(item[prefix + k], item[k]):.1e}"
                                     for k in ("sum_metric_row", "scaler_row", "var")) + "]"
        if final_differ.any():
            first, eps = first_difference(item, result.trace)
            rows = np.nonzero(final_differ)[0]
            line += "  " + ", ".join(f"row {r} cycle {first[r]} (released eps {eps[r]:.7g})" for r in rows[:3])
            if rows.size > 3:
                line += f" and {rows.size - 3} more"
        print(line)
    print("adjusted rows differing per layer: " + ", ".join(
        f"{i}: {d}/{n}" for i, (n, d) in sorted(by_layer.items())))
    print(f"adjusted sublayers with identical masks: {totals['adjusted_same']}/{totals['adjusted']}; "
          f"rows differing: {totals['rows_differ']} of {totals['rows']}; "
          f"rows whose Wanda initial mask differs (all sublayers): {totals['init_rows_differ']}")


# --------------------------------------------------------------------------- end to end

def final_masks(source: Path) -> dict:
    """Final masks by sublayer name: from a capture .npz, or weight == 0 of a pruned model."""
    if source.suffix == ".npz":
        return {f"{n}.weight": item["final"] for n, item in load_capture(source).items()}
    from dsnot_ref import save  # noqa: PLC0415

    masks, _ = save.model_masks(source)
    return masks


def compare_end_to_end(a: Path, b: Path) -> None:
    """Identical-entry and identical-row fractions per layer, then overall."""
    masks_a, masks_b = final_masks(a), final_masks(b)
    names = sorted(set(masks_a) & set(masks_b), key=lambda n: (int(n.split(".")[2]), n))
    if not names:
        raise SystemExit("the two sources have no sublayer in common")
    by_layer = {}
    for name in names:
        differ = masks_a[name] != masks_b[name]              # [R, C]
        layer = int(name.split(".")[2])
        entries, same, rows, rows_same = by_layer.get(layer, (0, 0, 0, 0))
        by_layer[layer] = (entries + differ.size, same + int((~differ).sum()),
                           rows + differ.shape[0], rows_same + int((~differ.any(axis=1)).sum()))
        if "self_attn" in name:
            print(f"{name:<34} rows same {1 - differ.any(axis=1).mean():.4f}")
    print(f"{'layer':>5} {'entries same':>13} {'rows same':>10}")
    for layer, (entries, same, rows, rows_same) in sorted(by_layer.items()):
        print(f"{layer:>5} {same / entries:>13.6f} {rows_same / rows:>10.4f}")
    entries = sum(v[0] for v in by_layer.values())
    same = sum(v[1] for v in by_layer.values())
    print(f"all {len(names)} sublayers: {same / entries:.6f} of entries identical")


# --------------------------------------------------------------------------- forward passes

def relative_difference(a, b) -> float:
    """‖a − b‖ / ‖b‖ over all entries, in float64."""
    a, b = np.asarray(a, dtype=np.float64), np.asarray(b, dtype=np.float64)
    return float(np.linalg.norm(a - b) / np.linalg.norm(b))


def compare_forward(model_dir: Path, tokens: np.ndarray) -> None:
    """Per decoder layer of the dense model: how far transformers' eager attention and our
    NumPy forward pass are from transformers' sdpa, both carried through all layers before
    (propagated) and from sdpa's own input of that layer (one layer), the latter also with our
    matrix products and/or our attention replaced by torch's. float32 throughout."""
    import torch  # noqa: PLC0415
    from transformers import AutoModelForCausalLM  # noqa: PLC0415

    from dsnot_ref import model as ours  # noqa: PLC0415
    from dsnot_ref import ops  # noqa: PLC0415

    hidden = {}
    for attn in ("sdpa", "eager"):
        hf = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32, attn_implementation=attn)
        with torch.no_grad():
            out = hf.model(torch.from_numpy(tokens.astype(np.int64)), output_hidden_states=True)
        hidden[attn] = [h.numpy() for h in out.hidden_states]    # L + 1 of [B, L, D]
    net = ours.load_model(model_dir)
    x = ours.embed(net, tokens)                                   # [B, L, D]
    sdpa = hidden["sdpa"]
    swaps = {"ours": (ops.linear, ops.causal_attention), "torch GEMM": (torch_linear, ops.causal_attention),
             "torch attn": (ops.linear, torch_attention), "both torch": (torch_linear, torch_attention)}
    print("one layer: from sdpa's input, ours and ours with torch's matrix products and/or attention")
    print(f"{'layer':>5} {'eager vs sdpa':>14} {'ours vs sdpa':>13} " + " ".join(f"{k:>11}" for k in swaps)
          + f" {'max |x|':>9}")
    for i in range(net.config.num_layers - 1):                   # the last entry is after the final norm
        layer = ours.load_layer(net, i)
        x = ours.block_forward(net.config, layer, x)
        one = []
        for linear, attention in swaps.values():
            ops.linear, ops.causal_attention = linear, attention
            try:
                one.append(relative_difference(ours.block_forward(net.config, layer, sdpa[i]), sdpa[i + 1]))
            finally:
                ops.linear, ops.causal_attention = swaps["ours"]
        print(f"{i:>5} {relative_difference(hidden['eager'][i + 1], sdpa[i + 1]):>14.2e} "
              f"{relative_difference(x, sdpa[i + 1]):>13.2e} " + " ".join(f"{v:>11.2e}" for v in one)
              + f" {np.abs(sdpa[i + 1]).max():>9.1f}")


def torch_linear(x, w, b=None):
    """ops.linear through torch's CPU kernels.   x [..., C], w [R, C] -> [..., R]"""
    import torch  # noqa: PLC0415

    bias = None if b is None else torch.from_numpy(b)
    return torch.nn.functional.linear(torch.from_numpy(np.ascontiguousarray(x)), torch.from_numpy(w), bias).numpy()


def torch_attention(q, k, v, window=None):
    """ops.causal_attention through torch's sdpa (no sliding window).   q [B, H, L, Dh], k/v [B, K, L, Dh]"""
    import torch  # noqa: PLC0415

    if window is not None:
        raise SystemExit("torch_attention: no sliding window")
    group = q.shape[1] // k.shape[1]
    k, v = (torch.from_numpy(a).repeat_interleave(group, dim=1) for a in (k, v))
    return torch.nn.functional.scaled_dot_product_attention(torch.from_numpy(q), k, v, is_causal=True).numpy()


def count_near_ties(model_dir: Path, capture: dict, sparsity: float) -> None:
    """Per decoder layer, rows whose Wanda pruning threshold is a near-tie: the k-th and
    (k+1)-th smallest float32 scores |W|·sqrt(scaler_row) (the capture's released statistics)
    within a relative gap g of each other."""
    from safetensors.numpy import load_file  # noqa: PLC0415

    weights = {}
    for f in sorted(Path(model_dir).glob("*.safetensors")):
        weights.update(load_file(f))
    gaps = (1e-7, 3e-7, 1e-6, 3e-6)
    by_layer = {}
    for name, item in capture.items():
        w = weights[f"{name}.weight"]                                 # [R, C]
        k = int(w.shape[1] * sparsity)
        score = np.abs(w) * np.sqrt(item["scaler_row"].astype(np.float32))[None]
        part = np.partition(score, (k - 1, k), axis=1)                # [R, C]
        rel = (part[:, k].astype(np.float64) - part[:, k - 1]) / part[:, k]   # [R]
        counts = by_layer.setdefault(int(name.split(".")[2]), np.zeros(len(gaps) + 1, dtype=np.int64))
        counts[:-1] += [int((rel <= g).sum()) for g in gaps]
        counts[-1] += w.shape[0]
    print("layer  rows with a Wanda threshold gap <= " + ", ".join(f"{g:.0e}" for g in gaps) + "  (rows)")
    for layer, counts in sorted(by_layer.items()):
        print(f"{layer:>5}  " + "  ".join(f"{v:>6}" for v in counts[:-1]) + f"  ({counts[-1]})")
    total = sum(by_layer.values())
    print("  all  " + "  ".join(f"{v:>6}" for v in total[:-1]) + f"  ({total[-1]})")


# --------------------------------------------------------------------------- statistics

def compare_statistics(released_dir: Path, model_dir: Path, tokens: np.ndarray) -> None:
    """Every linear sublayer's inputs of the dense model (transformers, sdpa), one sequence at
    a time as the released loop feeds them, into the released ``WrappedGPT``, the official
    variant's ``ReleasedAverages`` and the float64 ``StatsAccumulator``: the fraction of entries
    of each statistic equal bit for bit to the released one, over all sublayers."""
    import torch  # noqa: PLC0415

    released = import_released(released_dir)
    model = load_model(model_dir, tokens.shape[1], "sdpa")
    linears = {n: m for n, m in model.model.layers.named_modules() if isinstance(m, torch.nn.Linear)}
    keep = {n: (released.WrappedGPT(m), ReleasedAverages(), StatsAccumulator(m.in_features))
            for n, m in linears.items()}

    def hook(name):
        def record(module, inputs):
            x = inputs[0].detach()                                    # [1, L, C]
            wrapped, official, ours = keep[name]
            wrapped.add_batch(x[0], None)
            official.update(x.numpy())
            ours.update(x.numpy())
        return record

    handles = [m.register_forward_pre_hook(hook(n)) for n, m in linears.items()]
    with torch.no_grad():
        for row in tokens:
            model(torch.from_numpy(row[None].astype(np.int64)))
    for h in handles:
        h.remove()
    fields = {"sum_metric_row": "seq_sum", "scaler_row": "seq_sq", "var": "var_within"}
    print(f"{len(keep)} sublayers, {tokens.shape[0]} x {tokens.shape[1]} tokens: "
          "entries equal to the released statistic bit for bit (max relative difference)")
    for field, ours_name in fields.items():
        same_official = same_ours = total = 0
        worst_official = worst_ours = 0.0
        for wrapped, official, ours in keep.values():
            ref = getattr(wrapped, field).flatten().numpy()
            mine = getattr(official, field)
            ours64 = getattr(ours.finalize(), ours_name)
            same_official += int((mine == ref).sum())
            same_ours += int((ours64.astype(np.float32) == ref).sum())
            total += ref.size
            worst_official = max(worst_official, max_relative_difference(mine, ref))
            worst_ours = max(worst_ours, max_relative_difference(ours64, ref))
        print(f"  {field:<15} official (float32, released order) {same_official / total:.6f} "
              f"({worst_official:.1e}); float64 two-pass, rounded {same_ours / total:.6f} ({worst_ours:.1e})")


# --------------------------------------------------------------------------- command line

def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = p.add_subparsers(dest="command", required=True)
    cap = sub.add_parser("capture", help="run the released prune_DSnoT and save what it did")
    cap.add_argument("--released", type=Path, required=True, help="copy of zyxxmu/DSnoT")
    cap.add_argument("--model", type=Path, required=True, help="HF model directory")
    cap.add_argument("--tokens", type=Path, required=True, help="calibration token ids .npy [S, L]")
    cap.add_argument("--sparsity", type=float, default=0.6)
    cap.add_argument("--attn", default="sdpa", choices=["sdpa", "eager"])
    cap.add_argument("--max-cycle-time", type=int, default=50)
    cap.add_argument("--out", type=Path, required=True, help="capture file (.npz)")
    cap.add_argument("--threads", type=int, default=None, help="torch CPU threads (default torch's)")
    cmp_ = sub.add_parser("sublayers", help="our official variant on a capture's inputs")
    cmp_.add_argument("--model", type=Path, required=True)
    cmp_.add_argument("--capture", type=Path, required=True)
    cmp_.add_argument("--sparsity", type=float, default=0.6)
    cmp_.add_argument("--max-cycle-time", type=int, default=50)
    cmp_.add_argument("--stats", default="released", choices=["released", "ours", "emulated"],
                      help="released: the released statistics and initial masks (identical inputs); "
                           "ours: dsnot_ref's float64 statistics of the same inputs, and our initial "
                           "masks; emulated: the official variant's statistics of the same inputs "
                           "(dsnot_ref.released.averages: the released float32 running averages), and "
                           "our initial masks")
    e2e = sub.add_parser("end-to-end", help="final masks of two captures or pruned models")
    e2e.add_argument("a", type=Path, help="capture .npz or pruned model directory")
    e2e.add_argument("b", type=Path, help="capture .npz or pruned model directory")
    sts = sub.add_parser("statistics", help="released, official and float64 statistics of the dense model's inputs")
    sts.add_argument("--released", type=Path, required=True, help="copy of zyxxmu/DSnoT")
    sts.add_argument("--model", type=Path, required=True)
    sts.add_argument("--tokens", type=Path, required=True)
    ties = sub.add_parser("near-ties", help="rows whose Wanda threshold is a near-tie, per layer")
    ties.add_argument("--model", type=Path, required=True)
    ties.add_argument("--capture", type=Path, required=True)
    ties.add_argument("--sparsity", type=float, default=0.6)
    fwd = sub.add_parser("forward", help="dense forward pass: eager and ours against sdpa, per layer")
    fwd.add_argument("--model", type=Path, required=True)
    fwd.add_argument("--tokens", type=Path, required=True)
    fwd.add_argument("--sequences", type=int, default=4, help="first N sequences of the tokens file")
    args = p.parse_args(argv)
    if args.command == "capture":
        tokens = np.load(args.tokens)
        if args.threads:
            import torch  # noqa: PLC0415
            torch.set_num_threads(args.threads)
        capture = run_released(args.released, args.model, tokens, args.sparsity, args.attn,
                               args.max_cycle_time)
        save_capture(args.out, capture, {"attn": args.attn, "sparsity": args.sparsity,
                                         "max_cycle_time": args.max_cycle_time,
                                         "tokens": str(args.tokens)})
        print(f"{len(capture)} sublayers captured -> {args.out}")
    elif args.command == "sublayers":
        compare_sublayers(args.model, load_capture(args.capture), args.sparsity, args.max_cycle_time, args.stats)
    elif args.command == "statistics":
        compare_statistics(args.released, args.model, np.load(args.tokens))
    elif args.command == "near-ties":
        count_near_ties(args.model, load_capture(args.capture), args.sparsity)
    elif args.command == "forward":
        compare_forward(args.model, np.load(args.tokens)[:args.sequences])
    else:
        compare_end_to_end(args.a, args.b)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
