"""
The per-phase breakdown of one update: timers installed around the package's functions (nothing in ``sb3_acktr`` is
edited), each charging its exclusive time to a phase, for A2C and ACKTR in interleaved runs.
"""

import functools
import statistics
import time
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch as th

# Small networks on 2 shared cores: one torch thread (see DESIGN.md, "Speed")
th.set_num_threads(1)

from stable_baselines3.common.base_class import BaseAlgorithm  # noqa: E402
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm  # noqa: E402
from stable_baselines3.common.policies import ActorCriticPolicy  # noqa: E402
from tables import table_header  # noqa: E402
from throughput_configs import ALGOS, Config, make_model, timed_learn  # noqa: E402

from sb3_acktr import ACKTR, KFAC  # noqa: E402
from sb3_acktr.kfac import optimizer as kfac_optimizer  # noqa: E402


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
STEP = "step: Δᵀ∇, gradient clipping, momentum, weight update"
OPTIMIZER = "optimizer step (RMSprop)"
CLIP = "gradient clipping (clip_grad_norm_)"
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


def rollout_target(model: BaseAlgorithm, phase: str) -> tuple[Any, str, str]:
    """
    The rollout collection to time for ``model``: ACKTR calls the one it holds (``_collect_rollout``: SB3's, or
    RecurrentPPO's), which a wrapper around ``OnPolicyAlgorithm.collect_rollouts`` would not see.
    """
    if isinstance(model, ACKTR):
        return next(klass for klass in type(model).__mro__ if "_collect_rollout" in klass.__dict__), "_collect_rollout", phase
    return OnPolicyAlgorithm, "collect_rollouts", phase


def timer_targets(model: BaseAlgorithm) -> list[tuple[Any, str, str]]:
    """The functions wrapped for the per-phase breakdown of one update of ``model`` (A2C or ACKTR)."""
    targets: list[tuple[Any, str, str]] = [
        rollout_target(model, ROLLOUT),
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
