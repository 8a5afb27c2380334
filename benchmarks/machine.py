"""The context every benchmark figure needs: versions, CPU, torch threads, load, commit and command."""

import datetime
import os
import platform
import subprocess
import sys
from pathlib import Path
from typing import Any

import gymnasium as gym
import numpy as np
import stable_baselines3
import torch as th

import sb3_acktr


def versions() -> dict[str, str]:
    """The versions of Python and of the libraries the figures depend on (those installed)."""
    found = {
        "python": platform.python_version(),
        "torch": th.__version__,
        "stable_baselines3": stable_baselines3.__version__,
        "sb3_acktr": sb3_acktr.__version__,
        "gymnasium": gym.__version__,
        "numpy": np.__version__,
    }
    for package in ("rl_zoo3", "mujoco", "ale_py", "minatar"):
        try:
            found[package] = getattr(__import__(package), "__version__", "installed")
        except ImportError:
            pass
    return found


def git_commit() -> str:
    """The checkout's commit (short hash, ``+`` appended when tracked files differ from it; "" outside a checkout)."""

    def git(*args: str) -> str:
        return subprocess.run(["git", *args], capture_output=True, text=True, cwd=Path(__file__).parent, check=False).stdout

    try:
        commit, changed = git("rev-parse", "--short", "HEAD").strip(), git("status", "--porcelain", "--untracked-files=no")
    except OSError:
        return ""
    return f"{commit}+" if commit and changed.strip() else commit


def machine_info() -> dict[str, Any]:
    """Versions, CPU and torch threads: the context every figure needs."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as file:
            cpu = next((line.split(":", 1)[1].strip() for line in file if line.startswith("model name")), cpu)
    except OSError:
        pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": th.get_num_threads(),
        "load_average_start": list(os.getloadavg()),
        "git_commit": git_commit(),
        "versions": versions(),
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def machine_line(meta: dict[str, Any]) -> str:
    """
    :param meta: What :func:`machine_info` returned when the figures were measured
    :return: The one line of context a results table starts with
    """
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    return (
        f"{meta['date']}; {meta['cpu']} ({meta['cpu_count']} shared cores), torch threads {meta['torch_threads']}; "
        f"{versions}; commit {meta['git_commit']}; load average at start {meta['load_average_start'][0]:.2f}."
    )
