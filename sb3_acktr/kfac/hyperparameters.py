"""
K-FAC's hyperparameters, each defined once: its default, the values it accepts and the advice an error gives.
``KFAC``'s signature takes its defaults from here and checks its arguments with :meth:`Hyperparameter.check`;
ACKTR maps its ``kfac_*`` names onto these (``sb3_acktr.acktr.acktr.KFAC_ARGUMENTS``) and checks them the same way,
so an error names the argument the user passed.
"""

import math
from dataclasses import dataclass
from typing import Any

from sb3_acktr.kfac.checks import check_choice, check_interval, check_number
from sb3_acktr.kfac.distributed import DISTRIBUTED_INVERSES
from sb3_acktr.kfac.factors import WEIGHT_SHARING_FORMS
from sb3_acktr.kfac.recurrent import LSTM_CURVATURES

INVERSE_METHODS = ("cholesky", "eigen")
TRUST_REGIONS = ("joint", "per_group")
LOSS_REDUCTIONS = ("mean", "sum")


@dataclass(frozen=True)
class Hyperparameter:
    """
    One hyperparameter: a real number in an interval, an integer >= 1, one of some strings, or a bool.

    :param default: The default value (SB2's where it had the option)
    :param low: Lower bound of a real number (None: not a real number)
    :param high: Upper bound of a real number
    :param low_open: Whether ``low`` itself is excluded
    :param high_open: Whether ``high`` itself is excluded (``math.inf`` is accepted where it is not)
    :param integer: An integer >= 1 (an interval or a sample count)
    :param choices: The accepted strings (empty: not a choice)
    :param optional: Whether None is accepted
    :param per_layer: Whether a dict from layer names to values is accepted too (KFAC checks the names against its
        layers)
    :param advice: What to try instead of a bad value (default: the default, as SB2's)
    """

    default: Any
    low: float | None = None
    high: float = math.inf
    low_open: bool = False
    high_open: bool = True
    integer: bool = False
    choices: tuple[str, ...] = ()
    optional: bool = False
    per_layer: bool = False
    advice: str = ""

    @property
    def hint(self) -> str:
        """The sentence an error ends with."""
        return self.advice or f"Try {self.default!r} (SB2's default)."

    def check(self, name: str, value: Any) -> None:
        """
        :param name: The argument as the user wrote it (e.g. ``"kfac_damping"`` or ``"param_groups[0]['damping']"``)
        :param value: Its value
        :raises ValueError: If the value is out of range, naming the argument, the value, the range and the hint
        :raises TypeError: If a bool option is given something else
        """
        if value is None and self.optional:
            return
        if self.per_layer and isinstance(value, dict):
            for layer, layer_value in value.items():
                self.check(f"{name}[{layer!r}]", layer_value)
            return
        if self.choices:
            check_choice(name, value, self.choices)
        elif self.integer:
            check_interval(name, value, self.hint)
        elif self.low is not None:
            check_number(name, value, self.low, self.high, low_open=self.low_open, high_open=self.high_open, hint=self.hint)
        elif not isinstance(value, bool):
            raise TypeError(f"{name} must be a bool, got {value!r}.")


#: Every K-FAC hyperparameter of ``KFAC(...)``, by its argument name
HYPERPARAMETERS = {
    "lr": Hyperparameter(0.25, low=0.0),
    "momentum": Hyperparameter(0.9, low=0.0, high=1.0),
    "kfac_clip": Hyperparameter(0.001, low=0.0, low_open=True),
    "damping": Hyperparameter(0.01, low=0.0, low_open=True),
    "stats_decay": Hyperparameter(0.99, low=0.0, high=1.0),
    "stats_warm_up": Hyperparameter(True),
    "inverse_interval": Hyperparameter(10, integer=True, advice="Try 10 (SB2's kfac_update)."),
    "stats_interval": Hyperparameter(1, integer=True, advice="Try 1."),
    "stats_samples": Hyperparameter(
        None, integer=True, optional=True, advice="Try a quarter of the batch, or None for all of it."
    ),
    "inverse_method": Hyperparameter("cholesky", choices=INVERSE_METHODS),
    "trust_region": Hyperparameter("joint", choices=TRUST_REGIONS),
    "weight_sharing": Hyperparameter("expand", choices=WEIGHT_SHARING_FORMS, per_layer=True),
    "lstm_curvature": Hyperparameter("kronecker", choices=LSTM_CURVATURES),
    "loss_reduction": Hyperparameter("mean", choices=LOSS_REDUCTIONS),
    "distributed_inverses": Hyperparameter("all_ranks", choices=DISTRIBUTED_INVERSES),
    "max_grad_norm": Hyperparameter(
        None, low=0.0, low_open=True, high_open=False, optional=True, advice="Try 0.5 (SB2's ACKTR), or None not to clip."
    ),
    "max_factor_dim": Hyperparameter(
        8192, integer=True, optional=True, advice="Try 8192, or None to give every layer Kronecker factors."
    ),
}
#: The options a parameter group may set: checked for the defaults and every group at construction, and for every
#: group at each step() (they may be set later)
GROUP_OPTIONS = ("lr", "momentum", "kfac_clip", "damping", "stats_decay")
#: The defaults, for signatures
DEFAULTS = {name: hyperparameter.default for name, hyperparameter in HYPERPARAMETERS.items()}
