# The two commands of the README. Each creates .venv when it is missing and installs the
# project into it; nothing else is needed on a fresh machine.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: tune test install benchmark clean-store

tune: $(STAMP)
	$(BIN)/python scripts/tune.py

test: $(STAMP)
	$(BIN)/python -m pytest

install: $(STAMP)

# Reinstall when the project's metadata changes.
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $(STAMP)

benchmark: $(STAMP)
	$(BIN)/python benchmarks/contrastive_vs_ce.py

# Empties the default local MLflow store (mlruns/) and the tuner folder.
clean-store:
	find mlruns -mindepth 1 ! -name .gitkeep -delete
	rm -rf tuner
