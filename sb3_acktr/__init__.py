"""sb3-acktr: ACKTR and the K-FAC optimizer for Stable-Baselines3."""

import os
from typing import TYPE_CHECKING, Any

from sb3_acktr.kfac import KFAC

if TYPE_CHECKING:
    from sb3_acktr.acktr import ACKTR, CnnPolicy, MlpPolicy, MultiInputPolicy, RecurrentACKTR

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

#: Imported from ``sb3_acktr.acktr`` on first use (PEP 562), so that ``import sb3_acktr.kfac`` needs torch only
_ALGORITHMS = ("ACKTR", "RecurrentACKTR", "CnnPolicy", "MlpPolicy", "MultiInputPolicy")


def __getattr__(name: str) -> Any:
    if name in _ALGORITHMS:
        from sb3_acktr import acktr

        return getattr(acktr, name)
    raise AttributeError(f"module 'sb3_acktr' has no attribute {name!r}")


__all__ = ["ACKTR", "KFAC", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "RecurrentACKTR", "__version__"]
