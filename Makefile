# The two commands of the README. Each works on a stock Linux whose system Python is
# "externally managed" (PEP 668): everything is installed into a project-local virtual
# environment, .venv, made with the python3 on PATH. It is reused while pyproject.toml is
# unchanged and rebuilt when pyproject.toml is newer than it.
PYTHON ?= python3
VENV   ?= .venv
VPY    := $(VENV)/bin/python
STAMP  := $(VENV)/.dsnot_ref-installed

.PHONY: demo test test-slow results venv clean-venv

demo: $(STAMP)
	$(VPY) -m dsnot_ref demo

# Hypothesis runs its longer "ci" profile when CI=true (see tests/conftest.py).
test: $(STAMP)
	$(VPY) -m pytest -q -m "not slow"

# Real-model tests (the demo model is fetched on first use; several minutes of CPU).
test-slow: $(STAMP)
	$(VPY) -m pytest -q -m slow

# Every published results table, rewritten from the raw files in benchmarks/results/.
results: $(STAMP)
	$(VPY) benchmarks/make_results.py

venv: $(STAMP)

# The venv is rebuilt from scratch whenever pyproject.toml changes, so it never carries
# packages an older pyproject.toml asked for. tools/make_venv.sh says what it needs.
$(STAMP): pyproject.toml tools/make_venv.sh
	sh tools/make_venv.sh "$(PYTHON)" "$(VENV)"
	touch $(STAMP)

clean-venv:
	rm -rf $(VENV)
