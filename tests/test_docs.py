"""Every Python example of the documentation and the README runs (with tiny budgets)."""

import subprocess
import sys
import textwrap

import pytest

from tests.helpers import ROOT, python_examples, shrunk_script

PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]
PAGES = [page for page in PAGES if "_build" not in page.parts]


def examples() -> list:
    params = []
    for page in PAGES:
        blocks = python_examples(page)
        params += [pytest.param(code, id=f"{page.relative_to(ROOT)}:{index}") for index, code in enumerate(blocks)]
    return params


def test_kfac_docstring_example_runs(tmp_path):
    """The classifier example of KFAC's docstring (the block after "Example, a classifier outside RL::")."""
    from sb3_acktr import KFAC

    assert KFAC.__doc__ is not None
    block = KFAC.__doc__.split("Example, a classifier outside RL::\n", 1)[1].split("\n    :param", 1)[0]
    code = textwrap.dedent(block)
    assert "optimizer.update_curvature(" in code and "optimizer.step()" in code
    test_example_runs(code, tmp_path)


def test_every_page_is_found():
    names = {page.relative_to(ROOT).as_posix() for page in PAGES}
    assert {"README.md", "docs/guide/quickstart.md", "docs/modules/acktr.md", "docs/modules/kfac.md"} <= names
    assert len(examples()) >= 8


@pytest.mark.parametrize("code", examples())
def test_example_runs(code, tmp_path):
    script = tmp_path / "example.py"
    script.write_text(shrunk_script(code))
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert result.returncode == 0, f"{code}\n{result.stdout[-2000:]}\n{result.stderr[-3000:]}"
