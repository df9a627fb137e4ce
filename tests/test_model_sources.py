"""Where a model's files come from: Hugging Face hub cache snapshots, and directories that offer
two sources of the same tensors.

A hub snapshot ``<repo>/snapshots/<rev>/`` holds symlinks into ``<repo>/blobs/``; it loads,
evaluates and saves like a plain directory, single-file and sharded, while a link leaving the
repository is still refused. A directory with both ``model.safetensors`` and an index with its
shards is read from ``model.safetensors`` (as transformers reads it) and saved in that layout.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import numpy as np
import pytest

from dsnot_ref import save, weights
from dsnot_ref.cli import main
from dsnot_ref.errors import UserError
from dsnot_ref.model import load_model

FIXTURES = Path(__file__).resolve().parents[1] / "data" / "fixtures"
TINY = FIXTURES / "tiny-llama"
SHARDED = FIXTURES / "llama-f16-sharded"
TEXT = "The quick brown fox jumps over the lazy dog. " * 40


def hub_snapshot(source: Path, cache: Path, repo: str = "models--test--tiny") -> Path:
    """The files of ``source`` laid out as huggingface_hub caches them: each file's bytes in
    ``blobs/<sha256>``, and ``snapshots/<rev>/<name>`` a relative symlink to its blob."""
    repo_dir = cache / repo
    snapshot = repo_dir / "snapshots" / "0123456789abcdef"
    (repo_dir / "blobs").mkdir(parents=True)
    snapshot.mkdir(parents=True)
    for f in sorted(source.iterdir()):
        digest = hashlib.sha256(f.read_bytes()).hexdigest()
        shutil.copyfile(f, repo_dir / "blobs" / digest)
        os.symlink(Path("..") / ".." / "blobs" / digest, snapshot / f.name)
    (repo_dir / "refs").mkdir()
    (repo_dir / "refs" / "main").write_text("0123456789abcdef")
    return snapshot


@pytest.mark.parametrize("source", [TINY, SHARDED], ids=["single-file", "sharded"])
def test_hub_snapshot_loads_like_the_plain_directory(tmp_path, source):
    snapshot = hub_snapshot(source, tmp_path / "hub")
    assert all(p.is_symlink() for p in snapshot.iterdir())
    plain, linked = load_model(source), load_model(snapshot)
    assert plain.config == linked.config
    for name in plain.store.names():
        np.testing.assert_array_equal(plain.store.get(name), linked.store.get(name))


@pytest.mark.parametrize("source", [TINY, SHARDED], ids=["single-file", "sharded"])
def test_hub_snapshot_prunes_evaluates_and_saves(tmp_path, capsys, source):
    snapshot = hub_snapshot(source, tmp_path / "hub")
    (tmp_path / "text.txt").write_text(TEXT)
    common = ["--prune-method", "wanda", "--sparsity-ratio", "0.5", "--nsamples", "2", "--seqlen", "16",
              "--calibration", str(tmp_path / "text.txt"), "--eval-dataset", str(tmp_path / "text.txt"),
              "--eval-max-windows", "2", "--quiet"]
    results = []
    for name, model in (("plain", source), ("hub", snapshot)):
        rc = main(["prune", "--model", str(model), *common, "--save-model", str(tmp_path / f"saved-{name}"),
                   "--results", str(tmp_path / f"{name}.json"), "--run-dir", str(tmp_path / f"run-{name}")])
        assert rc == 0, capsys.readouterr().err
        results.append(json.loads((tmp_path / f"{name}.json").read_text()))
    assert results[0]["perplexity"]["pruned"]["perplexity"] == results[1]["perplexity"]["pruned"]["perplexity"]
    saved, plain = tmp_path / "saved-hub", tmp_path / "saved-plain"
    assert not any(p.is_symlink() for p in saved.iterdir())  # the copy holds the files, not links
    assert sorted(p.name for p in saved.iterdir()) == sorted(p.name for p in plain.iterdir())
    for f in plain.iterdir():
        assert f.read_bytes() == (saved / f.name).read_bytes(), f.name


@pytest.mark.parametrize("name", ["tokenizer.json", "config.json", "model.safetensors"])
def test_link_leaving_the_repository_is_refused(tmp_path, name):
    """A link into ANOTHER repository's blobs (or anywhere else) is still refused."""
    snapshot = hub_snapshot(TINY, tmp_path / "hub")
    other = hub_snapshot(TINY, tmp_path / "hub", repo="models--other--repo")
    target = (other / name).resolve()
    (snapshot / name).unlink()
    os.symlink(os.path.relpath(target, snapshot), snapshot / name)
    assert (snapshot / name).read_bytes() == (TINY / name).read_bytes()  # it would read fine
    with pytest.raises(UserError, match="symlink leaving the model directory"):
        model = load_model(snapshot)
        from dsnot_ref.data import load_tokenizer
        load_tokenizer(model.path)


def test_snapshot_shard_link_leaving_the_repository_is_refused(tmp_path):
    snapshot = hub_snapshot(SHARDED, tmp_path / "hub")
    shard = "model-00002-of-00004.safetensors"
    (snapshot / shard).unlink()
    os.symlink(SHARDED / shard, snapshot / shard)  # the bytes are right, the place is not
    with pytest.raises(UserError, match="leaves the model directory"):
        load_model(snapshot)


def test_blobs_outside_a_snapshots_layout_are_refused(tmp_path):
    """Only ``<repo>/snapshots/<rev>`` may link to ``<repo>/blobs``: a plain directory whose
    files link to a sibling ``../../blobs`` is not a snapshot."""
    snapshot = hub_snapshot(TINY, tmp_path / "hub")
    fake = snapshot.parent.parent / "notsnapshots" / "rev"
    fake.parent.mkdir()
    snapshot.rename(fake)
    with pytest.raises(UserError, match="symlink leaving the model directory"):
        load_model(fake)


def both_layouts(tmp_path: Path) -> Path:
    """tiny-llama's model.safetensors beside an index whose shards hold DIFFERENT values (every
    tensor doubled), so that which source was read shows in the numbers."""
    model = tmp_path / "both"
    shutil.copytree(TINY, model)
    store = weights.WeightStore(TINY)
    names = store.names()
    half = len(names) // 2
    shards = {"model-00001-of-00002.safetensors": names[:half], "model-00002-of-00002.safetensors": names[half:]}
    weight_map = {}
    for shard, members in shards.items():
        weights.save_safetensors_atomic(model / shard, {n: 2 * store.get(n) for n in members})
        weight_map.update(dict.fromkeys(members, shard))
    (model / weights.INDEX_FILE).write_text(json.dumps({"metadata": {}, "weight_map": weight_map}))
    return model


def test_both_layouts_load_and_save_from_the_same_source(tmp_path, capsys):
    model = both_layouts(tmp_path)
    loaded = load_model(model)
    for name in loaded.store.names():  # read from model.safetensors, as transformers reads it
        np.testing.assert_array_equal(loaded.store.get(name), weights.WeightStore(TINY).get(name))
    assert save.weight_files(model) == [weights.SINGLE_FILE]
    (tmp_path / "text.txt").write_text(TEXT)
    rc = main(["prune", "--model", str(model), "--prune-method", "magnitude", "--sparsity-ratio", "0.5",
               "--nsamples", "2", "--seqlen", "16", "--calibration", str(tmp_path / "text.txt"),
               "--eval-dataset", str(tmp_path / "text.txt"), "--eval-max-windows", "2", "--quiet",
               "--save-model", str(tmp_path / "out"), "--results", str(tmp_path / "r.json"),
               "--run-dir", str(tmp_path / "run")])
    assert rc == 0, capsys.readouterr().err
    out = tmp_path / "out"
    assert (out / weights.SINGLE_FILE).is_file() and not (out / weights.INDEX_FILE).exists()
    assert not list(out.glob("model-0000*"))
    reported = json.loads((tmp_path / "r.json").read_text())["perplexity"]["pruned"]["perplexity"]
    capsys.readouterr()
    rc = main(["eval", "--model", str(out), "--dataset", str(tmp_path / "text.txt"), "--seqlen", "16",
               "--max-windows", "2", "--quiet", "--results", str(tmp_path / "e.json")])
    assert rc == 0
    assert json.loads((tmp_path / "e.json").read_text())["perplexity"] == pytest.approx(reported, rel=1e-6)


def with_tokenizer_config(tmp_path: Path, config: dict, post_processor: dict | None = None) -> Path:
    model = tmp_path / "model"
    shutil.copytree(TINY, model)
    (model / "tokenizer_config.json").write_text(json.dumps(config))
    if post_processor is not None:
        tokenizer = json.loads((model / "tokenizer.json").read_text())
        tokenizer["post_processor"] = post_processor
        (model / "tokenizer.json").write_text(json.dumps(tokenizer))
    return model


BOS_TEMPLATE = {"type": "TemplateProcessing", "single": [{"SpecialToken": {"id": "ā", "type_id": 0}},
                                                         {"Sequence": {"id": "A", "type_id": 0}}],
                "pair": [{"Sequence": {"id": "A", "type_id": 0}}, {"Sequence": {"id": "B", "type_id": 1}}],
                "special_tokens": {"ā": {"id": "ā", "ids": [1], "tokens": ["ā"]}}}


@pytest.mark.parametrize("config, post_processor, refused", [
    # LlamaTokenizerFast adds BOS by its own flag (default true): tokenizer.json must agree
    ({"tokenizer_class": "LlamaTokenizerFast", "bos_token": "ā"}, None, "add_bos_token is true"),
    ({"tokenizer_class": "LlamaTokenizerFast", "bos_token": "ā", "add_bos_token": False}, None, None),
    ({"tokenizer_class": "LlamaTokenizerFast", "bos_token": {"content": "ā"}}, BOS_TEMPLATE, None),
    ({"tokenizer_class": "LlamaTokenizer", "bos_token": "ā", "add_bos_token": False}, BOS_TEMPLATE,
     "add_bos_token is false"),
    ({"tokenizer_class": "LlamaTokenizerFast", "eos_token": "Ă", "bos_token": None, "add_eos_token": True}, None,
     "add_eos_token is true"),
    ({"tokenizer_class": "LlamaTokenizerFast", "bos_token": "ā", "add_bos_token": True}, None,
     "add_bos_token is true"),
    ({"tokenizer_class": "CodeLlamaTokenizerFast", "bos_token": "ā"}, None, "add_bos_token is true"),
    # add_eos_token alone: add_bos_token keeps its default (true), which tokenizer.json agrees with
    ({"tokenizer_class": "LlamaTokenizerFast", "bos_token": "ā", "eos_token": "Ă", "add_eos_token": False},
     BOS_TEMPLATE, None),
    # other classes use tokenizer.json as it is, in transformers 4 and 5 (tools/probe_tokenizer_flags.py)
    ({"tokenizer_class": "GPT2TokenizerFast", "bos_token": "ā", "add_bos_token": True}, None, None),
    ({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "ā"}, BOS_TEMPLATE, None),
    ({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "ā", "add_bos_token": True}, None, None),
    ({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "ā", "add_bos_token": False}, BOS_TEMPLATE, None),
    ({"tokenizer_class": "PreTrainedTokenizerFast", "bos_token": "ā", "eos_token": "Ă", "add_eos_token": True},
     BOS_TEMPLATE, None),
])
def test_tokenizer_config_flags_are_honoured_or_refused(tmp_path, config, post_processor, refused):
    from dsnot_ref.data import encode, load_tokenizer

    model = with_tokenizer_config(tmp_path, config, post_processor)
    if refused is None:
        tokenizer = load_tokenizer(model)
        assert (encode(tokenizer, "ab")[0] == 1) == (post_processor is not None)
        return
    with pytest.raises(UserError, match=refused) as info:
        load_tokenizer(model)
    assert "tokenizer_config.json" in str(info.value) and "\n" not in str(info.value)
    assert "transformers 4 follows the flag" in str(info.value)
