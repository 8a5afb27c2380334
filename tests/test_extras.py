"""A missing optional extra is named, with the pip install that fixes it (the fresh-install side: test_install.py)."""

import configparser
import importlib.util
import sys

import pytest

from sb3_acktr.extras import EXTRA_OF_MODULE, env_missing_modules, import_optional
from sb3_acktr.zoo import main as zoo_main
from tests.helpers import ROOT


def hide(monkeypatch, *modules: str) -> None:
    """Make ``import module`` fail as when the module is not installed."""
    for module in modules:
        for name in [name for name in sys.modules if name == module or name.startswith(f"{module}.")]:
            monkeypatch.delitem(sys.modules, name)
        monkeypatch.setitem(sys.modules, module, None)
    find_spec = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *args: None if name in modules else find_spec(name, *args))


def test_every_extra_is_in_setup_cfg():
    config = configparser.ConfigParser()
    config.read(ROOT / "setup.cfg")
    extras = set(config["options.extras_require"])
    assert set(EXTRA_OF_MODULE.values()) <= extras
    # "all" is every extra a user may run
    name, listed = config["options.extras_require"]["all"].strip().rstrip("]").split("[")
    assert name == "sb3-acktr"
    assert set(listed.split(",")) == extras - {"all", "docs", "tests"}


def test_import_optional(monkeypatch):
    assert import_optional("json", "a test").__name__ == "json"
    hide(monkeypatch, "rl_zoo3")
    with pytest.raises(ImportError, match=r'^the zoo needs rl_zoo3, which is not installed: pip install "sb3-acktr\[zoo\]"$'):
        import_optional("rl_zoo3.train", "the zoo")
    # A module outside the extras is not disguised as one
    with pytest.raises(ModuleNotFoundError, match="no_such_module"):
        import_optional("no_such_module", "a test")


def test_missing_dependency_of_the_module_is_named(monkeypatch):
    # The module asked for is there, one it imports is not: the message names that one
    monkeypatch.delitem(sys.modules, "sb3_acktr.zoo.results", raising=False)
    hide(monkeypatch, "huggingface_sb3")
    with pytest.raises(ImportError, match=r"^results needs huggingface_sb3, .*sb3-acktr\[zoo\]"):
        import_optional("sb3_acktr.zoo.results", "results")


def test_env_missing_modules(monkeypatch):
    assert env_missing_modules("CartPole-v1") == ()
    assert env_missing_modules("HalfCheetah-v5") == ()
    assert env_missing_modules("NoSuchEnv-v0") == ()
    hide(monkeypatch, "mujoco", "Box2D", "ale_py", "cv2")
    assert env_missing_modules("HalfCheetah-v5") == ("mujoco",)
    assert env_missing_modules("LunarLander-v3") == ("Box2D",)
    assert env_missing_modules("CartPole-v1") == ()
    # Atari's ids exist only once ale_py registered them
    assert env_missing_modules("BreakoutNoFrameskip-v4") == ("ale_py", "cv2")
    assert env_missing_modules("ALE/Pong-v5") == ("ale_py", "cv2")


def test_zoo_names_the_missing_env_extra(monkeypatch):
    # (MinAtar's: test_minatar.py)
    hide(monkeypatch, "mujoco")
    with pytest.raises(
        SystemExit, match=r'^error: HalfCheetah-v5 needs mujoco, which is not installed: pip install "sb3-acktr\[mujoco\]"$'
    ):
        zoo_main(["train", "--algo", "acktr", "--env", "HalfCheetah-v5"])


def test_zoo_without_rl_zoo(monkeypatch):
    hide(monkeypatch, "rl_zoo3")
    with pytest.raises(
        SystemExit, match=r'^error: sb3_acktr.zoo needs rl_zoo3, which is not installed: pip install "sb3-acktr\[zoo\]"$'
    ):
        zoo_main(["train", "--algo", "acktr", "--env", "CartPole-v1"])
    with pytest.raises(SystemExit, match=r"rl_zoo3, which is not installed"):
        zoo_main(["results", "--env", "CartPole-v1"])
