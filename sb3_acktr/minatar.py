"""
MinAtar (Young & Tian 2019, "MinAtar: An Atari-Inspired Testbed for Thorough and Reproducible Reinforcement Learning
Experiments") for SB3 and the zoo: its games registered in gymnasium, channel-first float observations, and the
paper's network as a features extractor. Needs the ``minatar`` extra for the games themselves::

    pip install "sb3-acktr[minatar]"

In Python::

    import gymnasium as gym
    from sb3_acktr import ACKTR
    from sb3_acktr.minatar import MinAtarCNN, MinAtarWrapper, register_minatar_envs

    register_minatar_envs()
    env = MinAtarWrapper(gym.make("MinAtar/Breakout-v1"))
    model = ACKTR("CnnPolicy", env, policy_kwargs=dict(features_extractor_class=MinAtarCNN))

From the zoo (``hyperparams/acktr.yml`` has entries for Breakout, SpaceInvaders and Asterix)::

    python -m sb3_acktr.zoo train --algo acktr --env MinAtar/Breakout-v1
"""

import dataclasses

import gymnasium as gym
import numpy as np
import torch as th
from gymnasium import spaces
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn

from sb3_acktr.extras import import_optional

#: The prefix of MinAtar's gymnasium ids (``MinAtar/<Game>-v0``: all 6 actions, ``-v1``: the game's minimal set)
ENV_ID_PREFIX = "MinAtar/"
#: MinAtar's grid: every game is 10 x 10 cells, one boolean channel per kind of object
GRID_SIZE = (10, 10)
#: Steps after which an episode is truncated. MinAtar sets none, and a policy that stays at Seaquest's surface (where
#: oxygen does not run down and no enemy reaches) never ends an episode; ALE's cap of 108,000 frames, i.e. 27,000
#: agent steps at Atari's frame skip of 4, is taken as 27,000 MinAtar steps (one frame each).
MAX_EPISODE_STEPS = 27_000


def register_minatar_envs() -> None:
    """
    Register MinAtar's games in gymnasium (``MinAtar/{Asterix,Breakout,Freeway,Seaquest,SpaceInvaders}-v0/-v1``),
    with a time limit of :data:`MAX_EPISODE_STEPS` steps (truncation, which SB3 bootstraps through).

    Idempotent. ``python -m sb3_acktr.zoo`` calls it for ``--env MinAtar/...``. Ids that ``minatar.gym.register_envs()``
    registered before (without a time limit) get the limit too.

    :raises ImportError: If the ``minatar`` package is not installed, naming the extra that installs it
    """
    minatar_gym = import_optional("minatar.gym", "sb3_acktr.minatar")
    if f"{ENV_ID_PREFIX}Breakout-v1" not in gym.registry:
        minatar_gym.register_envs()
    for env_id, spec in list(gym.registry.items()):
        if env_id.startswith(ENV_ID_PREFIX) and spec.max_episode_steps is None:
            gym.registry[env_id] = dataclasses.replace(spec, max_episode_steps=MAX_EPISODE_STEPS)


class MinAtarWrapper(gym.ObservationWrapper):
    """
    MinAtar's observations as SB3's CNN policies take them: ``(C, 10, 10)`` float32 in {0, 1} instead of
    ``(10, 10, C)`` booleans. Not an image space for SB3 (not uint8), so it is neither transposed nor divided by 255.

    :param env: A MinAtar environment (``gym.make("MinAtar/<Game>-v1")``)
    """

    def __init__(self, env: gym.Env) -> None:
        space = env.observation_space
        if not (
            isinstance(space, spaces.Box)
            and space.dtype == np.bool_
            and space.shape[:2] == GRID_SIZE
            and len(space.shape) == 3
        ):
            env_id = env.spec.id if env.spec is not None else type(env.unwrapped).__name__
            raise ValueError(
                f"MinAtarWrapper wraps MinAtar environments, whose observations are a Box of shape (10, 10, C) and dtype "
                f"bool (channel last); {env_id} has {space}. Use it with gym.make('MinAtar/<Game>-v1') "
                f"(after register_minatar_envs()), or leave it out for other environments."
            )
        super().__init__(env)
        n_channels = space.shape[2]
        self.observation_space = spaces.Box(0.0, 1.0, shape=(n_channels, *GRID_SIZE), dtype=np.float32)

    def observation(self, observation: np.ndarray) -> np.ndarray:
        """
        :param observation: A ``(10, 10, C)`` boolean grid
        :return: The ``(C, 10, 10)`` float32 grid
        """
        return np.moveaxis(observation, -1, 0).astype(np.float32)


class MinAtarCNN(BaseFeaturesExtractor):
    """
    The network of the MinAtar paper (its DQN and actor-critic agents): Conv2d(C, 16, 3, stride 1) → ReLU →
    Linear(16·8·8 = 1024, 128) → ReLU. Use it with ``CnnPolicy`` on :class:`MinAtarWrapper` observations.

    :param observation_space: A channel-first ``(C, H, W)`` Box, H and W >= 3
    :param features_dim: Width of the linear layer (128 in the paper)
    :param n_filters: Number of convolution filters (16 in the paper)
    """

    def __init__(self, observation_space: gym.Space, features_dim: int = 128, n_filters: int = 16) -> None:
        if (
            not (isinstance(observation_space, spaces.Box) and len(observation_space.shape) == 3)
            or min(observation_space.shape[1:]) < 3
        ):
            raise ValueError(
                f"MinAtarCNN needs channel-first (C, H, W) observations with H, W >= 3, got {observation_space}. "
                "Wrap MinAtar environments in sb3_acktr.minatar.MinAtarWrapper (env_wrapper in the zoo's yaml)."
            )
        super().__init__(observation_space, features_dim)
        n_channels = observation_space.shape[0]
        self.cnn = nn.Sequential(nn.Conv2d(n_channels, n_filters, kernel_size=3, stride=1), nn.ReLU(), nn.Flatten())
        with th.no_grad():
            n_flatten = self.cnn(th.zeros(1, *observation_space.shape)).shape[1]
        self.linear = nn.Sequential(nn.Linear(n_flatten, features_dim), nn.ReLU())

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.linear(self.cnn(observations))
