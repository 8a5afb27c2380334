"""sb3-acktr: ACKTR and the K-FAC optimizer for Stable-Baselines3."""

import os

from sb3_acktr.acktr import ACKTR, CnnPolicy, MlpPolicy, MultiInputPolicy, RecurrentACKTR
from sb3_acktr.kfac import KFAC

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

__all__ = ["ACKTR", "KFAC", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "RecurrentACKTR", "__version__"]
