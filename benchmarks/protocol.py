"""
Constants of the sample-efficiency protocol (``/work/shared/benchmark-protocol.md``, summarised in docs/benchmark.md),
shared by ``sample_efficiency.py`` (which runs) and ``report.py`` (which summarises). No heavy import here.
"""

from pathlib import Path

#: Mean evaluation return that counts as "solved" (the protocol's thresholds)
THRESHOLDS: dict[str, float] = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "LunarLander-v3": 200.0,
    "Pendulum-v1": -200.0,
    # Not in the protocol's list: gymnasium's reward_threshold for these
    "MountainCar-v0": -110.0,
    "MountainCarContinuous-v0": 90.0,
    "InvertedPendulum-v5": 950.0,
    "Swimmer-v5": 360.0,
    "Ant-v5": 6000.0,
    "BipedalWalker-v3": 300.0,
    "BipedalWalkerHardcore-v3": 300.0,
    "LunarLanderContinuous-v3": 200.0,
    "HalfCheetah-v5": 1500.0,
    "Hopper-v5": 2000.0,
    "Walker2d-v5": 2000.0,
    "InvertedDoublePendulum-v5": 9100.0,
    "Reacher-v5": -7.0,
    # Set before the runs (gymnasium gives none for Humanoid and HumanoidStandup, 0 for Pusher, which no policy reaches):
    # surviving a fifth of an episode while walking, standing up (lying still earns about 35k per episode), and a puck
    # pushed most of the way
    "Humanoid-v5": 1000.0,
    "HumanoidStandup-v5": 100000.0,
    "Pusher-v5": -30.0,
    "PongNoFrameskip-v4": 18.0,
    "BreakoutNoFrameskip-v4": 100.0,
    # MinAtar (set before the runs, from the MinAtar paper's 5M-frame curves and a 300k-step A2C run here at 6.8)
    "MinAtar/Breakout-v1": 10.0,
    "MinAtar/SpaceInvaders-v1": 50.0,
    "MinAtar/Asterix-v1": 10.0,
    # Set before the runs from simple policies played here (5 episodes each): Freeway's chicken always moving up crosses
    # 9-39 times per 2500-step episode (mean 25.6), so 40 needs a policy that waits for gaps; random play scores 0.4 on
    # Freeway and 0 on Seaquest (dead within about 15 steps), where 10 is ten enemies shot per episode
    "MinAtar/Freeway-v1": 40.0,
    "MinAtar/Seaquest-v1": 10.0,
    # gymnasium's reward_threshold (every track tile visited, few frames spent)
    "CarRacing-v3": 900.0,
    # Partially observable (velocities masked): the thresholds of the tasks with velocities
    "CartPoleNoVel-v1": 475.0,
    "PendulumNoVel-v1": -200.0,
    "LunarLanderNoVel-v3": 200.0,
}
# The MuJoCo -v4 ids (rl-zoo's names, aliases of the -v5 entries in hyperparams/acktr.yml): the same tasks, the same
# thresholds
THRESHOLDS.update({env_id[:-1] + "4": threshold for env_id, threshold in THRESHOLDS.items() if env_id.endswith("-v5")})

#: Reported, but not counted in the median ratio over tasks: classic control (tuned A2C solves it early already) and
#: entries measured against A2C only to choose or check them (InvertedPendulum-v5, Swimmer-v5, Ant-v5, BipedalWalker-v3,
#: BipedalWalkerHardcore-v3, Humanoid-v5, HumanoidStandup-v5, Pusher-v5, MinAtar's Freeway and Seaquest)
SANITY_CHECKS = (
    "CartPole-v1",
    "Acrobot-v1",
    "MountainCar-v0",
    "MountainCarContinuous-v0",
    "InvertedPendulum-v5",
    "Swimmer-v5",
    "Ant-v5",
    "BipedalWalker-v3",
    "BipedalWalkerHardcore-v3",
    "Humanoid-v5",
    "HumanoidStandup-v5",
    "Pusher-v5",
    "MinAtar/Freeway-v1",
    "MinAtar/Seaquest-v1",
)

#: MinAtar's games, every one run with the same budget and evaluation period
MINATAR_GAMES = ("Breakout", "SpaceInvaders", "Asterix", "Freeway", "Seaquest")

#: Environment steps per run when ``--budget`` is not given
DEFAULT_BUDGETS: dict[str, int] = {
    "CartPole-v1": 100_000,
    "CartPoleNoVel-v1": 100_000,
    "Acrobot-v1": 200_000,
    # The ACKTR entry's n_timesteps (rl-zoo's A2C entry says 100k)
    "MountainCarContinuous-v0": 300_000,
    # Solved within it by both algorithms' zoo settings (gymnasium's reward_threshold, 950, of a 1000 maximum)
    "InvertedPendulum-v5": 300_000,
    **{f"MinAtar/{game}-v1": 5_000_000 for game in MINATAR_GAMES},
}
#: Budget of every other env (the zoo's MuJoCo entries, the protocol's "1M steps")
DEFAULT_BUDGET = 1_000_000

#: Evaluation period in environment steps when ``--eval-freq`` is not given: fine enough to resolve the early phase
DEFAULT_EVAL_FREQS: dict[str, int] = {
    "CartPole-v1": 2_000,
    "CartPoleNoVel-v1": 2_000,
    "Acrobot-v1": 2_000,
    # Both algorithms' entries held 90 from the first evaluation at 10k on the median: 2k tells them apart
    "MountainCarContinuous-v0": 2_000,
    **{f"MinAtar/{game}-v1": 50_000 for game in MINATAR_GAMES},
    # An evaluation is 10 episodes of 500 decisions (1000 frames at the entries' frame skip of 2): every 10k steps
    # it would cost half as many frames as training, which Box2D renders at about 150 per second on one core here
    "CarRacing-v3": 50_000,
}
DEFAULT_EVAL_FREQ = 10_000

#: Episodes per evaluation, one per evaluation env, each env reset with ``eval_seed + i``
N_EVAL_EPISODES = 10
#: Seed of the evaluation envs: the same start states for every algorithm, training seed and evaluation
EVAL_SEED = 1_000_000

#: Where the runs write by default, and where the report writes its tables and plots
RESULTS_DIR = Path(__file__).resolve().parent / "results" / "sample_efficiency"
DOCS_STATIC = Path(__file__).resolve().parent.parent / "docs" / "_static"


def run_label(algo: str, variant: str | None) -> str:
    """
    The name a run is reported under: the algorithm, or ``{algo}-{variant}`` for a run with overridden hyperparameters.

    :param algo: ``"acktr"``, ``"a2c"`` or ``"ppo"``
    :param variant: The variant's name, or None
    :return: The label
    """
    return algo if variant is None else f"{algo}-{variant}"


def run_name(env_id: str, algo: str, seed: int) -> str:
    """
    The file stem of one run's results: ``{env_id}__{algo}__seed{seed}``, a ``/`` of the env id as ``-``
    (``MinAtar/Breakout-v1``).

    :param env_id: Environment id
    :param algo: The run's label (:func:`run_label`)
    :param seed: Training seed
    :return: The stem
    """
    return f"{env_id.replace('/', '-')}__{algo}__seed{seed}"
