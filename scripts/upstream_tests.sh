#!/usr/bin/env bash
# An upstream project's own tests with one of this package's algorithms in place of one of theirs: a copy of the
# checkout's tests/ gets the given conftest.py (which rebinds the upstream class before the test modules import it),
# and pytest runs the test files that name the class. Called by sb3_tests_with_acktr.sh and
# contrib_tests_with_recurrent_acktr.sh, which hold the conftest.py and the class; runs in the current Python
# environment, one torch thread.
#
#   bash scripts/upstream_tests.sh USAGE TITLE CLASS CONFTEST CHECKOUT [pytest options]
set -euo pipefail

usage=$1 title=$2 class=$3 conftest=$4
shift 4
if [ $# -lt 1 ] || [ ! -d "$1/tests" ]; then
    echo "usage: $usage (the checkout must hold tests/)" >&2
    exit 2
fi
checkout=$(cd "$1" && pwd)
shift
work=$(mktemp -d)
cp -r "$checkout/tests" "$checkout/pyproject.toml" "$work/"
printf '%s\n' "$conftest" > "$work/tests/conftest.py"
cd "$work"
mapfile -t files < <(grep -l "$class" tests/test_*.py)
echo "$title, in $work: ${files[*]}"
OMP_NUM_THREADS=1 python -m pytest -p no:cacheprovider -rf "${files[@]}" "$@"
