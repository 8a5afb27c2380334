SHELL=/bin/bash
LINT_PATHS=sb3_acktr/ tests/ benchmarks/ docs/conf.py
VENV ?= .venv
VENV_PYTHON = $(VENV)/bin/python
# CPU build of torch, installed before anything that depends on torch: an unpinned torch
# (or a range that admits a newer release) may pull a multi-GB CUDA build
TORCH_VERSION ?= 2.13.0

# --- The two commands of the README: each sets up .venv (once) and runs ---

$(VENV)/.installed: setup.cfg pyproject.toml
	python3 -m venv $(VENV)
	$(VENV_PYTHON) -m pip install --upgrade pip
	$(VENV_PYTHON) -m pip install torch==$(TORCH_VERSION)
	$(VENV_PYTHON) -m pip install -e ".[all,tests,docs]"
	touch $@

setup: $(VENV)/.installed

# Train ACKTR on CartPole-v1 with the zoo defaults (hyperparams/acktr.yml), then print and plot the evaluations
train: setup
	$(VENV_PYTHON) -m sb3_acktr.zoo train --algo acktr --env CartPole-v1 --seed 0 --num-threads 1 \
		--eval-freq 5000 --eval-episodes 10 --log-folder logs
	$(VENV_PYTHON) -m sb3_acktr.zoo results --algo acktr --env CartPole-v1 --log-folder logs

# The test suite, as CI runs it (learning runs over several seeds are marked expensive and left out)
test: setup
	$(VENV_PYTHON) -m pytest --cov=sb3_acktr -v -m "not expensive" --durations=15

# A local PostgreSQL server (Debian's package) for Optuna studies shared by several -optimize workers
postgres-start:
	bash scripts/postgres.sh start .postgres 5433

postgres-stop:
	bash scripts/postgres.sh stop .postgres

test-expensive: setup
	$(VENV_PYTHON) -m pytest -v -s -m expensive --durations=15

# --- SB3's targets, with whatever python3 / tools are on PATH ---

pytest:
	python3 -m pytest --cov=sb3_acktr -v -m "not expensive" --durations=15

type:
	mypy ${LINT_PATHS}

lint:
	# Every finding of the configured rules (pyproject.toml) fails the build
	ruff check ${LINT_PATHS} --output-format=full

format:
	# Sort imports
	ruff check --select I ${LINT_PATHS} --fix
	# Reformat using black
	black ${LINT_PATHS}

check-codestyle:
	# Sort imports
	ruff check --select I ${LINT_PATHS}
	# Reformat using black
	black --check ${LINT_PATHS}

commit-checks: format type lint

# The documentation site, warnings as errors (broken references fail)
doc:
	python3 -m sphinx -W --keep-going -b html docs docs/_build/html

# The pages as a reader sees them: headless Chromium (Debian's chromium) screenshots of the built docs
SCREENSHOT_PAGES = index benchmark modules/acktr modules/recurrent_acktr modules/kfac guide/install guide/quickstart
doc-screenshots: doc
	mkdir -p docs/_build/screenshots
	for page in $(SCREENSHOT_PAGES); do \
		chromium --headless --no-sandbox --disable-gpu --hide-scrollbars --window-size=1600,2400 \
			--screenshot=docs/_build/screenshots/$$(echo $$page | tr / -).png file://$(CURDIR)/docs/_build/html/$$page.html; \
	done

.PHONY: setup train test test-expensive postgres-start postgres-stop pytest type lint format check-codestyle commit-checks doc doc-screenshots
