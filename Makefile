# Two commands from a fresh clone: `make demo` and `make test`. Both build .venv themselves.
# `make help` lists the targets.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_INDEX := .demo-index
# This project's machine images carry the CPU wheel of this torch release; where pip can see it,
# the install names it (scripts/torch_pin.py), elsewhere pip installs its default build.
TORCH_VERSION := 2.13.0
TORCH_PIN = $(shell $(BIN)/python scripts/torch_pin.py $(TORCH_VERSION))
PIP := $(BIN)/python -m pip install --quiet --disable-pip-version-check
# Tests never reach the Hugging Face hub; set either variable to override.
export HF_HUB_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.DEFAULT_GOAL := help
.PHONY: help demo test lint cog clean

help:  ## List the targets
	@echo "Targets:"
	@grep -E '^[a-z]+:.*## ' $(MAKEFILE_LIST) | sed -E 's/^([a-z]+):.*## (.*)/  make \1\t\2/' | expand -t 16

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

# The stamps make a second run skip pip; they are newer than pyproject.toml until it changes.
$(VENV)/.installed: pyproject.toml | $(BIN)/python
	@echo "Installing searchkit into $(VENV) (the first time: a few minutes, PyTorch is large)"
	$(PIP) -e . $(TORCH_PIN)
	touch $@

$(VENV)/.installed-test: pyproject.toml $(VENV)/.installed
	$(PIP) -e ".[test]" $(TORCH_PIN)
	touch $@

demo: $(VENV)/.installed  ## Install into .venv, index sample_corpus/ into .demo-index, run example queries
	@echo "== index (unchanged files are skipped on a second run)"
	$(BIN)/searchkit index sample_corpus/ --index $(DEMO_INDEX) --model all-MiniLM-L6-v2
	@echo; echo "== hybrid (the default mode: meaning + BM25 keywords), each hit with its best passage"
	$(BIN)/searchkit query "emancipation of slaves during the civil war" --index $(DEMO_INDEX) -k 3
	@echo; echo "== keyword only (BM25; the model is not loaded)"
	$(BIN)/searchkit query "gold standard" --mode keyword --index $(DEMO_INDEX) -k 3
	@echo; echo "== filters, applied before ranking: Markdown front matter, path globs"
	$(BIN)/searchkit query "the war" --where 'year>=1900' --index $(DEMO_INDEX) -k 3
	$(BIN)/searchkit query "indian tribes" --mode keyword --path '*/19th-century/*' --index $(DEMO_INDEX) -k 3
	@echo; echo "== a PDF (and a Word document) in the corpus: a PDF passage names its page"
	$(BIN)/searchkit query "terrorist training camps" --index $(DEMO_INDEX) -k 3
	@echo
	@echo "Next, try:"
	@echo "  $(BIN)/searchkit query \"your question\" --index $(DEMO_INDEX) --json"
	@echo "  $(BIN)/searchkit query \"who spoke about the gold standard\" --chunks --index $(DEMO_INDEX)"
	@echo "  $(BIN)/searchkit query --help        # modes, filters, reranking, passages"
	@if $(BIN)/searchkit serve --help >/dev/null 2>&1; then \
	  echo "  $(BIN)/searchkit serve --index $(DEMO_INDEX)   # the HTTP API over this index"; fi
	@echo "  $(BIN)/searchkit index PATH...        # your own folders (into .searchkit by default)"
	@echo "  make test                                # the test suite"

test: $(VENV)/.installed-test  ## Install with the test extras into .venv and run the test suite
	$(BIN)/python -m pytest -q $(PYTEST_ARGS)

lint: $(VENV)/.installed-test  ## ruff check, and check that README.md's command reference matches --help
	$(BIN)/ruff check .
	$(BIN)/cog -I . --check README.md

cog: $(VENV)/.installed-test  ## Regenerate README.md's command reference from --help
	$(BIN)/cog -I . -r README.md

clean:  ## Remove .venv and .demo-index
	rm -rf $(VENV) $(DEMO_INDEX)
