SHELL=/bin/bash
LINT_PATHS=sb3_acktr/ tests/

pytest:
	python3 -m pytest --cov=sb3_acktr -v -m "not expensive" --durations=15

pytest-expensive:
	python3 -m pytest -v -m expensive --durations=15

type:
	mypy ${LINT_PATHS}

lint:
	# stop the build if there are Python syntax errors or undefined names
	# see https://www.flake8rules.com/
	ruff check ${LINT_PATHS} --select=E9,F63,F7,F82 --output-format=full
	# exit-zero treats all errors as warnings.
	ruff check ${LINT_PATHS} --exit-zero --output-format=concise

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

.PHONY: pytest pytest-expensive type lint format check-codestyle commit-checks
