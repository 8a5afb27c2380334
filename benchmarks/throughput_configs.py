"""
The configurations ``throughput.py`` times (the same for A2C and ACKTR), and how each becomes an env, a model and a
timed ``learn()``.
"""

import time
from dataclasses import dataclass, field
from typing import Any

import torch as th

# Small networks on 2 shared cores: one torch thread (see DESIGN.md, "Speed")
th.set_num_threads(1)

import gymnasium as gym  # noqa: E402
import yaml  # noqa: E402
from stable_baselines3 import A2C  # noqa: E402
from stable_baselines3.common.env_util import make_atari_env, make_vec_env  # noqa: E402
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm  # noqa: E402
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack  # noqa: E402

from sb3_acktr import ACKTR  # noqa: E402
from sb3_acktr.minatar import ENV_ID_PREFIX, MinAtarCNN, MinAtarWrapper, register_minatar_envs  # noqa: E402
from sb3_acktr.zoo import HYPERPARAMS  # noqa: E402

ALGOS: dict[str, type[OnPolicyAlgorithm]] = {"A2C": A2C, "ACKTR": ACKTR}


def zoo_kfac_kwargs(env_id: str) -> dict[str, Any]:
    """
    :param env_id: An env with an entry in the package's ``hyperparams/acktr.yml``
    :return: The entry's K-FAC keys (``kfac_*``): the K-FAC settings the zoo trains ACKTR with on that env
    """
    entry = yaml.safe_load(HYPERPARAMS.read_text())[env_id]
    return {key: value for key, value in entry.items() if key.startswith("kfac_")}


@dataclass
class Config:
    """
    One throughput configuration: the same for A2C and ACKTR.

    :param name: Label in the tables
    :param group: Which question it answers (``"zoo"``, ``"batch"``, ``"width"``, ``"atari"``, ``"variant"``, ``"minatar"``)
    :param env_id: Gymnasium id (Atari ids get ``make_atari_env`` + ``VecFrameStack(4)``)
    :param n_envs: Number of envs
    :param n_steps: Steps per env per update
    :param updates: Updates per timed ``learn()`` (10 = ACKTR's inverse interval: each timed run then holds exactly
        one inverse refresh)
    :param repeats: Timed runs of each algorithm, interleaved
    :param width: Hidden width (``net_arch=[width, width]``) or None for SB3's default
    :param acktr_kwargs: Extra ACKTR arguments (variants)
    """

    name: str
    group: str
    env_id: str
    n_envs: int
    n_steps: int
    updates: int = 10
    repeats: int = 3
    width: int | None = None
    acktr_kwargs: dict[str, Any] = field(default_factory=dict)

    @property
    def batch(self) -> int:
        return self.n_envs * self.n_steps

    @property
    def atari(self) -> bool:
        return "NoFrameskip" in self.env_id

    @property
    def minatar(self) -> bool:
        return self.env_id.startswith(ENV_ID_PREFIX)

    @property
    def policy(self) -> str:
        return "CnnPolicy" if self.atari or self.minatar else "MlpPolicy"


def full_configs() -> list[Config]:
    """The configurations of the full run (protocol: zoo settings, batch and width scaling, Atari)."""
    return [
        # The zoo entry's batch (8 envs, ACKTR's 20 steps) and K-FAC keys (statistics every 2nd update, ...)
        Config(
            "CartPole-v1 8x20",
            "zoo",
            "CartPole-v1",
            8,
            20,
            updates=100,
            repeats=5,
            acktr_kwargs=zoo_kfac_kwargs("CartPole-v1"),
        ),
        # ACKTR's defaults at the same batch (the statistics at every update)
        Config("CartPole-v1 8x20, ACKTR's defaults", "variant", "CartPole-v1", 8, 20, updates=100, repeats=5),
        # MuJoCo: the rollout dominates and the inverses are cheap (milliseconds per refresh, see the breakdown), so
        # more, shorter interleaved runs (5 updates) rather than whole inverse intervals: steadier on shared cores
        Config("HalfCheetah-v5 1x1000", "batch", "HalfCheetah-v5", 1, 1000, updates=5, repeats=5),
        Config("HalfCheetah-v5 1x2500", "batch", "HalfCheetah-v5", 1, 2500, updates=5, repeats=5),
        Config("HalfCheetah-v5 1x25000", "batch", "HalfCheetah-v5", 1, 25000, updates=1, repeats=3),
        Config("HalfCheetah-v5 1x2500, [256, 256]", "width", "HalfCheetah-v5", 1, 2500, updates=5, repeats=5, width=256),
        Config("HalfCheetah-v5 1x2500, [1024, 1024]", "width", "HalfCheetah-v5", 1, 2500, updates=5, repeats=5, width=1024),
        Config("PongNoFrameskip-v4 16x5", "atari", "PongNoFrameskip-v4", 16, 5),
        Config("PongNoFrameskip-v4 32x5", "atari", "PongNoFrameskip-v4", 32, 5),
        Config("PongNoFrameskip-v4 32x20", "atari", "PongNoFrameskip-v4", 32, 20),
        Config(
            "PongNoFrameskip-v4 32x20, kfac_stats_update=4",
            "variant",
            "PongNoFrameskip-v4",
            32,
            20,
            acktr_kwargs=dict(kfac_stats_update=4),
        ),
        Config(
            "PongNoFrameskip-v4 32x20, kfac_stats_samples=160",
            "variant",
            "PongNoFrameskip-v4",
            32,
            20,
            acktr_kwargs=dict(kfac_stats_samples=160),
        ),
        Config(
            "PongNoFrameskip-v4 32x20, kfac_weight_sharing=reduce",
            "variant",
            "PongNoFrameskip-v4",
            32,
            20,
            acktr_kwargs=dict(kfac_weight_sharing="reduce"),
        ),
        Config(
            "PongNoFrameskip-v4 32x20, kfac_weight_sharing=reduce + kfac_stats_samples=160",
            "variant",
            "PongNoFrameskip-v4",
            32,
            20,
            acktr_kwargs=dict(kfac_weight_sharing="reduce", kfac_stats_samples=160),
        ),
        Config("MinAtar/Breakout-v1 16x20", "minatar", "MinAtar/Breakout-v1", 16, 20, updates=20, repeats=5),
        Config(
            "MinAtar/Breakout-v1 16x20, kfac_weight_sharing=reduce",
            "minatar",
            "MinAtar/Breakout-v1",
            16,
            20,
            updates=20,
            repeats=5,
            acktr_kwargs=dict(kfac_weight_sharing="reduce"),
        ),
        Config(
            "PongNoFrameskip-v4 32x20, kfac_stats_samples=80",
            "variant",
            "PongNoFrameskip-v4",
            32,
            20,
            acktr_kwargs=dict(kfac_stats_samples=80),
        ),
        Config(
            "PongNoFrameskip-v4 32x20, kfac_stats_samples=160 + kfac_stats_update=4",
            "variant",
            "PongNoFrameskip-v4",
            32,
            20,
            acktr_kwargs=dict(kfac_stats_samples=160, kfac_stats_update=4),
        ),
    ]


def quick_configs() -> list[Config]:
    """``--quick``: CartPole only, tiny budgets, one repeat."""
    return [
        Config(
            "CartPole-v1 8x20", "zoo", "CartPole-v1", 8, 20, updates=10, repeats=1, acktr_kwargs=zoo_kfac_kwargs("CartPole-v1")
        )
    ]


def make_env(config: Config, seed: int) -> VecEnv:
    """
    The vectorized env of a configuration (Atari: ``make_atari_env`` + ``VecFrameStack(4)``, as rl-zoo's atari entry).

    :param config: The configuration
    :param seed: Env seed
    :return: The env
    """
    if config.atari:
        import ale_py

        gym.register_envs(ale_py)
        return VecFrameStack(make_atari_env(config.env_id, n_envs=config.n_envs, seed=seed), n_stack=4)
    if config.minatar:
        register_minatar_envs()
        return make_vec_env(config.env_id, n_envs=config.n_envs, seed=seed, wrapper_class=MinAtarWrapper)
    return make_vec_env(config.env_id, n_envs=config.n_envs, seed=seed)


def make_model(algo: str, config: Config, seed: int) -> OnPolicyAlgorithm:
    """
    A2C or ACKTR with their default hyperparameters, except the configuration's ``n_steps`` and network.

    :param algo: ``"A2C"`` or ``"ACKTR"``
    :param config: The configuration
    :param seed: Seed of the model and its env
    :return: The model
    """
    policy_kwargs: dict[str, Any] = {} if config.width is None else dict(net_arch=[config.width, config.width])
    if config.minatar:
        policy_kwargs["features_extractor_class"] = MinAtarCNN
    kwargs = dict(config.acktr_kwargs) if algo == "ACKTR" else {}
    return ALGOS[algo](
        config.policy,
        make_env(config, seed),
        n_steps=config.n_steps,
        policy_kwargs=policy_kwargs,
        seed=seed,
        device="cpu",
        **kwargs,
    )


def timed_learn(model: OnPolicyAlgorithm, updates: int, ranks: int = 1) -> float:
    """
    Wall-clock seconds of ``model.learn()`` over ``updates`` more updates (rollouts continue, no env reset).

    :param model: The model
    :param updates: Number of updates (rollout + train)
    :param ranks: Number of ranks of a data-parallel run, whose ``learn()`` counts the steps of all of them
    :return: Seconds
    """
    batch = model.n_steps * model.n_envs * ranks
    start = time.perf_counter()
    model.learn(updates * batch, reset_num_timesteps=False)
    return time.perf_counter() - start
