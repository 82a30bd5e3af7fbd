# The two set-up commands: `make serve` and `make test`. Each creates .venv, installs the project
# and builds the model repository when it is missing, so both work on a fresh clone.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
REPO ?= model_repository
EXTRAS ?= cpu,models,dev

.PHONY: venv models serve test lint format

$(BIN)/taggram: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
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

format: venv
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .
