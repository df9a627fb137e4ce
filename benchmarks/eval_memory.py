"""Peak resident memory of reading an evaluation text: `eval --max-windows 1` on a 10 MB text, and
tokenising a whole text in pieces against one encode of it.

Each measurement runs in a fresh child process and reports its own VmHWM (/proc/self/status;
getrusage's ru_maxrss would carry the parent's high-water mark across fork + exec). The text is
the bundled evaluation corpus repeated to the size asked. Writes benchmarks/results/eval_memory.json:

    python benchmarks/eval_memory.py [--model smollm2-135m] [--mb 10] [--whole-mb 2.5]
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import tempfile
from pathlib import Path

from provenance import provenance, stamped

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "eval_memory.json"

PEAK = """
def peak_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
"""

EVAL_CHILD = PEAK + """
import sys, time
from dsnot_ref.cli import main
start = time.perf_counter()
rc = main(sys.argv[1:])
print(f"PEAK {peak_mib():.1f} {time.perf_counter() - start:.2f}", file=sys.stderr)
sys.exit(rc)
"""

TOKENS_CHILD = PEAK + """
import sys, time
from dsnot_ref import data
from dsnot_ref.demo_model import fetch_demo_model
from pathlib import Path
model, path, how = sys.argv[1], sys.argv[2], sys.argv[3]
model_dir = Path(model) if Path(model).is_dir() else fetch_demo_model(model)
tokenizer = data.load_tokenizer(model_dir)
start = time.perf_counter()
if how == "whole":
    n = len(tokenizer.encode("\\n\\n".join(data.read_texts(path))).ids)
else:
    n = len(data.eval_tokens(tokenizer, path))
print(f"PEAK {peak_mib():.1f} {time.perf_counter() - start:.2f} {n}", file=sys.stderr)
"""


def corpus(path: Path, megabytes: float) -> Path:
    sys.path.insert(0, str(ROOT))
    from dsnot_ref import data  # noqa: PLC0415

    text = "\n\n".join(data.read_texts(data.BUNDLED_EVAL))
    size = int(megabytes * 1_000_000)
    path.write_text((text * (size // len(text) + 1))[:size], encoding="utf-8")
    return path


def child(code: str, *args: str) -> list[str]:
    proc = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT)
    if proc.returncode != 0:
        raise SystemExit(proc.stderr[-2000:])
    return proc.stderr.strip().splitlines()[-1].split()[1:]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="smollm2-135m")
    parser.add_argument("--mb", type=float, default=10.0, help="size of the text for eval --max-windows 1")
    parser.add_argument("--whole-mb", type=float, default=2.5, help="size of the text tokenised whole and in pieces")
    args = parser.parse_args()
    stamp = provenance([sys.executable, *sys.argv])
    with tempfile.TemporaryDirectory() as tmp:
        big = corpus(Path(tmp) / "big.txt", args.mb)
        peak, seconds = child(EVAL_CHILD, "eval", "--model", args.model, "--dataset", str(big), "--max-windows", "1",
                              "--quiet")
        record = {"eval_max_windows_1": {"text_mb": args.mb, "peak_rss_mib": float(peak), "seconds": float(seconds)}}
        small = corpus(Path(tmp) / "small.txt", args.whole_mb)
        for how in ("pieces", "whole"):
            peak, seconds, n = child(TOKENS_CHILD, args.model, str(small), how)
            record[f"tokenise_{how}"] = {"text_mb": args.whole_mb, "peak_rss_mib": float(peak),
                                         "seconds": float(seconds), "tokens": int(n)}
    RESULTS.write_text(json.dumps(stamped(record, stamp), indent=2) + "\n", encoding="utf-8")
    print(json.dumps(record, indent=2))


if __name__ == "__main__":
    main()
