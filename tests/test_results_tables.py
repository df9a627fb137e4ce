"""The published results tables equal what benchmarks/make_results.py writes from the committed raw files."""

import importlib.util
import json
import re
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


# --- no measured number is hand-written in the prose of a results page -------------------------

PROSE_PAGES = ("README.md", "benchmarks/README.md", "docs/agreement.md", "docs/results.md", "docs/speed.md",
               "docs/swaps_results.md", "docs/testing.md", "docs/weight_update.md")
NUMBER = r"(?<![\w.√§-])\d[\d,]*(?:\.\d+)?"
MEASUREMENT = re.compile("|".join((
    NUMBER + r"\s?(?:s|ms|µs|ns|min|h|seconds?|minutes?|hours?)\b",  # a duration: 12.3 s, 2 min
    NUMBER + r"[×x](?!\w)",  # a ratio written 0.82×
    NUMBER + r"(?:-\d+(?:\.\d+)?)?\s+times\b",  # a ratio written 1.6 times, 2.3-4.9 times
    NUMBER + r"\s?(?:MiB|GiB|KiB|MB|GB|kB)\b",  # a memory size
    r"(?<![\w.§-])\d+\.\d+(?:e-\d+)?(?![\w.])",  # a decimal: a perplexity, 47.9%, 0.4700, 1.2e-6
)))
# Numbers in the prose of those pages that look like measurements and are not: (page, phrase, why).
NOT_MEASURED = (
    ("README.md", "`python3` (3.10+)", "the Python version required"),
    ("benchmarks/README.md", "on a 10 MB text", "the size of the text the benchmark builds, a setting"),
    ("docs/results.md", "threshold 0.1", "DSnoT's update threshold, a setting"),
    ("docs/results.md", "λ = 0.08", "OWL's λ, a setting"),
    ("docs/results.md", "Wanda 85.8 → 24.6", "the OWL paper's LLaMA-7B figures, quoted from the paper"),
    ("docs/results.md", "a model 50 times larger", "7B parameters against 135M, not a measurement"),
    ("docs/swaps_results.md", "Issue 17 quotes 914.8", "a figure quoted from issue 17"),
    ("docs/swaps_results.md", "at 112.75 on this budget", "the issue's prototype, quoted from the issue"),
    ("docs/swaps_results.md", "128 MiB at C = 4096 and 969 MB at C = 11008", "C² float64 entries, computed"),
    ("docs/agreement.md", "issue 11's 98.45%", "a figure quoted from issue 11"),
    ("docs/agreement.md", "ε crossing 0.1", "DSnoT's update threshold, a setting"),
    ("docs/speed.md", "in 16 MiB blocks", "the copy block of the code, a constant"),
    ("docs/speed.md", "released / ours at least 1.5", "the speed target, not a measurement"),
    ("docs/weight_update.md", "arXiv 2401.02938", "a paper's identifier"),
    ("docs/weight_update.md", "percdamp 0.01", "SparseGPT's damping, a setting"),
    ("docs/weight_update.md", "n·k² doubles about 64 MB", "the solve's block, a constant of the code"),
    ("docs/weight_update.md", "(k = 0.3 C)", "70% sparsity written as the share kept"),
    ("docs/weight_update.md", "| 0.66 MB |", "§4's table: k² float64 entries, computed"),
    ("docs/weight_update.md", "| 4.7 MB |", "§4's table: k² float64 entries, computed"),
    ("docs/weight_update.md", "| 34 MB |", "§4's table: k² float64 entries, computed"),
    ("docs/weight_update.md", "| 242 MB |", "§4's table: k² float64 entries, computed"),
    ("docs/weight_update.md", "between about 40 minutes and 6 hours", "§4's flop count over an assumed flop rate"),
)


def prose(text: str) -> str:
    """The page without its generated blocks, code, HTML comments and link targets, on one line."""
    text = make_results.BLOCK.sub(" ", text)
    text = re.sub(r"^```.*?^```", " ", text, flags=re.DOTALL | re.MULTILINE)
    text = re.sub(r"`[^`\n]*`|<!--.*?-->|\]\([^)]*\)", " ", text, flags=re.DOTALL)
    return re.sub(r"\s+", " ", text)


def hand_written_measurements(page: str, text: str) -> list[str]:
    """Measurement-like numbers in the prose of `page`, each with a little context."""
    found = prose(text)
    for where, phrase, _ in NOT_MEASURED:
        if where == page:
            found = found.replace(prose(phrase), " ")
    return [found[max(0, m.start() - 40):m.end() + 10] for m in MEASUREMENT.finditer(found)]


@pytest.mark.parametrize("page", PROSE_PAGES)
def test_no_measurement_is_hand_written_in_a_results_page(page):
    """A measured number appears only inside a generated block; the prose refers to the table."""
    found = hand_written_measurements(page, (ROOT / page).read_text(encoding="utf-8"))
    assert found == [], f"{page}: measured numbers outside <!-- results:NAME --> blocks: {found}"


def test_every_exception_is_still_on_its_page():
    stale = [(page, phrase) for page, phrase, _ in NOT_MEASURED
             if prose(phrase) not in prose((ROOT / page).read_text(encoding="utf-8"))]
    assert stale == []


@pytest.mark.parametrize("sentence", [
    "Prune phase of that run: 1079 s wall (forward 391 s)",
    "2 min 51 s in all",
    "released / ours 0.82× on the default job",
    "about 1.6 times Wanda, 2.3-4.9 times the forward",
    "perplexity 115.386 against 158.318",
    "mean reduction 47.9% over all sublayers",
    "peak RSS 1792 MiB",
    "up to 1.2e-2 relative apart",
])
def test_the_rule_catches_a_hand_written_measurement(sentence):
    assert hand_written_measurements("docs/results.md", sentence)


@pytest.mark.parametrize("sentence", ["S = 32 sequences of L = 512 tokens", "Wanda 60% at 2:4", "`--swap-tol 1e-4`",
                                      "32 × 512 calibration", "a tolerance of 1e-4", "6.8e14 flops"])
def test_the_rule_leaves_settings_and_shapes_alone(sentence):
    assert hand_written_measurements("docs/results.md", sentence) == []
