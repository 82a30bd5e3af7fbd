# The two set-up commands: `make serve` and `make test`. Each creates .venv, installs the project
# and builds the model repository when it is missing, so both work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REPO ?= model_repository
EXTRAS ?= cpu,models,dev

.PHONY: venv models serve test lint format lock

# The serving dependencies come from the hash-checked lock (as in the runtime image); the build
# and dev extras (torch is installed from a pinned version) are resolved on top of them.
$(BIN)/taggram: pyproject.toml requirements/serve-cpu.lock
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet --require-hashes -r requirements/serve-cpu.lock
	$(BIN)/pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

venv: $(BIN)/taggram

# Rebuilt when the converter, the architectures or a committed trained model change.
$(REPO)/.complete: $(shell find taggram/models taggram/repository.py -type f -not -name '*.pyc') | $(BIN)/taggram
	$(BIN)/taggram build-models --repository $(REPO)

models: $(REPO)/.complete

serve: venv models
	$(BIN)/taggram serve --model-repository $(REPO)

test: venv models
	$(BIN)/pytest $(PYTEST_ARGS)

lint: venv
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# Re-resolve the serving locks after changing the base, server, cpu or gpu dependencies
# (CPU image: Python 3.11; GPU image: Ubuntu 24.04's Python 3.12).
lock: venv
	$(BIN)/uv pip compile pyproject.toml --extra cpu --generate-hashes --python-version 3.11 \
		--python-platform x86_64-manylinux_2_28 --no-header --quiet -o requirements/serve-cpu.lock
	$(BIN)/uv pip compile pyproject.toml --extra gpu --generate-hashes --python-version 3.12 \
		--python-platform x86_64-manylinux_2_28 --no-header --quiet -o requirements/serve-gpu.lock

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
