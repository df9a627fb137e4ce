# The two commands of the README. Each installs what it needs first.
PYTHON ?= python3
PIP    ?= $(PYTHON) -m pip

.PHONY: demo test test-slow install-dev

demo:
	$(PIP) install -q -e '.[demo]'
	$(PYTHON) -m dsnot_ref demo

install-dev:
	$(PIP) install -q -e '.[dev,demo]'

# Hypothesis runs its longer "ci" profile when CI=true (see tests/conftest.py).
test: install-dev
	$(PYTHON) -m pytest -q -m "not slow"

# Real-model tests (the demo model is fetched on first use; several minutes of CPU).
test-slow: install-dev
	$(PYTHON) -m pytest -q -m slow
