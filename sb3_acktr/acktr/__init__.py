from sb3_acktr.acktr.acktr import ACKTR
from sb3_acktr.acktr.policies import CnnPolicy, MlpPolicy, MultiInputPolicy
from sb3_acktr.acktr.recurrent_acktr import RecurrentACKTR

__all__ = ["ACKTR", "CnnPolicy", "MlpPolicy", "MultiInputPolicy", "RecurrentACKTR"]
