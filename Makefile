# Ponder: set-up, demo, tests and benchmarks. Every target builds .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DB := ponder-data/sample-index
DATA ?= ../shared/data

export RAY_USAGE_STATS_ENABLED := 0

.PHONY: venv demo test bench-index bench-eval clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $(STAMP)

## Index the bundled sample, show what was built, search it and answer a question.
demo: venv
	$(BIN)/ponder index sample/corpus --db $(DEMO_DB)
	$(BIN)/ponder stats --db $(DEMO_DB)
	$(BIN)/ponder search "Which woman portrayed Corliss Archer in the film Kiss and Tell?" --db $(DEMO_DB) --limit 3
	$(BIN)/ponder ask "What government position was held by the woman who portrayed Corliss Archer in the film Kiss and Tell?" --db $(DEMO_DB)

## The test suite (CI runs this).
test: venv
	$(BIN)/python -m pytest -q tests

## Index HotpotQA (4,858 paragraphs), then HotpotQA + 2Wiki (about 11k); writes bench/results/.
bench-index: venv
	$(BIN)/python bench/bench_index.py --data $(DATA) --out bench/results/index.json

## Fixed against adaptive at equal mean cost on HotpotQA-500 and TAT-QA dev; writes bench/results/.
bench-eval: venv
	$(BIN)/python bench/bench_eval.py --data $(DATA) --out bench/results/eval.json

clean:
	rm -rf ponder-data bench/results
