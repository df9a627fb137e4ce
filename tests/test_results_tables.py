"""The published results tables equal what benchmarks/make_results.py writes from the committed raw files."""

import importlib.util
import json
import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def load_make_results():
    spec = importlib.util.spec_from_file_location("make_results", ROOT / "benchmarks" / "make_results.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


make_results = load_make_results()
DOCUMENTS = make_results.documents(ROOT)


@pytest.mark.parametrize("path", DOCUMENTS, ids=[str(p.relative_to(ROOT)) for p in DOCUMENTS])
def test_committed_tables_equal_what_the_raw_files_give(path):
    text = path.read_text(encoding="utf-8")
    assert make_results.render(text, make_results.RESULTS, path.name) == text, (
        f"{path.relative_to(ROOT)}: a results table differs from benchmarks/results/; run `make results`")


def test_every_table_is_published_and_every_marker_names_a_table():
    used = [name for path in DOCUMENTS for name in make_results.tables_in(path.read_text(encoding="utf-8"))]
    assert set(used) == set(make_results.TABLES)


def test_the_readme_holds_the_demo_table():
    assert make_results.tables_in((ROOT / "README.md").read_text(encoding="utf-8")) == ["demo"]


def test_every_raw_file_names_machine_date_commit_and_command():
    assert make_results.missing_provenance(make_results.RESULTS) == []


def test_a_changed_raw_file_makes_the_committed_table_stale(tmp_path):
    """The check can fail: the README's table no longer matches once the demo's raw perplexity moves."""
    results = tmp_path / "results"
    shutil.copytree(make_results.RESULTS, results)
    raw = json.loads((results / "demo.json").read_text(encoding="utf-8"))
    raw["demo"][1]["perplexity"] += 1.0
    (results / "demo.json").write_text(json.dumps(raw), encoding="utf-8")
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    rendered = make_results.render(readme, results, "README.md")
    assert rendered != readme
    assert f"{raw['demo'][1]['perplexity']:.3f}" in rendered


def test_a_hand_edit_between_markers_is_undone():
    text = "<!-- results:demo -->\n| edited | by hand |\n<!-- /results:demo -->\n"
    rendered = make_results.render(text, make_results.RESULTS, "x.md")
    assert "edited" not in rendered and "Wanda + SparseSwaps" in rendered


def test_an_unknown_table_name_is_refused():
    with pytest.raises(SystemExit, match="unknown table 'nope'"):
        make_results.render("<!-- results:nope -->\n<!-- /results:nope -->\n", make_results.RESULTS, "x.md")


def test_a_raw_file_without_provenance_is_reported(tmp_path):
    (tmp_path / "bare.json").write_text(json.dumps({"provenance": {"machine": "m", "date": "d"}}))
    (tmp_path / "bare.txt").write_text("# machine: m\n# date: d\n# commit: c\n")
    assert make_results.missing_provenance(tmp_path) == ["bare.json: no commit, command", "bare.txt: no command"]


def load_provenance():
    spec = importlib.util.spec_from_file_location("provenance", ROOT / "benchmarks" / "provenance.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_stamp_names_all_four_and_goes_first_replacing_an_old_one():
    provenance = load_provenance()
    stamp = provenance.provenance(["dsnot-ref", "prune", "--model", "my model"])
    assert all(stamp[key] for key in make_results.PROVENANCE)
    assert stamp["command"] == "dsnot-ref prune --model 'my model'"
    record = provenance.stamped({"layers": [], "provenance": {"old": 1}}, stamp)
    assert list(record) == ["provenance", "layers"] and record["provenance"] == stamp


def test_what_the_demo_writes_is_what_the_readme_table_reads(tmp_path, capsys):
    """A fresh `dsnot-ref demo --results` file, stamped, renders as the README's table."""
    from dsnot_ref.cli import main

    results = tmp_path / "results"
    results.mkdir()
    out = results / "demo.json"
    assert main(["demo", "--model", str(ROOT / "data" / "fixtures" / "tiny-llama"), "--nsamples", "2",
                 "--seqlen", "32", "--eval-max-windows", "2", "--results", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    record = json.loads(out.read_text(encoding="utf-8"))
    stamp = load_provenance().provenance(["dsnot-ref", "demo", "--results", str(out)])
    out.write_text(json.dumps(load_provenance().stamped(record, stamp)), encoding="utf-8")
    table = make_results.demo(results)
    for row in record["demo"]:
        assert f"{row['perplexity']:.3f}" in table and f"{row['perplexity']:.3f}" in printed
    assert "60% unstructured, S = 2 calibration sequences of L = 32 tokens" in table
    assert make_results.missing_provenance(results) == []
