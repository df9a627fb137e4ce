"""`dsnot-ref report`: the per-layer table and the optional figure."""

from __future__ import annotations

import json
import sys

import pytest

from dsnot_ref import report
from dsnot_ref.cli import main
from dsnot_ref.errors import UserError

RESULTS = {
    "settings": {"model": "m", "prune_method": "dsnot", "initial_method": "wanda", "dsnot_variant": "reference",
                 "sparsity_ratio": 0.6, "sparsity_type": "unstructured"},
    "layers": [
        {"name": "0.self_attn.q_proj", "sparsity": 0.6, "eps_before": 2.5, "eps_after": 0.125, "swaps": 41,
         "recon_before": 0.25, "recon_after": 0.2, "dsnot": True},
        {"name": "0.mlp.down_proj", "sparsity": 0.6, "eps_before": 1.5, "eps_after": 1.5, "swaps": 0,
         "recon_before": 0.03, "recon_after": 0.03, "dsnot": False},
        {"name": "1.self_attn.q_proj", "sparsity": 0.59375, "swaps": 0},  # e.g. SparseGPT: no eps
    ],
    "sparsity": {"requested": 0.6, "overall": 0.599, "per_layer": {"a": 0.6, "b": 0.59375}},
    "perplexity": {"pruned": {"perplexity": 12.3456, "n_windows": 3, "n_tokens": 96, "seqlen": 32}},
    "times": {"prune": 1.25, "total": 2.5},
}


def test_layer_table_rows_and_values():
    lines = report.layer_table(RESULTS).splitlines()
    assert len(lines) == 2 + 3  # header, rule, one line per sublayer
    q = lines[2].split()
    assert q == ["0.self_attn.q_proj", "0.6000", "2.5", "0.125", "41", "0.25", "0.2"]
    assert lines[4].split() == ["1.self_attn.q_proj", "0.5938", "-", "-", "0", "-", "-"]
    widths = {len(line) for line in lines[:2]}
    assert len(widths) == 1  # header and rule aligned


def test_summary_lines():
    text = "\n".join(report.summary_lines(RESULTS))
    assert "wanda + DSnoT (reference) at sparsity 0.6" in text
    assert "perplexity (pruned): 12.3456 on 3 windows of 32 tokens" in text
    assert "per layer min 0.5938, max 0.6000, 2 layers" in text
    # the diagnostic is an observer: the report says what the results hold of it
    assert "reconstruction errors: 2 of 3 sublayers, estimated from every calibration token" in text
    sampled = {**RESULTS, "settings": {**RESULTS["settings"], "recon_error_tokens": 2048}}
    assert "a sample of up to 2048 calibration tokens" in "\n".join(report.summary_lines(sampled))
    off = {**RESULTS, "layers": [{k: v for k, v in row.items() if not k.startswith("recon")} for row in RESULTS["layers"]]}
    assert "reconstruction errors: not gathered" in "\n".join(report.summary_lines(off))


def test_report_cli(tmp_path, capsys):
    path = tmp_path / "r.json"
    path.write_text(json.dumps(RESULTS))
    assert main(["report", str(path)]) == 0
    out = capsys.readouterr().out
    assert "0.mlp.down_proj" in out and "12.3456" in out


def test_plot_written(tmp_path, capsys):
    pytest.importorskip("matplotlib")
    import matplotlib.image

    path = tmp_path / "r.json"
    path.write_text(json.dumps(RESULTS))
    png = tmp_path / "fig.png"
    assert main(["report", str(path), "--plot", str(png)]) == 0
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    height, width, _ = matplotlib.image.imread(png).shape
    assert height > 100 and width > 100
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []  # no temp left


def test_plot_without_matplotlib(tmp_path, capsys, monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib -> ImportError
    with pytest.raises(UserError, match="needs matplotlib"):
        report.plot_layers(RESULTS, tmp_path / "fig.png")
    path = tmp_path / "r.json"
    path.write_text(json.dumps(RESULTS))
    assert main(["report", str(path), "--plot", str(tmp_path / "fig.png")]) == 2
    out, err = capsys.readouterr()
    assert "needs matplotlib" in err and out == ""
    assert not (tmp_path / "fig.png").exists()


def test_not_a_results_file(tmp_path, capsys):
    path = tmp_path / "x.json"
    path.write_text("[1, 2]")
    assert main(["report", str(path)]) == 2
    assert "not a dsnot-ref results file" in capsys.readouterr().err
