from sb3_acktr.acktr.acktr import ACKTR
from sb3_acktr.acktr.policies import CnnPolicy, MlpPolicy, MultiInputPolicy

__all__ = ["ACKTR", "CnnPolicy", "MlpPolicy", "MultiInputPolicy"]
