"""Each K-FAC hyperparameter is defined once (sb3_acktr.kfac.hyperparameters); ACKTR maps its names onto KFAC's."""

import inspect

import pytest

from sb3_acktr import ACKTR, KFAC
from sb3_acktr.acktr.acktr import KFAC_ARGUMENTS, KFAC_TRUST_REGIONS
from sb3_acktr.kfac.hyperparameters import GROUP_OPTIONS, HYPERPARAMETERS, Hyperparameter
from tests.helpers import ROOT


def signature_defaults(function) -> dict:
    return {name: parameter.default for name, parameter in inspect.signature(function).parameters.items()}


def test_every_kfac_option_is_defined_once():
    defaults = signature_defaults(KFAC.__init__)
    options = set(defaults) - {"self", "model", "param_groups", "process_group"}
    assert options == set(HYPERPARAMETERS)
    assert all(defaults[name] == HYPERPARAMETERS[name].default for name in options)
    assert set(GROUP_OPTIONS) <= set(HYPERPARAMETERS)


def test_acktr_maps_every_kfac_argument():
    defaults = signature_defaults(ACKTR.__init__)
    assert {name for name in defaults if name.startswith("kfac_")} == set(KFAC_ARGUMENTS)
    for name, kfac_name in KFAC_ARGUMENTS.items():
        assert defaults[name] == HYPERPARAMETERS[kfac_name].default, name
    assert defaults["learning_rate"] == HYPERPARAMETERS["lr"].default
    # Every KFAC option but those ACKTR sets itself (lr from the schedule, trust_region, the Fisher loss's mean, and
    # max_grad_norm from its own, A2C's, at every update)
    assert set(KFAC_ARGUMENTS.values()) == set(HYPERPARAMETERS) - {"lr", "trust_region", "loss_reduction", "max_grad_norm"}
    assert set(KFAC_TRUST_REGIONS.values()) == set(HYPERPARAMETERS["trust_region"].choices)


def test_acktr_builds_kfac_from_its_arguments():
    arguments = dict(
        kfac_clip=0.003, kfac_update=3, kfac_stats_update=2, kfac_stats_samples=7, kfac_damping=0.05,
        kfac_stats_decay=0.5, kfac_stats_warm_up=False, kfac_momentum=0.3, kfac_inverse_method="eigen",
        kfac_distributed_inverses="one_rank",
    )  # fmt: skip
    model = ACKTR("MlpPolicy", "CartPole-v1", trust_region="per_network", **arguments)
    optimizer = model.policy.optimizer
    for name, value in arguments.items():
        kfac_name = KFAC_ARGUMENTS[name]
        held = optimizer.param_groups[0][kfac_name] if kfac_name in GROUP_OPTIONS else getattr(optimizer, kfac_name)
        assert held == value, name
    assert optimizer.trust_region == "per_group"


@pytest.mark.parametrize(
    "arguments, error, message",
    [
        # ACKTR's names, KFAC's ranges and hints
        (
            dict(kfac_damping=0.0),
            ValueError,
            r"^kfac_damping must be in \(0, inf\), got 0\.0\. Try 0\.01 \(SB2's default\)\.$",
        ),
        (dict(kfac_update=0), ValueError, r"^kfac_update must be an integer >= 1, got 0\. Try 10 \(SB2's kfac_update\)\.$"),
        (dict(kfac_stats_warm_up=1), TypeError, r"^kfac_stats_warm_up must be a bool, got 1\.$"),
        (
            dict(kfac_weight_sharing={"features_extractor.cnn.0": "mean"}),
            ValueError,
            r"^kfac_weight_sharing\['features_extractor.cnn.0'\] must be one of \('expand', 'reduce'\), got 'mean'\.$",
        ),
    ],
)
def test_acktr_errors_name_acktr_arguments(arguments, error, message):
    with pytest.raises(error, match=message):
        ACKTR("MlpPolicy", "CartPole-v1", **arguments)


@pytest.mark.parametrize(
    "hyperparameter, good, bad",
    [
        (Hyperparameter(0.5, low=0.0, high=1.0), [0.0, 0.99], [1.0, -0.1, float("nan"), True, "0.5"]),
        (Hyperparameter(0.5, low=0.0, low_open=True), [1e-9, 1e9], [0.0, float("inf")]),
        (Hyperparameter(3, integer=True), [1, 10**6], [0, 2.5, True, None]),
        (Hyperparameter(None, integer=True, optional=True), [None, 4], [0]),
        (Hyperparameter("a", choices=("a", "b")), ["a", "b"], ["c", None, {"x": "a"}]),
        (Hyperparameter("a", choices=("a", "b"), per_layer=True), ["a", {"x": "b"}, {}], [{"x": "c"}, "c"]),
        (Hyperparameter(False), [True, False], [1, None, "yes"]),
    ],
)
def test_hyperparameter_check(hyperparameter, good, bad):
    for value in good:
        hyperparameter.check("x", value)
    for value in bad:
        with pytest.raises((ValueError, TypeError), match=r"^x"):
            hyperparameter.check("x", value)


def test_the_docs_table_lists_every_hyperparameter_with_its_default():
    page = (ROOT / "docs" / "modules" / "kfac.md").read_text()
    table = page.split("## Hyperparameters and what they trade", 1)[1].split("\n\n")[1]
    rows = [line.split("|")[1:3] for line in table.splitlines()[2:]]
    documented = {name.strip().strip("`"): default.strip().strip("`") for name, default in rows}
    assert documented == {name: repr(h.default).replace("'", '"') for name, h in HYPERPARAMETERS.items()}
