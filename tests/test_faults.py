"""The fault table of issue 28, one test (or more) per row: overlapping outputs, crash-safe saves,
tampered run directories, hostile tokenizers and texts, and the errors that used to be
tracebacks. Rows 1 and 6 (two processes, an earlier run's work) are in test_run_ownership.py."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from dsnot_ref.cli import main

ROOT = Path(__file__).resolve().parents[1]
TINY = ROOT / "data" / "fixtures" / "tiny-llama"


def run_cli(argv, capsys) -> tuple[int, str, str]:
    rc = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return rc, out, err


def one_line_error(rc: int, err: str, match: str) -> str:
    assert rc == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in err, err
    assert match in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def calib(tmp_path):
    path = tmp_path / "calib.npy"
    np.save(path, np.random.default_rng(0).integers(3, 256, size=(2, 16), dtype=np.int64))
    return path


def prune_argv(calib: Path, *extra) -> list:
    return ["prune", "--model", TINY, "--calibration-tokens", calib, "--eval-dataset", "none",
            "--prune-method", "wanda", "--sparsity-ratio", "0.5", "--quiet", *extra]


# --- rows 2 and 3: outputs never overlap ----------------------------------------------------


@pytest.mark.parametrize("outputs, match", [
    (["--run-dir", "work", "--save-model", "work/pruned"], "--save-model work/pruned is inside --run-dir work"),
    (["--run-dir", "X", "--save-model", "X", "--overwrite"], "--save-model X and --run-dir X are the same"),
    (["--run-dir", "work/run", "--save-model", "work"], "--run-dir work/run is inside --save-model work"),
    (["--save-model", "out", "--results", "out/model.safetensors"], "--results out/model.safetensors is inside"),
    (["--save-model", "out", "--results", "out/config.json"], "--results out/config.json is inside --save-model"),
    (["--run-dir", "run", "--results", "run/r.json"], "--results run/r.json is inside --run-dir run"),
    (["--results", "home/runs/r.json"], "--results home/runs/r.json is inside the default run directories"),
    (["--save-model", "home"], "home/runs is inside --save-model home"),
    (["--save-model", "link/pruned", "--run-dir", "work"], "--save-model link/pruned is inside --run-dir work"),
    (["--results", "calib.npy"], "calib.npy"),
])
def test_overlapping_outputs_are_refused_before_any_work(tmp_path, calib, capsys, monkeypatch, outputs, match):
    """Row 2 (a saved model inside, or equal to, the run directory that is deleted afterwards) and
    row 3 (a results file replacing a saved model's weights): refused in one line, nothing written,
    symlinks resolved (link -> work)."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("DSNOT_REF_HOME", str(tmp_path / "home"))
    (tmp_path / "work").mkdir()
    (tmp_path / "link").symlink_to(tmp_path / "work")
    before = sorted(p.name for p in tmp_path.rglob("*"))
    rc, _, err = run_cli(prune_argv(calib, *outputs), capsys)
    one_line_error(rc, err, match)
    assert sorted(p.name for p in tmp_path.rglob("*")) == before


# --- rows 4, 5 and 19: a saved model is never lost --------------------------------------------


class PrunedStore:
    """The tiny model's weights with ``masks`` applied (what save_pruned_model reads)."""

    def __init__(self, base, masks):
        self.base, self.masks = base, masks

    def get(self, name, dtype=np.float32):
        w = np.array(self.base.get(name, dtype=dtype))
        if name in self.masks:
            w[self.masks[name]] = 0
        return w


def pruned_version(row: int):
    """A store and masks that prune row ``row`` of one weight (two versions of a saved model)."""
    from dsnot_ref.model import load_model  # noqa: PLC0415

    name = "model.layers.0.self_attn.q_proj.weight"
    model = load_model(TINY)
    mask = np.zeros(model.store.shape(name), dtype=bool)
    mask[row] = True
    return PrunedStore(model.store, {name: mask}), {name: mask}


def tree(directory: Path) -> dict[str, bytes] | None:
    if not directory.is_dir():
        return None
    return {str(p.relative_to(directory)): p.read_bytes() for p in sorted(directory.rglob("*")) if p.is_file()}


def save_dying_at(k: int, after: bool, out: Path, version) -> int:
    """Save in a forked child that dies (os._exit, no cleanup: as SIGKILL) at its k-th rename,
    before or after it happens; the child's exit status (0: it saved, fewer than k renames)."""
    from dsnot_ref.save import save_pruned_model  # noqa: PLC0415

    pid = os.fork()
    if pid == 0:  # pragma: no cover - the child
        calls = [0]

        def dying(real):
            def rename(*args, **kwargs):
                calls[0] += 1
                if calls[0] == k and not after:
                    os._exit(137)
                result = real(*args, **kwargs)
                if calls[0] == k:
                    os._exit(137)
                return result
            return rename

        os.replace, os.rename = dying(os.replace), dying(os.rename)
        try:
            save_pruned_model(TINY, out, version[0], version[1], overwrite=True)
        except BaseException:
            os._exit(1)
        os._exit(0)
    _, status = os.waitpid(pid, 0)
    return os.waitstatus_to_exitcode(status)


@pytest.mark.parametrize("start", ["old-model", "missing", "empty-dir"])
def test_a_save_killed_at_every_rename_loses_nothing(tmp_path, start):
    """Row 4: a save killed before or after each of its renames. The next run (here the output
    check every `prune --save-model` makes before its work) repairs the directory to exactly the
    old model or exactly the new one, with nothing left beside or inside it; a save after that
    works (it used to fail with "Directory not empty" for ever)."""
    from dsnot_ref.save import check_output_dir, save_pruned_model  # noqa: PLC0415

    old, new = pruned_version(0), pruned_version(5)
    reference = tmp_path / "reference"
    save_pruned_model(TINY, reference / "old", *old)
    save_pruned_model(TINY, reference / "new", *new)
    old_tree, new_tree = tree(reference / "old"), tree(reference / "new")
    assert old_tree != new_tree
    seen = set()
    for k in range(1, 100):
        for after in (False, True):
            parent = tmp_path / f"kill{k}{after}"
            out = parent / "out"
            parent.mkdir()
            if start == "old-model":
                save_pruned_model(TINY, out, *old)
            elif start == "empty-dir":
                out.mkdir()
            status = save_dying_at(k, after, out, new)
            assert status in (0, 137), status
            check_output_dir(TINY, out, overwrite=True)   # the next run
            state = tree(out)
            expected = {"old-model": [old_tree], "missing": [None], "empty-dir": [{}]}[start] + [new_tree]
            assert state in expected, (k, after, sorted(state or {}))
            assert [p.name for p in parent.iterdir()] == (["out"] if out.exists() else []), (k, after)
            seen.add("new" if state == new_tree else "old")
            if status == 0:
                break
        if status == 0:
            break
    assert k > 3 and seen == {"old", "new"} if start == "old-model" else seen == {"old", "new"}, (k, seen)
    save_pruned_model(TINY, out, *old, overwrite=True)
    assert tree(out) == old_tree


def test_save_into_an_empty_mount_point(tmp_path, monkeypatch):
    """Row 5: --save-model an empty mount point (a container volume): it cannot be renamed or
    removed (EBUSY); the model is written into it."""
    import errno  # noqa: PLC0415

    from dsnot_ref.save import save_pruned_model  # noqa: PLC0415

    mount = tmp_path / "volume"
    mount.mkdir()
    real_replace, real_rmdir, real_rmtree = os.replace, os.rmdir, __import__("shutil").rmtree

    def busy(real):
        def call(src, *args, **kwargs):
            if Path(src) == mount:
                raise OSError(errno.EBUSY, "Device or resource busy", str(src))
            return real(src, *args, **kwargs)
        return call

    monkeypatch.setattr(os, "replace", busy(real_replace))
    monkeypatch.setattr(os, "rename", busy(os.rename))
    monkeypatch.setattr(os, "rmdir", busy(real_rmdir))
    save_pruned_model(TINY, mount, *pruned_version(3))
    names = sorted(p.name for p in mount.iterdir())
    assert "model.safetensors" in names and "masks.safetensors" in names and "config.json" in names
    assert not [n for n in names if n.startswith(".")]
    save_pruned_model(TINY, mount, *pruned_version(4), overwrite=True)   # replaced in place too
    assert not [p.name for p in mount.iterdir() if p.name.startswith(".")]


def test_two_saves_racing_end_with_one_whole_model(tmp_path):
    """Row 19 (two saves racing): two processes replacing the same directory at once take turns
    (a lock on its parent); the result is exactly one of the two models, nothing left beside it."""
    from dsnot_ref.save import save_pruned_model  # noqa: PLC0415

    versions = [pruned_version(1), pruned_version(2)]
    trees = []
    for i, version in enumerate(versions):
        save_pruned_model(TINY, tmp_path / f"ref{i}", *version)
        trees.append(tree(tmp_path / f"ref{i}"))
    out = tmp_path / "race" / "out"
    out.parent.mkdir()
    save_pruned_model(TINY, out, *versions[0])
    for _ in range(3):
        pids = []
        for version in versions:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - the child
                try:
                    save_pruned_model(TINY, out, *version, overwrite=True)
                except BaseException:
                    os._exit(1)
                os._exit(0)
            pids.append(pid)
        assert [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids] == [0, 0]
        assert tree(out) in trees
        assert [p.name for p in out.parent.iterdir()] == ["out"]


# --- row 7: a resumed run trusts nothing it did not verify ------------------------------------


def interrupted_at_layer_1(calib: Path, run_dir: Path, monkeypatch, *extra) -> None:
    """A `prune --run-dir` stopped (as by Ctrl-C) inside layer 1 of 2: layer 0 finished."""
    from dsnot_ref import pipeline  # noqa: PLC0415

    real = pipeline.prune_one_layer

    def stop_at_layer_1(model, i, *args, **kwargs):
        if i == 1:
            raise KeyboardInterrupt
        return real(model, i, *args, **kwargs)

    monkeypatch.setattr(pipeline, "prune_one_layer", stop_at_layer_1)
    assert main([str(a) for a in prune_argv(calib, "--run-dir", run_dir, *extra)]) == 130
    monkeypatch.setattr(pipeline, "prune_one_layer", real)


def half_the_sequences(run: Path) -> None:
    path = run / "acts" / "layer_001.npy"
    np.save(path, np.load(path)[:1])


def swap_masks(run: Path) -> None:
    from dsnot_ref.weights import read_mask_file, write_mask_file  # noqa: PLC0415

    path = run / "masks" / "layer_000.safetensors"
    write_mask_file(path, {name: ~mask for name, mask in read_mask_file(path).items()})


def set_manifest(**fields):
    def edit(run: Path) -> None:
        import json  # noqa: PLC0415

        manifest = json.loads((run / "manifest.json").read_text())
        (run / "manifest.json").write_text(json.dumps({**manifest, **fields}))
    return edit


def truncate(name: str):
    def edit(run: Path) -> None:
        path = run / name
        path.write_bytes(path.read_bytes()[: path.stat().st_size // 2])
    return edit


@pytest.mark.parametrize("tamper, match", [
    (half_the_sequences, "acts/layer_001.npy has"),
    (swap_masks, "masks/layer_000.safetensors changed since it was written"),
    (truncate("diagnostics/layer_000.json"), "diagnostics/layer_000.json has"),
    (truncate("layers/layer_000.safetensors"), "layers/layer_000.safetensors has"),
    (lambda run: (run / "layers" / "layer_000.safetensors").unlink(), "layers/layer_000.safetensors is missing"),
    (set_manifest(layers_done=-1), "layers_done is -1"),
    (set_manifest(layers_done=7), "layers_done is 7"),
    (set_manifest(layers_done=True), "layers_done is True"),
    (set_manifest(layers_done="1"), "layers_done is '1'"),
    (set_manifest(layers_done=2), "layers/layer_001.safetensors has no record"),
    (set_manifest(files=[]), "'files' is not a record"),
    (set_manifest(files={"acts/layer_001.npy": {"size": "big"}}), "'files' is not a record"),
    (truncate("manifest.json"), "is not valid JSON"),
], ids=["acts-half", "masks-swapped", "diag-truncated", "layer-truncated", "layer-missing", "done-negative",
        "done-too-many", "done-bool", "done-string", "done-unrecorded", "files-list", "files-bad-record",
        "manifest-truncated"])
def test_tampered_run_directory_is_refused(tmp_path, calib, capsys, monkeypatch, tamper, match):
    """Row 7: the run directory edited between a crash and the resume. Every reused file is
    checked against the size and sha256 written with it; the manifest's own fields are checked;
    each is one line, exit 2, and the run directory (an earlier run's work) is left as it is."""
    run = tmp_path / "run"
    interrupted_at_layer_1(calib, run, monkeypatch)
    tamper(run)
    before = {p: p.read_bytes() for p in run.rglob("*") if p.is_file()}
    capsys.readouterr()
    rc, _, err = run_cli(prune_argv(calib, "--run-dir", run), capsys)
    assert rc == 2 and "Traceback" not in err, err
    assert match in err.strip().splitlines()[0], err
    assert {p: p.read_bytes() for p in run.rglob("*") if p.is_file()} == before


def test_tampered_owl_profile_is_refused(tmp_path, calib, capsys, monkeypatch):
    """Row 7: owl.json's sparsities edited after a crash: refused, not used."""
    import json  # noqa: PLC0415

    run = tmp_path / "run"
    owl = ("--sparsity-profile", "owl")
    interrupted_at_layer_1(calib, run, monkeypatch, *owl)
    profile = json.loads((run / "owl.json").read_text())
    profile["layer_sparsities"] = [0.1 for _ in profile["layer_sparsities"]]
    (run / "owl.json").write_text(json.dumps(profile))
    capsys.readouterr()
    rc, _, err = run_cli(prune_argv(calib, "--run-dir", run, *owl), capsys)
    one_line_error(rc, err, "owl.json")


def test_resume_is_tied_to_the_model_content(tmp_path, calib, capsys, monkeypatch):
    """Identity is content: a weight file rewritten in place with other bytes, same size and same
    modification time, is another model; the resumed run is refused. A copy of the model at
    another path is the same model, and resumes."""
    import shutil  # noqa: PLC0415

    model = tmp_path / "model"
    shutil.copytree(TINY, model)
    run = tmp_path / "run"
    argv = lambda m: [a if a != TINY else m for a in prune_argv(calib, "--run-dir", run)]  # noqa: E731
    interrupted_at_layer_1(calib, run, monkeypatch)   # made from TINY itself
    capsys.readouterr()
    weights = model / "model.safetensors"
    data = bytearray(weights.read_bytes())
    data[-4:] = bytes(4)   # the last float of the last tensor
    st = weights.stat()
    weights.write_bytes(bytes(data))
    os.utime(weights, ns=(st.st_atime_ns, st.st_mtime_ns))
    rc, _, err = run_cli(argv(model), capsys)
    one_line_error(rc, err, "was made from other inputs (model.weight_files.model.safetensors")
    shutil.copy2(TINY / "model.safetensors", weights)
    rc, _, err = run_cli([a for a in argv(model) if a != "--quiet"], capsys)
    assert rc == 0, err
    assert "found a run directory left by an earlier run" in err


# --- row 8: text is tokenised in bounded pieces, and only as far as needed --------------------


def sentencepiece_like_tokenizer():
    """A BPE trained here on the bundled corpus, built as LLaMA-2's tokenizer.json is: no
    pre-tokenizer (merges may cross spaces), a normalizer that prepends "▁" and turns spaces into
    "▁", and a post-processor that wraps the text in <s> ... </s>: the hardest case for cutting a
    text into pieces."""
    from tokenizers import Tokenizer, models, normalizers, processors, trainers  # noqa: PLC0415

    from dsnot_ref import data  # noqa: PLC0415

    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.normalizer = normalizers.Sequence([normalizers.Prepend("▁"), normalizers.Replace(" ", "▁")])
    trainer = trainers.BpeTrainer(vocab_size=600, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    tok.train_from_iterator(data.read_texts(data.BUNDLED_CALIBRATION)[:200], trainer)
    tok.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    return tok


@pytest.mark.parametrize("which", ["fixture-byte-level", "sentencepiece-like"])
@pytest.mark.parametrize("piece_chars, context", [(300, 40), (2000, 64), (1 << 16, 256)])
def test_pieces_give_the_ids_of_the_whole_text(which, piece_chars, context):
    """Row 8: the text tokenised in pieces, joined at cuts where both pieces agree, gives exactly
    the ids of one encode of the whole text (special tokens around the whole, once)."""
    from dsnot_ref import data  # noqa: PLC0415

    tok = data.load_tokenizer(TINY) if which == "fixture-byte-level" else sentencepiece_like_tokenizer()
    text = "\n\n".join(data.read_texts(data.BUNDLED_EVAL))[:120_000] + " émoji 🦙🦙 end"
    whole = np.asarray(tok.encode(text).ids)
    pieces = data.encode_pieces(tok, text, piece_chars=piece_chars, context=context)
    assert pieces is not None
    np.testing.assert_array_equal(pieces, whole)
    first = data.encode_pieces(tok, text, limit=1000, piece_chars=piece_chars, context=context)
    np.testing.assert_array_equal(first[:1000], whole[:1000])
    assert len(first) < len(whole)  # it stopped reading


MEMORY_CHILD = """
import sys
from dsnot_ref.cli import main
rc = main(sys.argv[1:])
# VmHWM, the peak RSS of this process image (ru_maxrss would carry the parent's across exec)
peak = next(line for line in open("/proc/self/status") if line.startswith("VmHWM:"))
print(int(peak.split()[1]) * 1024, file=sys.stderr)
sys.exit(rc)
"""


def test_eval_max_windows_1_on_a_10_mb_text_reads_only_its_window(tmp_path):
    """Row 8: `eval --max-windows 1` on a 10 MB text peaks far below what tokenising the whole
    text costs (3.6 GB with the demo model's tokenizer; here the tiny fixture)."""
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    from dsnot_ref import data  # noqa: PLC0415

    text = "\n\n".join(data.read_texts(data.BUNDLED_EVAL))
    big = tmp_path / "big.txt"
    big.write_text((text * (10_000_000 // len(text) + 1))[:10_000_000], encoding="utf-8")
    proc = subprocess.run([sys.executable, "-c", MEMORY_CHILD, "eval", "--model", str(TINY), "--dataset", str(big),
                           "--seqlen", "64", "--max-windows", "1", "--quiet"],
                          capture_output=True, text=True, timeout=300, cwd=ROOT)
    assert proc.returncode == 0, proc.stderr
    peak = int(proc.stderr.strip().splitlines()[-1])
    assert peak < 500 * 2**20, peak
    assert "1 windows of 64" in proc.stdout


# --- row 9: a tokenizer.json's truncation and padding are not ours ---------------------------


def test_tokenizer_truncation_and_padding_are_disabled(tmp_path):
    import json  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    from dsnot_ref import data  # noqa: PLC0415

    model = tmp_path / "model"
    shutil.copytree(TINY, model)
    raw = json.loads((model / "tokenizer.json").read_text())
    raw["truncation"] = {"direction": "Right", "max_length": 30, "strategy": "LongestFirst", "stride": 0}
    raw["padding"] = {"strategy": {"Fixed": 2_000_000}, "direction": "Right", "pad_to_multiple_of": None,
                      "pad_id": 0, "pad_type_id": 0, "pad_token": "<pad>"}
    (model / "tokenizer.json").write_text(json.dumps(raw))
    text = "\n\n".join(data.read_texts(data.BUNDLED_EVAL))[:5000]
    plain = data.encode(data.load_tokenizer(TINY), text)
    ids = data.encode(data.load_tokenizer(model), text)
    assert len(plain) > 300
    np.testing.assert_array_equal(ids, plain)


# --- row 10: a full TMPDIR under evaluation ----------------------------------------------------


def test_eval_with_a_full_tmpdir_is_one_line(tmp_path, capsys, monkeypatch):
    """The hidden states above MEMMAP_BYTES go to a file in TMPDIR; its blocks are allocated
    before the map is written, so a full disk is one line (not SIGBUS), and nothing stays."""
    import errno  # noqa: PLC0415
    import tempfile  # noqa: PLC0415

    from dsnot_ref import data, evaluate  # noqa: PLC0415

    def full(fd, offset, length):
        raise OSError(errno.ENOSPC, "No space left on device")

    (tmp_path / "tmp").mkdir()
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "tmp"))
    monkeypatch.setattr(evaluate, "MEMMAP_BYTES", 1024)
    monkeypatch.setattr(os, "posix_fallocate", full)
    rc, _, err = run_cli(["eval", "--model", TINY, "--dataset", data.BUNDLED_EVAL, "--seqlen", "64",
                          "--max-windows", "4", "--quiet"], capsys)
    one_line_error(rc, err, "No space left on device); set TMPDIR")
    assert list((tmp_path / "tmp").iterdir()) == []


# --- row 11: a perplexity that overflows a float ----------------------------------------------


def test_perplexity_overflow_is_inf(tmp_path, capsys, monkeypatch):
    """A mean NLL above 709: perplexity inf on stdout, null in the results JSON (JSON has no
    infinity), which `report` reads back; in `prune` the model is still saved."""
    import json  # noqa: PLC0415

    from dsnot_ref import data, evaluate  # noqa: PLC0415

    monkeypatch.setattr(evaluate, "window_nll", lambda config, glob, x, targets, xp: np.full(len(targets), 800.0))
    rc, out, err = run_cli(["eval", "--model", TINY, "--dataset", data.BUNDLED_EVAL, "--seqlen", "64",
                            "--max-windows", "2", "--quiet", "--results", tmp_path / "e.json"], capsys)
    assert rc == 0, err
    assert out.startswith("perplexity inf")
    record = json.loads((tmp_path / "e.json").read_text())
    assert record["perplexity"] is None and record["mean_nll"] == 800.0
    eval_text = tmp_path / "eval.txt"
    eval_text.write_text("\n\n".join(data.read_texts(data.BUNDLED_EVAL))[:20000])
    rc, out, err = run_cli(prune_argv(tmp_path / "calib.npy", "--save-model", tmp_path / "out", "--results",
                                      tmp_path / "r.json")[:0] or [
        "prune", "--model", TINY, "--calibration", data.BUNDLED_CALIBRATION, "--nsamples", "2", "--seqlen", "32",
        "--eval-dataset", eval_text, "--eval-max-windows", "2", "--prune-method", "wanda", "--sparsity-ratio", "0.5",
        "--quiet", "--save-model", tmp_path / "out", "--results", tmp_path / "r.json"], capsys)
    assert rc == 0, err
    assert "perplexity (pruned): inf" in out
    assert (tmp_path / "out" / "model.safetensors").is_file()
    rc, out, err = run_cli(["report", tmp_path / "r.json"], capsys)
    assert rc == 0 and "perplexity (pruned): inf" in out, err


# --- rows 12 and 13: JSON Lines and JSON text ---------------------------------------------------


def test_json_lines_split_only_at_newline(tmp_path):
    from dsnot_ref import data  # noqa: PLC0415

    texts = ["a\u2028b", "c\u2029d", "e\x85f", "g\rh"]
    path = tmp_path / "c.jsonl"
    path.write_text("".join(json_line(t) + "\n" for t in texts), encoding="utf-8")
    assert data.read_texts(path) == texts


def json_line(text: str) -> str:
    import json  # noqa: PLC0415

    return json.dumps({"text": text}, ensure_ascii=False)


def test_lone_surrogate_escapes_are_one_line(tmp_path, capsys, calib):
    import shutil  # noqa: PLC0415

    from dsnot_ref import data  # noqa: PLC0415
    from dsnot_ref.errors import UserError  # noqa: PLC0415

    path = tmp_path / "c.jsonl"
    path.write_text('{"text": "fine"}\n{"text": "bad \\ud800 here"}\n', encoding="utf-8")
    with pytest.raises(UserError, match="line 2: the 'text' holds a lone surrogate"):
        data.read_texts(path)
    path.write_text('{"text": "a pair \\ud83e\\udd99 is fine"}\n', encoding="utf-8")
    assert data.read_texts(path) == ["a pair 🦙 is fine"]
    model = tmp_path / "model"
    shutil.copytree(TINY, model)
    config = (model / "config.json").read_text()
    (model / "config.json").write_text(config.replace('"model_type"', '"note": "\\udc00", "model_type"'))
    rc, _, err = run_cli(["prune", "--model", model, "--calibration-tokens", calib, "--eval-dataset", "none",
                          "--prune-method", "wanda", "--sparsity-ratio", "0.5", "--quiet"], capsys)
    one_line_error(rc, err, "lone surrogate")


# --- row 14: a tokenizer that loads but cannot encode -------------------------------------------


def test_tokenizer_failure_and_panic_are_one_line():
    from dsnot_ref import data  # noqa: PLC0415
    from dsnot_ref.errors import UserError  # noqa: PLC0415

    class PanicException(BaseException):  # what pyo3 raises for a Rust panic
        pass

    class Broken:
        def __init__(self, exc):
            self.exc = exc

        def encode(self, text, add_special_tokens=True):
            raise self.exc

    with pytest.raises(UserError, match="cannot encode corpus x.txt: bad merges"):
        data.encode(Broken(Exception("bad merges\nmore")), "some text", "corpus x.txt")
    with pytest.raises(UserError, match="it panicked: index out of bounds"):
        data.encode(Broken(PanicException("index out of bounds")), "some text")
    with pytest.raises(KeyboardInterrupt):
        data.encode(Broken(KeyboardInterrupt()), "some text")


# --- rows 15 to 17: compare-masks, report and golden check on odd inputs -------------------------


def test_compare_masks_on_what_cannot_be_compared(tmp_path, capsys):
    """Not "different" (exit 1) but not comparable (exit 2, one line): integer weights, a mask with
    no rows."""
    import json  # noqa: PLC0415
    import shutil  # noqa: PLC0415

    from safetensors.numpy import load_file, save_file  # noqa: PLC0415

    ints = tmp_path / "ints"
    shutil.copytree(TINY, ints)
    weights = load_file(str(ints / "model.safetensors"))
    save_file({k: (v.astype(np.int32) if ".layers." in k and v.ndim == 2 else v) for k, v in weights.items()},
              str(ints / "model.safetensors"))
    rc, _, err = run_cli(["compare-masks", ints, ints], capsys)
    one_line_error(rc, err, "I32, not a float")
    empty = tmp_path / "empty"
    shutil.copytree(TINY, empty)
    name = "model.layers.0.mlp.up_proj.weight"
    save_file({name: np.zeros((0, 1), np.uint8)}, str(empty / "masks.safetensors"),
              metadata={"shapes": json.dumps({name: [0, 8]}), "packing": "x"})
    rc, _, err = run_cli(["compare-masks", empty, empty], capsys)
    one_line_error(rc, err, "masks.safetensors")
    from dsnot_ref.errors import UserError  # noqa: PLC0415
    from dsnot_ref.save import compare_mask_sets  # noqa: PLC0415

    for shape in ((0, 8), (8,)):   # no entries to compare (a zero-row weight), not a matrix
        with pytest.raises(UserError, match="not a weight matrix"):
            compare_mask_sets({"w": np.zeros(shape, bool)}, {"w": np.zeros(shape, bool)}, "A", "B")
    rc, out, err = run_cli(["compare-masks", TINY, TINY], capsys)   # a dense model against itself
    assert rc == 0 and "identical" in out, err


@pytest.mark.parametrize("results", [
    {"layers": [{"name": "0.q"}], "settings": None, "sparsity": None, "times": None, "perplexity": None},
    {"layers": [{"name": "0.q", "sparsity": 1e308}], "settings": {"sparsity_ratio": 1e308},
     "perplexity": {"pruned": {"perplexity": 1e308, "n_windows": 1, "seqlen": 2}}},
    {"layers": [{"name": "0.q"}], "perplexity": {"pruned": {"perplexity": None, "mean_nll": 800.0, "n_windows": 1,
                                                             "seqlen": 2}}},
], ids=["null-sections", "1e308", "overflowed-perplexity"])
def test_report_on_odd_results(tmp_path, capsys, results):
    import json  # noqa: PLC0415

    path = tmp_path / "r.json"
    path.write_text(json.dumps(results))
    rc, out, err = run_cli(["report", path], capsys)
    assert rc == 0 and "Traceback" not in err, err
    assert "0.q" in out


def test_golden_check_with_a_bad_swaps_size(tmp_path, capsys):
    from dsnot_ref import golden  # noqa: PLC0415
    from dsnot_ref.errors import UserError  # noqa: PLC0415

    with pytest.raises(UserError, match=r"'swaps' has shape \[6\], not \[n, 4\]"):
        golden.swap_log(np.arange(6), "g.npz")
    with pytest.raises(UserError, match=r"'swaps' has shape \[2, 3\]"):
        golden.swap_log(np.zeros((2, 3), np.int64), "g.npz")
    assert golden.swap_log(np.arange(8), "g.npz").shape == (2, 4)


# --- rows 18 and 19: paths and the environment ----------------------------------------------------


@pytest.mark.parametrize("name", ["x" * 300, "new\nline"], ids=["256-bytes", "newline"])
def test_odd_path_components_are_one_line(tmp_path, capsys, calib, name):
    rc, _, err = run_cli(prune_argv(calib, "--results", tmp_path / name / "r.json", "--save-model",
                                    tmp_path / name / "out"), capsys)
    if rc == 0:   # a newline is a legal name: the run works
        assert name == "new\nline" and (tmp_path / name / "out" / "config.json").is_file()
        rc, _, err = run_cli(prune_argv(calib, "--save-model", tmp_path / name / "out"), capsys)
        one_line_error(rc, err, "new\\nline")   # the refusal names it on one line
    else:
        one_line_error(rc, err, "File name too long")


def test_environment_errors_are_one_line(tmp_path, capsys, calib, monkeypatch):
    """A full disk while writing results, and a DSNOT_REF_HOME that cannot be created."""
    import errno  # noqa: PLC0415

    from dsnot_ref import io_utils  # noqa: PLC0415

    real = io_utils.atomic_write_bytes

    def disk_full(path, data):
        if str(path).endswith("r.json"):
            raise OSError(errno.ENOSPC, "No space left on device", str(path))
        return real(path, data)

    monkeypatch.setattr(io_utils, "atomic_write_bytes", disk_full)
    rc, _, err = run_cli(prune_argv(calib, "--results", tmp_path / "r.json", "--run-dir", tmp_path / "run"), capsys)
    one_line_error(rc, err, f"No space left on device: {tmp_path / 'r.json'}")
    monkeypatch.setattr(io_utils, "atomic_write_bytes", real)
    home = tmp_path / "readonly"
    home.mkdir()
    real_mkdir = os.mkdir

    def read_only(path, *args, **kwargs):  # as on a read-only mount (root ignores mode bits)
        if str(path).startswith(str(home)):
            raise OSError(errno.EROFS, "Read-only file system", str(path))
        return real_mkdir(path, *args, **kwargs)

    monkeypatch.setattr(os, "mkdir", read_only)
    monkeypatch.setenv("DSNOT_REF_HOME", str(home))
    rc, _, err = run_cli(prune_argv(calib), capsys)
    one_line_error(rc, err, "Read-only file system")


def test_file_size_limit_is_one_line(tmp_path, calib):
    """RLIMIT_FSIZE below the saved model: the write fails with EFBIG (Python ignores SIGXFSZ)."""
    import resource  # noqa: PLC0415
    import subprocess  # noqa: PLC0415
    import sys  # noqa: PLC0415

    def limit():
        resource.setrlimit(resource.RLIMIT_FSIZE, (200_000, 200_000))

    argv = [str(a) for a in prune_argv(calib, "--save-model", tmp_path / "out", "--run-dir", tmp_path / "run")]
    proc = subprocess.run([sys.executable, "-m", "dsnot_ref", *argv], capture_output=True, text=True, timeout=120,
                          cwd=ROOT, preexec_fn=limit)
    one_line_error(proc.returncode, proc.stderr, "File too large")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["calib.npy", "run"]   # kept: pruned, not saved


@pytest.mark.parametrize("suffix", [".txt", ".raw", ".jsonl"])
def test_max_windows_reads_only_the_beginning_of_a_text_file(tmp_path, suffix):
    """Row 8: with a token limit, a plain corpus file is read 1 MiB at a time, growing, until the
    limit is reached: its first ids equal those of the whole text, and bytes past what was read are
    never looked at (here a tail that is not UTF-8, which reading the whole file refuses)."""
    from dsnot_ref import data  # noqa: PLC0415
    from dsnot_ref.errors import UserError  # noqa: PLC0415

    tok = data.load_tokenizer(TINY)
    text = "\n\n".join(data.read_texts(data.BUNDLED_EVAL))
    lines = [line for line in text[:1_500_000].split("\n") if line.strip()] + [" é🦙"]
    body = {".txt": "\n".join(lines),
            ".raw": "".join(f" {line} \r\n \n" for line in lines),
            ".jsonl": "".join(json_line(line) + "\n" for line in lines)}[suffix]
    good = tmp_path / f"good{suffix}"
    good.write_text(body, encoding="utf-8", newline="")
    whole = data.eval_tokens(tok, good)
    for limit in (100, 300_000):   # the second needs more than the first MiB
        np.testing.assert_array_equal(data.eval_tokens(tok, good, limit), whole[:limit])
    bad = tmp_path / f"bad{suffix}"
    bad.write_bytes(body.encode("utf-8") * 2 + b"\xff\xfe not text\n")
    with pytest.raises(UserError, match="not UTF-8"):
        data.eval_tokens(tok, bad)
    np.testing.assert_array_equal(data.eval_tokens(tok, bad, 1000), whole[:1000])
