"""Record the config.json keys of transformers' configuration classes (developer tool, run by hand).

Needs transformers (no torch); the package and its tests never import it. For the installed
transformers version it writes, into data/transformers_config_keys.json, the keys that
``to_dict()`` of each supported family's default configuration gives, and those of the generic
configuration class every family inherits, under the version's name. Snapshots of other versions
already in the file are kept, so running it in one environment per transformers version
accumulates them. tests/test_config_keys.py asserts that every key recorded there is classified
in ``dsnot_ref.config.CONFIG_KEYS`` (or refused through ``REFUSED_UNLESS``).

    python tools/snapshot_config_keys.py            # add or replace the installed version's entry
"""

from __future__ import annotations

import json
import os
from pathlib import Path

import transformers

ROOT = Path(__file__).resolve().parents[1]
SNAPSHOT = ROOT / "data" / "transformers_config_keys.json"
# architecture (as in dsnot_ref.config.ARCHITECTURES) -> transformers configuration class name
CONFIG_CLASSES = {
    "LlamaForCausalLM": "LlamaConfig",
    "MistralForCausalLM": "MistralConfig",
    "Qwen2ForCausalLM": "Qwen2Config",
    "OPTForCausalLM": "OPTConfig",
}


def generic_config_class():
    """The base configuration class (``PreTrainedConfig`` from transformers 5, ``PretrainedConfig`` before)."""
    return getattr(transformers, "PreTrainedConfig", None) or transformers.PretrainedConfig


def keys_of(config_class) -> list[str]:
    return sorted(config_class().to_dict())


def snapshot() -> dict:
    """This transformers version's keys: ``generic`` and one sorted list per architecture."""
    generic = keys_of(generic_config_class())
    families = {arch: keys_of(getattr(transformers, name)) for arch, name in CONFIG_CLASSES.items()}
    return {"generic": generic, "families": families}


def main() -> None:
    recorded = json.loads(SNAPSHOT.read_text()) if SNAPSHOT.exists() else {}
    recorded[transformers.__version__] = snapshot()
    text = json.dumps(dict(sorted(recorded.items())), indent=1, sort_keys=True) + "\n"
    temporary = SNAPSHOT.with_suffix(".json.tmp")
    temporary.write_text(text)
    os.replace(temporary, SNAPSHOT)
    print(f"{SNAPSHOT}: transformers {transformers.__version__} recorded")


if __name__ == "__main__":
    main()
