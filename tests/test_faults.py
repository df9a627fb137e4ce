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
