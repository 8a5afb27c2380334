"""
The package as a user installs it: a wheel built from the checkout, in a fresh virtual environment. Without extras,
ACKTR and KFAC work (the README's examples) and the zoo names the extra it needs; with ``[zoo]``, the zoo trains.
"""

import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch as th

from tests.helpers import ROOT, python_examples, shrunk_script

# Installs from the package registry: a few minutes at most with pip's cache
pytestmark = pytest.mark.timeout(900)


def run(command: list, cwd: Path, check: bool = True) -> subprocess.CompletedProcess:
    result = subprocess.run([str(part) for part in command], cwd=cwd, capture_output=True, text=True, timeout=900)
    if check:
        assert result.returncode == 0, f"{command}\n{result.stdout[-3000:]}\n{result.stderr[-3000:]}"
    return result


@pytest.fixture(scope="module")
def fresh_install(tmp_path_factory) -> tuple[Path, Path]:
    """A venv with the CPU torch of this one (installed first, as the README says), then the wheel, no extras."""
    root = tmp_path_factory.mktemp("install")
    run([sys.executable, "-m", "pip", "wheel", "--no-deps", "--wheel-dir", root / "dist", ROOT], cwd=root)
    (wheel,) = (root / "dist").glob("sb3_acktr-*.whl")
    venv.create(root / "venv", with_pip=True)
    python = root / "venv" / "bin" / "python"
    run([python, "-m", "pip", "install", "-q", f"torch=={th.__version__.split('+')[0]}"], cwd=root)
    run([python, "-m", "pip", "install", "-q", wheel], cwd=root)
    return python, wheel


def test_without_extras(fresh_install, tmp_path):
    python, _ = fresh_install
    # No extra came in through a dependency
    for module in ("rl_zoo3", "ale_py", "mujoco", "minatar", "cv2"):
        assert run([python, "-c", f"import {module}"], cwd=tmp_path, check=False).returncode != 0, module
    # The README's usage example (ACKTR on CartPole, save, load, predict) and its KFAC example
    readme = python_examples(ROOT / "README.md")
    usage = next(code for code in readme if "ACKTR(" in code)
    classifier = next(code for code in readme if "KFAC(" in code)
    for code in (usage, classifier):
        (tmp_path / "example.py").write_text(shrunk_script(code))
        run([python, "example.py"], cwd=tmp_path)
    # The shipped zoo config is in the wheel
    run([python, "-c", "from sb3_acktr.zoo import HYPERPARAMS; assert HYPERPARAMS.is_file(), HYPERPARAMS"], cwd=tmp_path)
    # The zoo and MinAtar name the extra that installs them, in one line
    result = run(
        [python, "-m", "sb3_acktr.zoo", "train", "--algo", "acktr", "--env", "CartPole-v1"], cwd=tmp_path, check=False
    )
    assert result.returncode == 1
    assert result.stderr.strip() == 'error: sb3_acktr.zoo needs rl_zoo3, which is not installed: pip install "sb3-acktr[zoo]"'
    code = "from sb3_acktr.minatar import register_minatar_envs; register_minatar_envs()"
    result = run([python, "-c", code], cwd=tmp_path, check=False)
    assert 'ImportError: sb3_acktr.minatar needs minatar, which is not installed: pip install "sb3-acktr[minatar]"' in (
        result.stderr
    )


def test_with_zoo_extra(fresh_install, tmp_path):
    """Runs after test_without_extras (file order): it adds the extra to the same environment."""
    python, wheel = fresh_install
    run([python, "-m", "pip", "install", "-q", f"{wheel}[zoo]"], cwd=tmp_path)
    train = [python, "-m", "sb3_acktr.zoo", "train", "--algo", "acktr", "--num-threads", "1", "-f", "logs", "-n", "2000"]
    run([*train, "--env", "CartPole-v1"], cwd=tmp_path)
    assert (tmp_path / "logs" / "acktr" / "CartPole-v1_1" / "CartPole-v1.zip").is_file()
    # An Atari game without the atari extra
    result = run([*train, "--env", "PongNoFrameskip-v4"], cwd=tmp_path, check=False)
    assert result.returncode == 1
    assert (
        result.stderr.strip()
        == 'error: PongNoFrameskip-v4 needs ale_py, which is not installed: pip install "sb3-acktr[atari]"'
    )
