"""
The optional extras of ``setup.cfg``: which extra installs each optional module, and the one-line error that names
the ``pip install`` fixing a missing one. ``ACKTR``, ``RecurrentACKTR`` and ``KFAC`` need none of them.
"""

import importlib
import importlib.util
from types import ModuleType

import gymnasium as gym

#: The extra of ``setup.cfg`` that installs each optional top-level module the package (or what it runs) imports
EXTRA_OF_MODULE = {
    "rl_zoo3": "zoo",
    "optuna": "zoo",
    "huggingface_sb3": "zoo",
    "requests": "zoo",
    "pandas": "zoo",
    "matplotlib": "zoo",
    "minatar": "minatar",
    "ale_py": "atari",
    "cv2": "atari",
    "mujoco": "mujoco",
    "Box2D": "box2d",
    "psycopg2": "postgres",
}
#: The modules an environment family imports, by the module its gymnasium entry point lives in
ENV_MODULES = {
    "ale_py": ("ale_py", "cv2"),
    "gymnasium.envs.mujoco": ("mujoco",),
    "gymnasium.envs.box2d": ("Box2D",),
}


def install_hint(extra: str) -> str:
    """
    :param extra: An extra of ``setup.cfg`` (e.g. ``"zoo"``)
    :return: The command that installs it
    """
    return f'pip install "sb3-acktr[{extra}]"'


def missing_module_message(module: str, purpose: str) -> str:
    """
    :param module: A top-level module of :data:`EXTRA_OF_MODULE`
    :param purpose: What needs it (e.g. ``"python -m sb3_acktr.zoo"``)
    :return: One line naming the missing module and the ``pip install`` that fixes it
    """
    return f"{purpose} needs {module}, which is not installed: {install_hint(EXTRA_OF_MODULE[module])}"


def import_optional(name: str, purpose: str) -> ModuleType:
    """
    Import a module of an optional extra.

    :param name: The module (e.g. ``"rl_zoo3.train"``, or a module of the package that imports one)
    :param purpose: What needs it, for the error message
    :return: The module
    :raises ImportError: If a module of :data:`EXTRA_OF_MODULE` is missing, naming the extra that installs it (any
        other missing module is re-raised as is)
    """
    try:
        return importlib.import_module(name)
    except ImportError as error:
        # The module missing may be a dependency of the one asked for (rl_zoo3 imports requests)
        missing = (error.name or name).split(".")[0]
        if missing not in EXTRA_OF_MODULE:
            raise
        raise ImportError(missing_module_message(missing, purpose)) from error


def env_missing_modules(env_id: str) -> tuple[str, ...]:
    """
    The optional modules an environment needs and that are not installed: Atari's (``ale_py``, and OpenCV for SB3's
    ``AtariWrapper``), MuJoCo's and Box2D's, found from the module of its gymnasium entry point.

    :param env_id: A gymnasium id
    :return: The missing top-level modules, empty when nothing is missing or the id is none of these families
    """
    if env_id in gym.registry:
        entry_point = gym.registry[env_id].entry_point
        module = entry_point.split(":")[0] if isinstance(entry_point, str) else getattr(entry_point, "__module__", "")
    elif env_id.startswith("ALE/") or "NoFrameskip" in env_id:
        # Atari's ids are registered by ale_py itself, so they are unknown while it is missing
        module = "ale_py"
    else:
        return ()
    for family, needed in ENV_MODULES.items():
        if module == family or module.startswith(f"{family}."):
            return tuple(name for name in needed if importlib.util.find_spec(name) is None)
    return ()
