"""Helpers shared by the test modules (tests import this module, never each other)."""

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch as th
from gymnasium import spaces
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.preprocessing import get_flattened_obs_dim
from stable_baselines3.common.torch_layers import BaseFeaturesExtractor
from torch import nn
from torch.nn import functional as F

from sb3_acktr.kfac import KFAC

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


#: The keys ACKTR.train() logs, whatever the trust region
ACKTR_TRAIN_KEYS = [
    "train/entropy_loss",
    "train/policy_loss",
    "train/value_loss",
    "train/explained_variance",
    "train/learning_rate",
    "train/n_updates",
    "train/pg_fisher_loss",
    "train/vf_fisher_loss",
    "train/quadratic_kl",
    "train/quadratic_kl_actor",
    "train/exact_kl",
    "train/kfac_skipped_steps",
    "train/kfac_skipped_curvature_updates",
    "train/kfac_reset_statistics",
]


class RecordingLogger(Logger):
    """A logger without outputs that keeps every recorded pair (``history``) and the values of every dump (``dumps``)."""

    def __init__(self) -> None:
        super().__init__(None, [])
        self.history: list[tuple[str, Any]] = []
        self.dumps: list[dict[str, Any]] = []

    def record(self, key: str, value: Any, exclude: Any = None) -> None:
        self.history.append((key, value))
        super().record(key, value, exclude)

    def dump(self, step: int = 0) -> None:
        self.dumps.append(dict(self.name_to_value))
        super().dump(step)


def actor_kl_ratios(model: OnPolicyAlgorithm, updates: int) -> list[float]:
    """
    :param model: An ACKTR (or RecurrentACKTR), trained here for ``updates`` updates
    :param updates: How many
    :return: exact KL / the actor's quadratic-model KL of each update, as the model logged them
    """
    logger = RecordingLogger()
    model.set_logger(logger)
    model.learn(updates * model.n_steps * model.n_envs)
    exact = [value for key, value in logger.history if key == "train/exact_kl"]
    quadratic = [value for key, value in logger.history if key == "train/quadratic_kl_actor"]
    assert len(exact) == len(quadratic) == updates
    return [e / q for e, q in zip(exact, quadratic, strict=True)]


def exact_kl_with_and_without_the_row_path(make_model: Callable[[], OnPolicyAlgorithm], steps: int) -> list[list[float]]:
    """
    ``train/exact_kl`` of every update of two runs of the same model: the policy before the step from the training
    forward pass's rows, then from a forward pass of its own (as for a policy whose mode matters; the switch itself
    changes nothing for a policy without dropout or batch norm).

    :param make_model: Builds the model (the same seed each time)
    :param steps: Environment steps of each run
    :return: The two histories, the row path's first
    """
    histories = []
    for two_forward_passes in (False, True):
        model = make_model()
        model._exact_kl_in_eval_mode = two_forward_passes  # type: ignore[attr-defined]
        logger = RecordingLogger()
        model.set_logger(logger)
        model.learn(steps)
        histories.append([value for key, value in logger.history if key == "train/exact_kl"])
    return histories


def sampled_fisher_loss(logits: th.Tensor) -> th.Tensor:
    """
    :param logits: A classifier's outputs
    :return: K-FAC's Fisher loss for them: the cross-entropy of labels sampled from the model itself
    """
    return F.cross_entropy(logits, th.distributions.Categorical(logits=logits.detach()).sample())


def fisher_then_gradient(optimizer: KFAC, model: nn.Module, x: th.Tensor, y: th.Tensor) -> None:
    """Record curvature with labels sampled from the model, then leave the training-loss gradient in .grad."""
    with optimizer.record_curvature():
        logits = model(x)
    optimizer.update_curvature(sampled_fisher_loss(logits))
    optimizer.zero_grad()
    F.cross_entropy(logits, y).backward()


def assert_kfac_states_equal(state_dict: dict[str, Any], other_state_dict: dict[str, Any]) -> None:
    """Every tensor and number of two KFAC state dicts (factors, inverses, momentum, counters) is the same."""
    assert state_dict["kfac"] == other_state_dict["kfac"]
    assert state_dict["state"].keys() == other_state_dict["state"].keys()
    for param_id, param_state in state_dict["state"].items():
        other_param_state = other_state_dict["state"][param_id]
        assert param_state.keys() == other_param_state.keys()
        for key, value in param_state.items():
            other_value = other_param_state[key]
            if isinstance(value, th.Tensor):
                assert value.dtype == other_value.dtype, key
                assert th.equal(value.cpu(), other_value.cpu()), key
            else:
                assert value == other_value, key
    assert len(state_dict["param_groups"]) == len(other_state_dict["param_groups"])
    for group, other_group in zip(state_dict["param_groups"], other_state_dict["param_groups"], strict=True):
        assert group == other_group


class BatchNormExtractor(BaseFeaturesExtractor):
    """Flattened observations through a BatchNorm1d: parameters outside nn.Linear/nn.Conv2d, for the diagonal Fisher."""

    def __init__(self, observation_space: spaces.Space) -> None:
        super().__init__(observation_space, get_flattened_obs_dim(observation_space))
        self.batch_norm = nn.BatchNorm1d(self.features_dim)

    def forward(self, observations: th.Tensor) -> th.Tensor:
        return self.batch_norm(observations.flatten(start_dim=1))
