"""
One table of bad inputs across ACKTR, KFAC, their load paths, MinAtar's helpers and the zoo's entry point: each must
raise one clear error, of the stated type, whose message names what was wrong (and, where there is one, the fix).
"""

import io
from collections.abc import Callable

import gymnasium as gym
import numpy as np
import pytest
import torch as th
from gymnasium import spaces
from stable_baselines3.common.envs import FakeImageEnv
from torch import nn

from sb3_acktr import ACKTR, KFAC
from sb3_acktr.minatar import MinAtarCNN, MinAtarWrapper
from sb3_acktr.zoo import main as zoo_main
from tests.helpers import fisher_then_gradient


def acktr(**kwargs) -> Callable[[], object]:
    return lambda: ACKTR("MlpPolicy", "CartPole-v1", **kwargs)


def mlp() -> nn.Sequential:
    return nn.Sequential(nn.Linear(3, 4), nn.Tanh(), nn.Linear(4, 2))


def kfac(model: Callable[[], nn.Module] = mlp, **kwargs) -> Callable[[], object]:
    return lambda: KFAC(model(), **kwargs)


def kfac_group(**options) -> Callable[[], object]:
    def build() -> KFAC:
        model = mlp()
        return KFAC(model, param_groups=[{"params": list(model.parameters()), **options}])

    return build


def kfac_groups(make_groups: Callable[[nn.Sequential], list]) -> Callable[[], object]:
    def build() -> KFAC:
        model = mlp()
        return KFAC(model, param_groups=make_groups(model))

    return build


def load_acktr(**overrides) -> Callable[[], object]:
    def build() -> ACKTR:
        buffer = io.BytesIO()
        ACKTR("MlpPolicy", "CartPole-v1", n_steps=8).save(buffer)
        buffer.seek(0)
        return ACKTR.load(buffer, **overrides)

    return build


def load_kfac_state(state: Callable[[KFAC], dict]) -> Callable[[], object]:
    def build() -> None:
        source = KFAC(nn.Sequential(nn.Linear(3, 5), nn.Tanh(), nn.Linear(5, 2)))
        KFAC(mlp()).load_state_dict(state(source))

    return build


def learn(**kwargs) -> Callable[[], object]:
    return lambda: ACKTR("MlpPolicy", "CartPole-v1", n_steps=8).learn(16, **kwargs)


class Tied(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.first, self.second = nn.Linear(3, 3), nn.Linear(3, 3)
        self.second.weight = self.first.weight

    def forward(self, x: th.Tensor) -> th.Tensor:
        return self.second(self.first(x))


def frozen() -> nn.Module:
    model = mlp()
    model.requires_grad_(False)
    return model


def sac_policy():
    from stable_baselines3.sac.policies import SACPolicy

    return SACPolicy


CASES = [
    # ACKTR's constructor: every hyperparameter is range-checked with the argument, the value and the range
    ("acktr-lr-negative", acktr(learning_rate=-0.1), ValueError, r"learning_rate must be in \[0, inf\), got -0\.1"),
    ("acktr-lr-nan", acktr(learning_rate=float("nan")), ValueError, r"learning_rate must be in \[0, inf\), got nan"),
    ("acktr-lr-schedule", acktr(learning_rate=lambda p: -p), ValueError, r"schedule's value at progress_remaining=1"),
    ("acktr-lr-string", acktr(learning_rate="0.25"), ValueError, r"learning_rate must be in \[0, inf\), got '0\.25'"),
    ("acktr-clip-zero", acktr(kfac_clip=0.0), ValueError, r"kfac_clip must be in \(0, inf\), got 0\.0"),
    ("acktr-clip-negative", acktr(kfac_clip=-1e-3), ValueError, r"kfac_clip must be in \(0, inf\), got -0\.001"),
    ("acktr-clip-bool", acktr(kfac_clip=True), ValueError, r"kfac_clip must be in \(0, inf\), got True"),
    ("acktr-damping-zero", acktr(kfac_damping=0.0), ValueError, r"kfac_damping must be in \(0, inf\), got 0\.0"),
    ("acktr-decay-one", acktr(kfac_stats_decay=1.0), ValueError, r"kfac_stats_decay must be in \[0, 1\), got 1\.0"),
    ("acktr-decay-negative", acktr(kfac_stats_decay=-0.5), ValueError, r"kfac_stats_decay must be in \[0, 1\), got -0\.5"),
    ("acktr-momentum-one", acktr(kfac_momentum=1.0), ValueError, r"kfac_momentum must be in \[0, 1\), got 1\.0"),
    ("acktr-momentum-negative", acktr(kfac_momentum=-0.1), ValueError, r"kfac_momentum must be in \[0, 1\), got -0\.1"),
    ("acktr-update-zero", acktr(kfac_update=0), ValueError, r"kfac_update must be an integer >= 1, got 0"),
    ("acktr-update-float", acktr(kfac_update=2.5), ValueError, r"kfac_update must be an integer >= 1, got 2\.5"),
    ("acktr-stats-update", acktr(kfac_stats_update=0), ValueError, r"kfac_stats_update must be an integer >= 1, got 0"),
    ("acktr-stats-samples", acktr(kfac_stats_samples=0), ValueError, r"kfac_stats_samples must be an integer >= 1, got 0"),
    (
        "acktr-max-factor-dim",
        acktr(kfac_max_factor_dim=0),
        ValueError,
        r"kfac_max_factor_dim must be an integer >= 1, got 0\. Try 8192, or None",
    ),
    ("acktr-vf-fisher", acktr(vf_fisher_coef=-1.0), ValueError, r"vf_fisher_coef must be in \[0, inf\), got -1\.0"),
    ("acktr-grad-norm", acktr(max_grad_norm=0.0), ValueError, r"max_grad_norm must be in \(0, inf\], got 0\.0"),
    ("acktr-gamma", acktr(gamma=1.5), ValueError, r"gamma must be in \[0, 1\], got 1\.5"),
    ("acktr-gae-lambda", acktr(gae_lambda=-0.1), ValueError, r"gae_lambda must be in \[0, 1\], got -0\.1"),
    ("acktr-ent-coef", acktr(ent_coef=-0.01), ValueError, r"ent_coef must be in \[0, inf\), got -0\.01"),
    ("acktr-vf-coef", acktr(vf_coef=float("nan")), ValueError, r"vf_coef must be in \[0, inf\), got nan"),
    ("acktr-n-steps-zero", acktr(n_steps=0), ValueError, r"n_steps must be an integer >= 1, got 0"),
    ("acktr-n-steps-float", acktr(n_steps=np.float64(8.0)), ValueError, r"n_steps must be an integer >= 1, got np\.float64"),
    (
        "acktr-inverse-method",
        acktr(kfac_inverse_method="svd"),
        ValueError,
        r"kfac_inverse_method must be one of \('cholesky', 'eigen'\), got 'svd'",
    ),
    (
        "acktr-distributed-inverses",
        acktr(kfac_distributed_inverses="rank0"),
        ValueError,
        r"kfac_distributed_inverses must be one of \('all_ranks', 'one_rank'\), got 'rank0'",
    ),
    ("kfac-max-factor-dim", kfac(max_factor_dim=2.5), ValueError, r"max_factor_dim must be an integer >= 1, got 2\.5"),
    (
        "kfac-distributed-inverses",
        kfac(distributed_inverses="some"),
        ValueError,
        r"distributed_inverses must be one of \('all_ranks', 'one_rank'\), got 'some'",
    ),
    (
        "kfac-stats-warm-up",
        kfac(stats_warm_up=1),
        TypeError,
        r"stats_warm_up must be a bool, got 1",
    ),
    (
        "acktr-trust-region",
        acktr(trust_region="actor"),
        ValueError,
        r"trust_region must be one of \('joint', 'per_network'\), got 'actor'",
    ),
    (
        "acktr-per-network-shared",
        lambda: ACKTR("CnnPolicy", FakeImageEnv(screen_height=36, screen_width=36), trust_region="per_network"),
        ValueError,
        r"trust_region='per_network' needs an actor and a critic that share no parameter",
    ),
    (
        "acktr-weight-sharing-mlp",
        acktr(kfac_weight_sharing="reduce"),
        ValueError,
        r"weight_sharing='reduce' applies to nn\.Conv2d and nn\.LSTM layers",
    ),
    (
        "acktr-weight-sharing-name",
        acktr(kfac_weight_sharing="mean"),
        ValueError,
        r"weight_sharing must be one of \('expand', 'reduce'\), got 'mean'",
    ),
    (
        "acktr-policy-sac",
        lambda: ACKTR(sac_policy(), "Pendulum-v1"),
        TypeError,
        r"ACKTR needs an actor-critic policy .* got SACPolicy",
    ),
    ("acktr-unknown-argument", acktr(kfac_clipp=0.01), TypeError, r"unexpected keyword argument 'kfac_clipp'"),
    # ACKTR.load with overrides, and learn()
    ("load-clip", load_acktr(kfac_clip=-1), ValueError, r"kfac_clip must be in \(0, inf\), got -1"),
    ("load-damping", load_acktr(kfac_damping=0.0), ValueError, r"kfac_damping must be in \(0, inf\), got 0\.0"),
    ("load-update", load_acktr(kfac_update=0), ValueError, r"kfac_update must be an integer >= 1, got 0"),
    ("learn-log-interval-zero", learn(log_interval=0), ValueError, r"log_interval must be an integer >= 1, got 0"),
    ("learn-log-interval-negative", learn(log_interval=-1), ValueError, r"log_interval must be an integer >= 1, got -1"),
    # KFAC's constructor
    (
        "kfac-not-a-module",
        lambda: KFAC([th.zeros(2, requires_grad=True)]),  # type: ignore[arg-type]
        TypeError,
        r"KFAC needs the nn\.Module it optimizes, got list",
    ),
    ("kfac-lr", kfac(lr=-1.0), ValueError, r"^lr must be in \[0, inf\), got -1\.0"),
    ("kfac-lr-nan", kfac(lr=float("nan")), ValueError, r"^lr must be in \[0, inf\), got nan"),
    ("kfac-momentum", kfac(momentum=1.0), ValueError, r"^momentum must be in \[0, 1\), got 1\.0"),
    ("kfac-clip", kfac(kfac_clip=0.0), ValueError, r"^kfac_clip must be in \(0, inf\), got 0\.0"),
    ("kfac-damping", kfac(damping=float("inf")), ValueError, r"^damping must be in \(0, inf\), got inf"),
    ("kfac-decay", kfac(stats_decay=1.0), ValueError, r"^stats_decay must be in \[0, 1\), got 1\.0"),
    ("kfac-inverse-interval", kfac(inverse_interval=0), ValueError, r"inverse_interval must be an integer >= 1, got 0"),
    ("kfac-stats-interval", kfac(stats_interval=-2), ValueError, r"stats_interval must be an integer >= 1, got -2"),
    ("kfac-stats-samples", kfac(stats_samples=0.5), ValueError, r"stats_samples must be an integer >= 1, got 0\.5"),
    (
        "kfac-inverse-method",
        kfac(inverse_method="lu"),
        ValueError,
        r"inverse_method must be one of \('cholesky', 'eigen'\), got 'lu'",
    ),
    (
        "kfac-trust-region",
        kfac(trust_region="per_network"),
        ValueError,
        r"trust_region must be one of \('joint', 'per_group'\)",
    ),
    (
        "kfac-loss-reduction",
        kfac(loss_reduction="none"),
        ValueError,
        r"loss_reduction must be one of \('mean', 'sum'\), got 'none'",
    ),
    ("kfac-weight-sharing-type", kfac(weight_sharing=["reduce"]), TypeError, r"weight_sharing must be one of .* or a dict"),
    (
        "kfac-weight-sharing-linear",
        kfac(weight_sharing={"0": "reduce"}),
        ValueError,
        r"weight_sharing names layer '0', which is not an nn\.Conv2d",
    ),
    (
        "kfac-weight-sharing-no-conv",
        kfac(weight_sharing="reduce"),
        ValueError,
        r"weight_sharing='reduce' applies to nn\.Conv2d and nn\.LSTM layers",
    ),
    (
        "kfac-no-layer",
        kfac(model=lambda: nn.Sequential(nn.LayerNorm(3))),
        ValueError,
        r"KFAC found no trainable nn\.Linear, nn\.Conv2d \(groups=1\) or nn\.LSTM layer",
    ),
    ("kfac-frozen", kfac(model=frozen), ValueError, r"KFAC found no trainable nn\.Linear"),
    ("kfac-tied", kfac(model=Tied), ValueError, r"the weight of layer 'second' is shared with another layer \(tied weights\)"),
    (
        "kfac-group-not-dict",
        kfac_groups(lambda m: [list(m.parameters())]),
        ValueError,
        r"param_groups\[0\] must be a dict with a 'params' entry",
    ),
    (
        "kfac-group-no-params",
        kfac_groups(lambda m: [{"lr": 0.1}]),
        ValueError,
        r"param_groups\[0\] must be a dict with a 'params' entry",
    ),
    (
        "kfac-group-twice",
        kfac_groups(lambda m: [{"params": list(m.parameters())}, {"params": [m[0].weight]}]),
        ValueError,
        r"A parameter appears in param_groups\[0\] and \[1\]",
    ),
    (
        "kfac-group-missing",
        kfac_groups(lambda m: [{"params": [m[0].weight, m[0].bias]}]),
        ValueError,
        r"must partition the model's trainable parameters: 2 missing, 0 not trainable",
    ),
    (
        "kfac-group-foreign",
        kfac_groups(lambda m: [{"params": [*m.parameters(), nn.Parameter(th.zeros(1))]}]),
        ValueError,
        r"0 missing, 1 not trainable",
    ),
    (
        "kfac-group-split-layer",
        kfac_groups(lambda m: [{"params": [m[0].weight, *m[2].parameters()]}, {"params": [m[0].bias]}]),
        ValueError,
        r"The parameters of layer '0' \(weights and biases\) must be in the same parameter group",
    ),
    # Per-group options, in a group's own entry: the message names the group
    (
        "kfac-group-lr-nan",
        kfac_group(lr=float("nan")),
        ValueError,
        r"^param_groups\[0\]\['lr'\] must be in \[0, inf\), got nan",
    ),
    ("kfac-group-momentum", kfac_group(momentum=1.5), ValueError, r"\['momentum'\] must be in \[0, 1\), got 1\.5"),
    ("kfac-group-clip", kfac_group(kfac_clip=float("nan")), ValueError, r"\['kfac_clip'\] must be in \(0, inf\), got nan"),
    ("kfac-group-damping", kfac_group(damping=0.0), ValueError, r"\['damping'\] must be in \(0, inf\), got 0\.0"),
    ("kfac-group-decay", kfac_group(stats_decay=-1.0), ValueError, r"\['stats_decay'\] must be in \[0, 1\), got -1\.0"),
    # KFAC.load_state_dict
    (
        "kfac-load-other-optimizer",
        load_kfac_state(lambda kfac: th.optim.SGD(mlp().parameters(), lr=0.1).state_dict()),
        ValueError,
        r"This is not a KFAC state_dict",
    ),
    (
        "kfac-load-other-model",
        load_kfac_state(lambda kfac: trained(kfac)),
        ValueError,
        r"This KFAC state was saved for another model",
    ),
    # MinAtar's helpers
    (
        "minatar-wrapper-cartpole",
        lambda: MinAtarWrapper(gym.make("CartPole-v1")),
        ValueError,
        r"MinAtarWrapper wraps MinAtar environments, .* CartPole-v1 has Box",
    ),
    (
        "minatar-cnn-flat",
        lambda: MinAtarCNN(spaces.Box(0.0, 1.0, shape=(100,))),
        ValueError,
        r"MinAtarCNN needs channel-first \(C, H, W\) observations",
    ),
    # The zoo's entry point
    ("zoo-no-command", lambda: zoo_main([]), SystemExit, r"^2$"),
    ("zoo-unknown-command", lambda: zoo_main(["fly"]), SystemExit, r"^2$"),
]


def trained(optimizer: KFAC) -> dict:
    """The state of an optimizer after one curvature update and one step on a batch of 8."""
    fisher_then_gradient(optimizer, optimizer.model, th.randn(8, 3), th.zeros(8, dtype=th.long))
    optimizer.step()
    return optimizer.state_dict()


def test_the_table_is_large_enough():
    assert len(CASES) >= 60
    assert len({name for name, *_ in CASES}) == len(CASES)


@pytest.mark.parametrize("build, error, message", [pytest.param(*case[1:], id=case[0]) for case in CASES])
def test_bad_input(build, error, message):
    with pytest.raises(error, match=message):
        build()
