"""Helpers shared by the test modules (tests import this module, never each other)."""

import re
from pathlib import Path

#: The repository root
ROOT = Path(__file__).parent.parent

# Shrink the budgets of the documentation's examples: the point is that they run, not that they learn
SHRINK = [
    (r"total_timesteps=[\d_]+", "total_timesteps=256"),
    (r"n_envs=32", "n_envs=2"),
    (r"n_steps=2500", "n_steps=64"),
    (r"for epoch in range\(50\)", "for epoch in range(3)"),
]


def python_examples(page: Path) -> list[str]:
    """
    :param page: A markdown page
    :return: Its ```` ```python ```` blocks, in order
    """
    return re.findall(r"^```python\n(.*?)^```", page.read_text(), flags=re.DOTALL | re.MULTILINE)


def shrunk_script(code: str) -> str:
    """
    :param code: A documentation example
    :return: The example with tiny budgets, on one torch thread
    """
    for pattern, replacement in SHRINK:
        code = re.sub(pattern, replacement, code)
    return "import torch\ntorch.set_num_threads(1)\n" + code
