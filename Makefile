# Ponder: set-up, demo, tests and benchmarks. Every target builds .venv first.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_DB := ponder-data/sample-index
DATA ?= ../shared/data

export RAY_USAGE_STATS_ENABLED := 0

.PHONY: venv demo test bench-index bench-eval benchmarks benchmarks-index benchmarks-train benchmarks-sweep benchmarks-doc clean

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

## docs/benchmarks.md and docs/img/*.png from scratch: index (when missing), train the
## learned controller on the train split, sweep the heldout split, write the page.
## LEARNED=0 leaves out the learned-controller steps and policy.
BENCH_WORK ?= ponder-data/bench
CONTROLLER ?= $(BENCH_WORK)/controller.model
LEARNED ?= 1
SWEEP_LIMIT ?= 100
TRAIN_LIMIT ?= 100
BENCH_SETS := hotpotqa tatqa

benchmarks: venv
	rm -rf bench/results/sweep
	$(MAKE) benchmarks-index
ifeq ($(LEARNED),1)
	$(MAKE) benchmarks-train
endif
	$(MAKE) benchmarks-sweep
	$(MAKE) benchmarks-doc

benchmarks-index: venv
	$(BIN)/python bench/bench_sweep.py index --data $(DATA) --work $(BENCH_WORK)

## Learned-controller steps: adaptive episodes on the train split with step traces and
## counterfactual probes, the traces exported, then a controller trained on them. Old
## traces are dropped first so the model sees only this run's episodes.
benchmarks-train: venv
	rm -f $(CONTROLLER)
	for name in $(BENCH_SETS); do \
		rm -rf $(BENCH_WORK)/$$name-index/episodes.lance $(BENCH_WORK)/$$name-index/steps.lance; \
		$(BIN)/ponder eval $(DATA)/$$name-dev.jsonl --db $(BENCH_WORK)/$$name-index --split train --limit $(TRAIN_LIMIT) \
			--policy adaptive --budget 4000 --probe-rate 0.2 --probe-seed 0 --json > $(BENCH_WORK)/$$name-train.json || exit 1; \
		$(BIN)/ponder traces export --db $(BENCH_WORK)/$$name-index --out $(BENCH_WORK)/$$name-traces.jsonl --format jsonl || exit 1; \
	done
	$(BIN)/ponder controller train $(foreach name,$(BENCH_SETS),$(BENCH_WORK)/$(name)-traces.jsonl) --out $(CONTROLLER)

benchmarks-sweep: venv
	$(BIN)/python bench/bench_sweep.py sweep --data $(DATA) --work $(BENCH_WORK) --limit $(SWEEP_LIMIT) \
		$(if $(filter 1,$(LEARNED)),--controller $(CONTROLLER),)

benchmarks-doc: venv
	$(BIN)/python bench/bench_sweep.py doc --limit $(SWEEP_LIMIT)

clean:
	rm -rf ponder-data bench/results
