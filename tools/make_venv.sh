#!/bin/sh
# Build the project-local virtual environment: tools/make_venv.sh PYTHON VENV
#
# Creates VENV with PYTHON's venv module, then installs the package with its test and demo
# extras (the newest versions pip resolves). Where the system Python lacks ensurepip (Debian and
# Ubuntu without the python3-venv package) the venv is made without pip and the system's pip
# installs into it; where neither exists it stops with one line saying what to install.
set -eu
PYTHON="$1"
VENV="$2"

command -v "$PYTHON" >/dev/null 2>&1 || { echo "error: $PYTHON not found on PATH" >&2; exit 2; }
rm -rf "$VENV"
if "$PYTHON" -m venv "$VENV" 2>/dev/null; then
    PIP="$VENV/bin/python -m pip"
    $PIP install -q --upgrade pip
elif "$PYTHON" -m venv --without-pip "$VENV" && "$PYTHON" -m pip --version >/dev/null 2>&1; then
    PIP="$PYTHON -m pip --python $VENV/bin/python"
else
    rm -rf "$VENV"
    echo "error: $PYTHON cannot make a virtual environment with pip; on Debian/Ubuntu: apt install python3-venv" >&2
    exit 2
fi
$PIP install -q -e '.[dev,demo]'
