"""
Compute cost of ACKTR against SB3's A2C, measured as the benchmark protocol asks (docs/benchmark.md).

Every figure is a ratio taken in one run: for each configuration A2C and ACKTR get the same env, policy, ``n_envs``,
``n_steps``, device and seed, one short warm-up each, then ``model.learn()`` is timed alternately
(A2C, ACKTR, A2C, ACKTR, ...) and the median steps/s of each gives the ratio ACKTR / A2C. Then one ACKTR update is
split into phases by wrapping the functions that do the work (timers installed by this script, nothing in the
package is changed), and the NatureCNN costs at batch 640 are timed on their own.

    python benchmarks/throughput.py --out benchmarks/results/throughput.json   # full run, ~20 min on 1 CPU thread
    python benchmarks/throughput.py --quick                                     # CartPole only, a few seconds
"""

import argparse
import datetime
import functools
import inspect
import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch as th

# Small networks on 2 shared cores: one torch thread (see DESIGN.md, "Speed")
th.set_num_threads(1)

import gymnasium as gym  # noqa: E402
import stable_baselines3  # noqa: E402
from gymnasium import spaces  # noqa: E402
from protocol import table_header  # noqa: E402
from stable_baselines3 import A2C  # noqa: E402
from stable_baselines3.common.base_class import BaseAlgorithm  # noqa: E402
from stable_baselines3.common.env_util import make_atari_env, make_vec_env  # noqa: E402
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm  # noqa: E402
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy  # noqa: E402
from stable_baselines3.common.vec_env import VecEnv, VecFrameStack  # noqa: E402
from torch import nn  # noqa: E402
from torch.nn import functional as F  # noqa: E402

import sb3_acktr  # noqa: E402
from sb3_acktr import ACKTR, KFAC  # noqa: E402
from sb3_acktr.kfac import factors as kfac_factors  # noqa: E402
from sb3_acktr.kfac import inverse as kfac_inverse  # noqa: E402
from sb3_acktr.kfac import optimizer as kfac_optimizer  # noqa: E402
from sb3_acktr.minatar import ENV_ID_PREFIX, MinAtarCNN, MinAtarWrapper, register_minatar_envs  # noqa: E402

ALGOS: dict[str, type[OnPolicyAlgorithm]] = {"A2C": A2C, "ACKTR": ACKTR}


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
        Config("CartPole-v1 8x20", "zoo", "CartPole-v1", 8, 20, updates=100, repeats=5),
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
    return [Config("CartPole-v1 8x20", "zoo", "CartPole-v1", 8, 20, updates=10, repeats=1)]


# --------------------------------------------------------------------------------------------------------------------
# Timers installed around the package's functions (nothing in sb3_acktr is edited)
# --------------------------------------------------------------------------------------------------------------------


class PhaseTimer:
    """
    Wall-clock time per phase, from wrappers around functions and methods.

    Each wrapped call adds its *exclusive* time (its own time minus that of wrapped calls nested inside it) to its
    phase, so the phases of one update add up to the update's time. Several functions may share one phase.
    """

    def __init__(self) -> None:
        self.exclusive: dict[str, float] = defaultdict(float)
        self.calls: Counter[str] = Counter()
        self._children: list[float] = []

    def wrap(self, phase: str, function: Callable[..., Any]) -> Callable[..., Any]:
        """
        :param phase: The phase the calls are charged to
        :param function: The function to time
        :return: A timed version of ``function``
        """

        @functools.wraps(function)
        def timed(*args: Any, **kwargs: Any) -> Any:
            self._children.append(0.0)
            start = time.perf_counter()
            try:
                return function(*args, **kwargs)
            finally:
                elapsed = time.perf_counter() - start
                children = self._children.pop()
                self.exclusive[phase] += elapsed - children
                self.calls[phase] += 1
                if self._children:
                    self._children[-1] += elapsed

        return timed

    @contextmanager
    def installed(self, targets: list[tuple[Any, str, str]]) -> Iterator["PhaseTimer"]:
        """
        Replace ``owner.attribute`` by a timed version for the duration of the block.

        :param targets: ``(owner, attribute, phase)``; ``owner`` is a class (the class that defines the method)
            or a module
        """
        saved: list[tuple[Any, str, Any]] = []
        try:
            for owner, attribute, phase in targets:
                original = owner.__dict__[attribute] if isinstance(owner, type) else getattr(owner, attribute)
                saved.append((owner, attribute, original))
                if isinstance(original, staticmethod):
                    replacement: Any = staticmethod(self.wrap(phase, original.__func__))
                else:
                    replacement = self.wrap(phase, original)
                setattr(owner, attribute, replacement)
            yield self
        finally:
            for owner, attribute, original in reversed(saved):
                setattr(owner, attribute, original)


#: Phase names, in table order
ROLLOUT = "rollout collection (env steps + policy forward)"
FORWARD = "loss forward (evaluate_actions)"
BACKWARD = "loss backward"
FISHER_BACKWARD = "Fisher backward (update_curvature's autograd.grad)"
FACTORS = "factor computation (A, G of the batch)"
AVERAGES = "running averages + finiteness checks"
INVERSES = "inverses (cholesky_inverses / eigen)"
PRECONDITION = "preconditioning"
TRUST_REGION = "trust region (_trust_region_scales)"
STEP = "step: Δᵀ∇, momentum, weight update"
OPTIMIZER = "optimizer step (RMSprop)"
CLIP = "gradient clipping"
EXACT_KL = "exact-KL diagnostic forward"
OTHER_TRAIN = "other (train(): buffer, losses, logging)"
OTHER_LEARN = "other (learn loop, callbacks)"
PHASES = [
    ROLLOUT,
    FORWARD,
    BACKWARD,
    FISHER_BACKWARD,
    FACTORS,
    AVERAGES,
    INVERSES,
    PRECONDITION,
    TRUST_REGION,
    STEP,
    OPTIMIZER,
    CLIP,
    EXACT_KL,
    OTHER_TRAIN,
    OTHER_LEARN,
]


def timer_targets(model: BaseAlgorithm) -> list[tuple[Any, str, str]]:
    """The functions wrapped for the per-phase breakdown of one update of ``model`` (A2C or ACKTR)."""
    targets: list[tuple[Any, str, str]] = [
        (OnPolicyAlgorithm, "collect_rollouts", ROLLOUT),
        (type(model), "train", OTHER_TRAIN),
        (ActorCriticPolicy, "evaluate_actions", FORWARD),
        (ActorCriticPolicy, "get_distribution", EXACT_KL),
        (th.Tensor, "backward", BACKWARD),
        (th.nn.utils, "clip_grad_norm_", CLIP),
    ]
    if isinstance(model, ACKTR):
        targets += [
            (KFAC, "update_curvature", AVERAGES),
            (th.autograd, "grad", FISHER_BACKWARD),
            (KFAC, "_batch_factors", FACTORS),
            (KFAC, "step", STEP),
            (KFAC, "_group_updates", PRECONDITION),
            (kfac_optimizer, "precondition_cholesky", PRECONDITION),
            (kfac_optimizer, "precondition_eigen", PRECONDITION),
            (kfac_optimizer, "cholesky_inverses", INVERSES),
            (kfac_optimizer, "eigen_decomposition", INVERSES),
            (KFAC, "_trust_region_scales", TRUST_REGION),
        ]
    else:
        optimizer_class = type(model.policy.optimizer)
        defining = next(klass for klass in optimizer_class.__mro__ if "step" in klass.__dict__)
        targets.append((defining, "step", OPTIMIZER))
    return targets


# --------------------------------------------------------------------------------------------------------------------
# Envs, models, timed learn()
# --------------------------------------------------------------------------------------------------------------------


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


def timed_learn(model: OnPolicyAlgorithm, updates: int) -> float:
    """
    Wall-clock seconds of ``model.learn()`` over ``updates`` more updates (rollouts continue, no env reset).

    :param model: The model
    :param updates: Number of updates (rollout + train)
    :return: Seconds
    """
    batch = model.n_steps * model.n_envs
    start = time.perf_counter()
    model.learn(updates * batch, reset_num_timesteps=False)
    return time.perf_counter() - start


def measure_throughput(config: Config, seed: int) -> dict[str, Any]:
    """
    Interleaved timing of A2C and ACKTR on one configuration.

    :param config: The configuration
    :param seed: Seed of both models and envs
    :return: Per-run seconds, median steps/s of each, the ratio of the medians and the per-pair ratios
    """
    models = {algo: make_model(algo, config, seed) for algo in ALGOS}

    def run(algo: str, updates: int) -> float:
        return timed_learn(models[algo], updates)

    for algo in ALGOS:  # warm-up: one update each
        run(algo, 1)
    seconds: dict[str, list[float]] = {algo: [] for algo in ALGOS}
    for _ in range(config.repeats):
        for algo in ALGOS:
            seconds[algo].append(run(algo, config.updates))
    acktr_optimizer = models["ACKTR"].policy.optimizer
    assert isinstance(acktr_optimizer, KFAC)
    for model in models.values():
        model.get_env().close()  # type: ignore[union-attr]
    steps = config.updates * config.batch
    steps_per_s = {algo: [steps / s for s in seconds[algo]] for algo in ALGOS}
    medians = {algo: statistics.median(values) for algo, values in steps_per_s.items()}
    pair_ratios = [acktr / a2c for a2c, acktr in zip(steps_per_s["A2C"], steps_per_s["ACKTR"], strict=True)]
    kfac_update = models["ACKTR"].kfac_update  # type: ignore[attr-defined]
    return {
        **asdict(config),
        "batch": config.batch,
        "policy": config.policy,
        "steps_per_run": steps,
        "seconds": seconds,
        "steps_per_s": steps_per_s,
        "median_steps_per_s": medians,
        "seconds_per_update": {algo: config.batch / medians[algo] for algo in ALGOS},
        "ratio": medians["ACKTR"] / medians["A2C"],
        "pair_ratios": pair_ratios,
        # ACKTR refreshes its inverses every kfac_update updates; a run of fewer updates may hold none
        "acktr_updates_total": acktr_optimizer.steps,
        "acktr_inverse_interval": kfac_update,
    }


def measure_breakdown(config: Config, seed: int, updates: int, repeats: int) -> dict[str, Any]:
    """
    Per-phase time of one update, for ACKTR and for A2C: ``repeats`` interleaved runs of ``updates`` updates each
    (after a warm-up), the mean per update within a run, the median over runs per phase.

    :param config: The configuration
    :param seed: Seed
    :param updates: Updates per run (ACKTR's inverse interval, 10: each run then holds exactly one inverse refresh)
    :param repeats: Interleaved runs of each algorithm
    :return: ``{"ACKTR": {"phases": {phase: seconds per update}, ...}, "A2C": {...}}``; ``seconds_per_update`` is the
        sum of the phase medians, ``run_seconds_per_update`` the wall-clock time per update of each run
    """
    models = {algo: make_model(algo, config, seed) for algo in ALGOS}
    for model in models.values():
        timed_learn(model, 1)  # warm-up; ACKTR's optimizer.steps is then 1: every 10 updates hold one refresh
    runs: dict[str, list[dict[str, float]]] = {algo: [] for algo in ALGOS}
    walls: dict[str, list[float]] = {algo: [] for algo in ALGOS}
    for _ in range(repeats):
        for algo, model in models.items():
            timer = PhaseTimer()
            with timer.installed(timer_targets(model)):
                wall = timed_learn(model, updates)
            phases = {phase: timer.exclusive[phase] / updates for phase in PHASES if phase in timer.exclusive}
            phases[OTHER_LEARN] = wall / updates - sum(phases.values())
            runs[algo].append(phases)
            walls[algo].append(wall / updates)
    for model in models.values():
        model.get_env().close()  # type: ignore[union-attr]
    result: dict[str, Any] = {"name": config.name, "batch": config.batch, "updates": updates, "repeats": repeats}
    for algo in ALGOS:
        medians = {phase: statistics.median(run[phase] for run in runs[algo]) for phase in runs[algo][0]}
        result[algo] = {
            "phases": medians,
            "seconds_per_update": sum(medians.values()),
            "run_seconds_per_update": walls[algo],
            "runs": runs[algo],
        }
    return result


# --------------------------------------------------------------------------------------------------------------------
# NatureCNN at batch 640: where ACKTR's extra time goes
# --------------------------------------------------------------------------------------------------------------------


def gram(rows: th.Tensor) -> th.Tensor:
    """``rowsᵀ rows``, the sum of outer products behind a Kronecker factor."""
    return rows.t() @ rows


def patch_matrix_gram(module: nn.Module, inputs: th.Tensor) -> th.Tensor:
    """``Σ ā āᵀ`` through the materialised patch matrix (how KFAC computed it before ``input_second_moment``)."""
    return gram(kfac_factors.layer_input_rows(module, inputs)[0])


def g_factor_sum(module: nn.Module, grad_output: th.Tensor, batch: int, weight_sharing: str = "expand") -> th.Tensor:
    """The G factor's sum of outer products, as ``KFAC`` computes it (rows, then ``rowsᵀ rows``)."""
    return gram(kfac_factors.layer_output_grad_rows(module, grad_output, batch, weight_sharing)[0])


def median_time(function: Callable[[], Any], repeats: int) -> float:
    """Median wall-clock seconds of ``function()`` over ``repeats`` calls, after one warm-up call."""
    function()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        function()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


PATCHES = "A with the patch matrix (layer_input_rows + rowsᵀ rows)"
A_FACTOR = "A (input_second_moment)"
A_REDUCE = "A, reduce form (input_second_moment)"
G_REDUCE = "G rows + matmul, reduce form"


def cnn_microbenchmark(batch: int = 640, repeats: int = 3, seed: int = 0) -> dict[str, Any]:
    """
    Time A2C's forward+backward of SB3's NatureCNN policy (Pong: 4x84x84, 6 actions) at ``batch``, and ACKTR's extra
    costs on the same batch, piece by piece, with the package's own functions.

    :param batch: Batch size (640: the paper's ACKTR Atari batch, 32 envs x 20 steps)
    :param repeats: Timed repetitions (median)
    :param seed: Seed of the random batch
    :return: Seconds per piece, per layer where it applies
    """
    th.manual_seed(seed)
    observation_space = spaces.Box(0, 255, (4, 84, 84), np.uint8)
    action_space = spaces.Discrete(6)
    policy = ActorCriticCnnPolicy(observation_space, action_space, lr_schedule=lambda _: 7e-4)
    optimizer = KFAC(policy, lr=0.25)
    rmsprop = th.optim.RMSprop(policy.parameters(), lr=7e-4, alpha=0.99, eps=1e-5)
    observations = th.randint(0, 256, (batch, 4, 84, 84)).float()
    actions = th.randint(0, 6, (batch,))
    advantages, returns = th.randn(batch), th.randn(batch)

    def a2c_loss() -> th.Tensor:
        values, log_prob, entropy = policy.evaluate_actions(observations, actions)
        assert entropy is not None
        return -(advantages * log_prob).mean() - 0.01 * entropy.mean() + 0.25 * F.mse_loss(returns, values.flatten())

    def a2c_forward_backward() -> None:
        policy.zero_grad()
        a2c_loss().backward()

    result: dict[str, Any] = {"batch": batch, "repeats": repeats}
    result["A2C forward"] = median_time(lambda: a2c_loss(), repeats)
    result["A2C forward+backward"] = median_time(a2c_forward_backward, repeats)
    result["A2C RMSprop step"] = median_time(rmsprop.step, repeats)

    def fisher_loss(values: th.Tensor) -> th.Tensor:
        distribution = policy.action_dist
        sampled = distribution.sample().detach()
        return -distribution.log_prob(sampled).mean() + 0.5 * F.mse_loss(values, values.detach() + th.randn_like(values))

    def recorded_forward() -> tuple[th.Tensor, list[Any]]:
        with optimizer.record_curvature():
            values, _, _ = policy.evaluate_actions(observations, actions)
        records = [(layer, inputs, output) for layer in optimizer.layers for inputs, output in layer.records]
        for layer in optimizer.layers:
            layer.records = []
        return values.flatten(), records

    result["ACKTR forward with recording hooks"] = median_time(recorded_forward, repeats)
    values, records = recorded_forward()
    loss = fisher_loss(values)
    grads = th.autograd.grad(loss, [output for _, _, output in records], retain_graph=True)
    result["Fisher backward (to layer outputs)"] = median_time(
        lambda: th.autograd.grad(loss, [output for _, _, output in records], retain_graph=True), repeats
    )
    layers: dict[str, dict[str, Any]] = {}
    for (layer, inputs, _), grad in zip(records, grads, strict=True):
        module = layer.module
        a_sum, a_norm = kfac_factors.input_second_moment(module, inputs)
        g_rows, _ = kfac_factors.layer_output_grad_rows(module, grad, batch)
        entry: dict[str, Any] = {"type": type(module).__name__, "A dim": a_sum.shape[0], "G dim": g_rows.shape[1]}
        entry[A_FACTOR] = median_time(functools.partial(kfac_factors.input_second_moment, module, inputs), repeats)
        if isinstance(module, nn.Conv2d):
            # The materialised (N·T, C·kh·kw + 1) patch matrix that input_second_moment avoids, for comparison
            rows, _ = kfac_factors.layer_input_rows(module, inputs)
            entry["A patch matrix MB"] = rows.numel() * rows.element_size() / 2**20
            entry[PATCHES] = median_time(functools.partial(patch_matrix_gram, module, inputs), repeats)
            entry["A max relative difference"] = float((gram(rows) - a_sum).abs().max() / a_sum.abs().max())
        entry["G rows + matmul"] = median_time(functools.partial(g_factor_sum, module, grad, batch), repeats)
        if isinstance(module, nn.Conv2d):
            entry[A_REDUCE] = median_time(
                functools.partial(kfac_factors.input_second_moment, module, inputs, weight_sharing="reduce"), repeats
            )
            entry[G_REDUCE] = median_time(functools.partial(g_factor_sum, module, grad, batch, "reduce"), repeats)
        a_factor = kfac_factors.symmetric_mean(a_sum, a_norm)
        g_factor = kfac_factors.symmetric_mean(gram(g_rows), g_rows.shape[0])
        entry["inverses (cholesky_inverses, A and G)"] = median_time(
            functools.partial(kfac_inverse.cholesky_inverses, a_factor, g_factor, 0.01), repeats
        )
        a_inv, g_inv = kfac_inverse.cholesky_inverses(a_factor, g_factor, 0.01)
        gradient = th.randn(g_factor.shape[0], a_factor.shape[0])
        entry["preconditioning (G⁻¹ ∇ A⁻¹)"] = median_time(
            functools.partial(kfac_inverse.precondition_cholesky, gradient, a_inv, g_inv), repeats
        )
        layers[layer.name] = entry
    result["layers"] = layers
    with th.no_grad():
        result["exact-KL diagnostic forward (no grad)"] = median_time(lambda: policy.get_distribution(observations), repeats)

    def total(key: str) -> float:
        return sum(entry[key] for entry in layers.values())

    a_factors = total(A_FACTOR)
    g_factors = total("G rows + matmul")
    reduce_factors = sum(
        entry.get(A_REDUCE, entry[A_FACTOR]) + entry.get(G_REDUCE, entry["G rows + matmul"]) for entry in layers.values()
    )
    inverses = total("inverses (cholesky_inverses, A and G)")
    preconditioning = total("preconditioning (G⁻¹ ∇ A⁻¹)")
    a2c_update = result["A2C forward+backward"] + result["A2C RMSprop step"]
    result["totals"] = {
        "A2C update (forward+backward+RMSprop)": a2c_update,
        "A factors, all layers": a_factors,
        "A factors, all layers, conv ones with the patch matrix": sum(
            entry.get(PATCHES, entry[A_FACTOR]) for entry in layers.values()
        ),
        "G factors, all layers": g_factors,
        "A and G factors, all layers, reduce form for the convolutions": reduce_factors,
        "inverses, all layers (per refresh)": inverses,
        "preconditioning, all layers": preconditioning,
    }
    result["projections"] = project_cnn_costs(
        a2c_update=a2c_update,
        base=result["A2C forward+backward"] + preconditioning + inverses / 10,  # inverses every kfac_update=10
        fisher=result["Fisher backward (to layer outputs)"],
        factors=a_factors + g_factors,
        reduce_factors=reduce_factors,
        exact_kl=result["exact-KL diagnostic forward (no grad)"],
        batch=batch,
    )
    return result


def project_cnn_costs(
    a2c_update: float, base: float, fisher: float, factors: float, reduce_factors: float, exact_kl: float, batch: int
) -> dict[str, dict[str, float]]:
    """
    ACKTR's update cost (train() only, no rollout) as a multiple of A2C's, from the measured pieces, for the
    statistics options: every update on the whole batch, on ``kfac_stats_samples`` samples (the factors scale with
    the samples; the Fisher backward does not), every 4th update. The exact-KL diagnostic forward is paid once per
    ``log_interval`` updates (``learn()``'s default), when its value is logged.

    :param a2c_update: A2C's forward+backward+RMSprop
    :param base: What every ACKTR update pays: forward+backward, preconditioning, the inverses' share
    :param fisher: The Fisher backward
    :param factors: A and G of all layers on the whole batch
    :param reduce_factors: The same with the reduce form for the convolutions (``kfac_weight_sharing="reduce"``)
    :param exact_kl: The exact-KL diagnostic forward on the whole batch
    :param batch: The batch size
    :return: ``{option: {"seconds": ..., "ratio_to_a2c": ...}}``
    """
    # Every update pays the base and its share of the exact-KL forward, whatever the statistics option
    per_update = base + exact_kl / inspect.signature(ACKTR.learn).parameters["log_interval"].default
    options = {"statistics every update, whole batch (ACKTR's default)": per_update + fisher + factors}
    for samples in (160, 80):
        kept = min(samples, batch) / batch
        options[f"kfac_stats_samples={samples}"] = per_update + fisher + factors * kept
    options["kfac_stats_update=4"] = per_update + (fisher + factors) / 4
    kept = min(160, batch) / batch
    options["kfac_stats_samples=160 + kfac_stats_update=4"] = per_update + (fisher + factors * kept) / 4
    options["kfac_weight_sharing=reduce"] = per_update + fisher + reduce_factors
    options["kfac_weight_sharing=reduce + kfac_stats_samples=160"] = per_update + fisher + reduce_factors * kept
    return {name: {"seconds": seconds, "ratio_to_a2c": seconds / a2c_update} for name, seconds in options.items()}


# --------------------------------------------------------------------------------------------------------------------
# Report
# --------------------------------------------------------------------------------------------------------------------


def machine_info() -> dict[str, Any]:
    """Versions, CPU and torch threads: the context every figure needs."""
    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as file:
            cpu = next((line.split(":", 1)[1].strip() for line in file if line.startswith("model name")), cpu)
    except OSError:
        pass
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=Path(__file__).parent, check=False
        ).stdout.strip()
    except OSError:
        commit = ""
    versions = {
        "python": platform.python_version(),
        "torch": th.__version__,
        "stable_baselines3": stable_baselines3.__version__,
    }
    versions.update({"sb3_acktr": sb3_acktr.__version__, "gymnasium": gym.__version__, "numpy": np.__version__})
    for package in ("mujoco", "ale_py"):
        try:
            versions[package] = __import__(package).__version__
        except ImportError:
            pass
    return {
        "date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "platform": platform.platform(),
        "cpu": cpu,
        "cpu_count": os.cpu_count(),
        "torch_threads": th.get_num_threads(),
        "load_average_start": list(os.getloadavg()),
        "git_commit": commit,
        "versions": versions,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
    }


def throughput_table(rows: list[dict[str, Any]]) -> str:
    """Markdown table of the interleaved measurements."""
    lines = table_header(
        [
            "configuration",
            "batch",
            "A2C steps/s",
            "ACKTR steps/s",
            "ACKTR / A2C",
            "per-pair range",
            "A2C s/update",
            "ACKTR s/update",
            "runs x updates",
        ]
    )
    for row in rows:
        medians, per_update = row["median_steps_per_s"], row["seconds_per_update"]
        lines.append(
            f"| {row['name']} | {row['batch']} | {medians['A2C']:,.0f} | {medians['ACKTR']:,.0f} | **{row['ratio']:.2f}** | "
            f"{min(row['pair_ratios']):.2f}–{max(row['pair_ratios']):.2f} | {per_update['A2C']:.3f} | "
            f"{per_update['ACKTR']:.3f} | {row['repeats']} x {row['updates']} |"
        )
    return "\n".join(lines)


def breakdown_table(breakdowns: list[dict[str, Any]], algo: str) -> str:
    """Markdown table: milliseconds per update and share of the update, per phase, one column pair per config."""
    lines = table_header(["phase", *(column for b in breakdowns for column in (f"{b['name']} ms", "%"))])
    for phase in PHASES:
        if not any(phase in b[algo]["phases"] for b in breakdowns):
            continue
        cells = []
        for b in breakdowns:
            seconds = b[algo]["phases"].get(phase)
            total = b[algo]["seconds_per_update"]
            cells.append("–|–" if seconds is None else f"{1e3 * seconds:.1f} | {100 * seconds / total:.1f}")
        lines.append(f"| {phase} | " + " | ".join(cells) + " |")
    totals = " | ".join(f"**{1e3 * b[algo]['seconds_per_update']:.1f}** | 100" for b in breakdowns)
    lines.append(f"| **total per update** | {totals} |")
    return "\n".join(lines)


def cell(value: float | int | None) -> str:
    """A table cell: integers as they are, seconds to the millisecond, a dash when not measured."""
    if value is None:
        return "–"
    return f"{value}" if isinstance(value, int) else f"{value:.3f}"


def cnn_tables(cnn: dict[str, Any]) -> str:
    """Markdown tables of the NatureCNN microbenchmark."""
    lines = [
        f"Batch {cnn['batch']}, 1 thread, median of {cnn['repeats']}:",
        "",
        *table_header(["piece", "seconds"]),
    ]
    for key in (
        "A2C forward",
        "A2C forward+backward",
        "A2C RMSprop step",
        "ACKTR forward with recording hooks",
        "Fisher backward (to layer outputs)",
        "exact-KL diagnostic forward (no grad)",
    ):
        lines.append(f"| {key} | {cnn[key]:.3f} |")
    for key, value in cnn["totals"].items():
        lines.append(f"| {key} | {value:.3f} |")
    columns = [
        "A dim",
        "G dim",
        "A patch matrix MB",
        PATCHES,
        A_FACTOR,
        A_REDUCE,
        "G rows + matmul",
        G_REDUCE,
        "inverses (cholesky_inverses, A and G)",
        "preconditioning (G⁻¹ ∇ A⁻¹)",
    ]
    lines += ["", *table_header(["layer", *columns])]
    for name, entry in cnn["layers"].items():
        cells = [cell(entry.get(c)) for c in columns]
        lines.append(f"| {name} ({entry['type']}) | " + " | ".join(cells) + " |")
    lines += ["", *table_header(["ACKTR train() per update, projected from the pieces", "seconds", "x A2C's update"])]
    for name, projection in cnn["projections"].items():
        lines.append(f"| {name} | {projection['seconds']:.2f} | {projection['ratio_to_a2c']:.1f} |")
    return "\n".join(lines)


def render_markdown(results: dict[str, Any]) -> str:
    """The whole report as markdown."""
    meta = results["machine"]
    versions = ", ".join(f"{k} {v}" for k, v in meta["versions"].items())
    parts = [
        "## Throughput: ACKTR / A2C (interleaved, same run)",
        "",
        f"{meta['date']}; {meta['cpu']} ({meta['cpu_count']} shared cores), torch threads {meta['torch_threads']}; "
        f"{versions}; commit {meta['git_commit']}; load average at start {meta['load_average_start'][0]:.2f}.",
        "",
        throughput_table(results["throughput"]),
    ]
    if results["breakdown"]:
        repeats = results["breakdown"][0]["repeats"]
        note = (
            f"Milliseconds per update and share of the update: each phase's median over {repeats} interleaved runs "
            "(A2C, ACKTR, ...) of 10 updates (ACKTR: one inverse refresh per run), exclusive times (a phase excludes "
            "the timed phases nested in it)."
        )
        parts += ["", "## One ACKTR update, by phase", "", note, "", breakdown_table(results["breakdown"], "ACKTR")]
        parts += ["", "## One A2C update, by phase (same configurations)", "", breakdown_table(results["breakdown"], "A2C")]
    if results.get("cnn"):
        parts += ["", "## NatureCNN at batch 640: A2C's update and ACKTR's extra costs", "", cnn_tables(results["cnn"])]
    return "\n".join(parts) + "\n"


def main(argv: list[str] | None = None) -> None:
    """
    ``python benchmarks/throughput.py [--quick] [--out FILE.json] [--only SUBSTRING ...]``.

    :param argv: Command-line arguments (default: ``sys.argv[1:]``)
    """
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="CartPole only, tiny budgets, one repeat (a few seconds)")
    parser.add_argument("--out", type=Path, help="Write the results as JSON here, and the markdown beside it (.md)")
    parser.add_argument("--only", nargs="*", help="Keep only the configurations whose name contains one of these")
    parser.add_argument("--names", nargs="*", help="Keep only the configurations with exactly these names")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--no-breakdown", action="store_true", help="Skip the per-phase breakdown")
    parser.add_argument("--no-cnn", action="store_true", help="Skip the NatureCNN microbenchmark")
    args = parser.parse_args(argv)

    configs = quick_configs() if args.quick else full_configs()
    if args.only:
        configs = [c for c in configs if any(word in c.name for word in args.only)]
    if args.names:
        configs = [c for c in configs if c.name in args.names]
    results: dict[str, Any] = {"machine": machine_info(), "quick": args.quick, "throughput": [], "breakdown": [], "cnn": None}

    for config in configs:
        print(f"throughput: {config.name} ...", file=sys.stderr, flush=True)
        row = measure_throughput(config, args.seed)
        results["throughput"].append(row)
        print(f"  ratio ACKTR/A2C {row['ratio']:.3f}  {row['median_steps_per_s']}", file=sys.stderr, flush=True)

    if not args.no_breakdown:
        names = {c.name: c for c in (quick_configs() if args.quick else full_configs())}
        chosen = (
            ["CartPole-v1 8x20"]
            if args.quick
            else [
                "CartPole-v1 8x20",
                "HalfCheetah-v5 1x2500",
                "HalfCheetah-v5 1x2500, [1024, 1024]",
                "PongNoFrameskip-v4 16x5",
                "PongNoFrameskip-v4 32x20",
                "PongNoFrameskip-v4 32x20, kfac_stats_samples=160",
                "PongNoFrameskip-v4 32x20, kfac_weight_sharing=reduce",
                "MinAtar/Breakout-v1 16x20",
                "MinAtar/Breakout-v1 16x20, kfac_weight_sharing=reduce",
            ]
        )
        for name in chosen:
            if (args.only and not any(word in name for word in args.only)) or (args.names and name not in args.names):
                continue
            print(f"breakdown: {name} ...", file=sys.stderr, flush=True)
            repeats = 1 if args.quick else 3
            results["breakdown"].append(measure_breakdown(names[name], args.seed, updates=10, repeats=repeats))

    if not (args.quick or args.no_cnn):
        print("NatureCNN microbenchmark ...", file=sys.stderr, flush=True)
        results["cnn"] = cnn_microbenchmark()

    results["machine"]["load_average_end"] = list(os.getloadavg())
    markdown = render_markdown(results)
    results["markdown"] = markdown
    print(markdown)
    if args.out is not None:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(results, indent=2, ensure_ascii=False) + "\n")
        args.out.with_suffix(".md").write_text(markdown)
        print(f"wrote {args.out} and {args.out.with_suffix('.md')}", file=sys.stderr)


if __name__ == "__main__":
    main()
