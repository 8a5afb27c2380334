"""Argument checks whose errors name the argument, the value and the valid range."""

import math
from numbers import Integral, Real
from typing import Any


def check_number(
    name: str, value: Any, low: float, high: float = math.inf, low_open: bool = False, high_open: bool = True, hint: str = ""
) -> None:
    """
    Raise a ``ValueError`` unless ``value`` is a real number in the interval (numpy scalars included, bools not).

    :param name: Argument name, used in the message
    :param value: Value to check
    :param low: Lower bound
    :param high: Upper bound
    :param low_open: Whether ``low`` itself is excluded
    :param high_open: Whether ``high`` itself is excluded
    :param hint: Advice appended to the message
    """
    ok = isinstance(value, Real) and not isinstance(value, bool) and not math.isnan(value)
    if ok:
        ok = (value > low if low_open else value >= low) and (value < high if high_open else value <= high)
    if not ok:
        interval = f"{'(' if low_open else '['}{low:g}, {high:g}{')' if high_open else ']'}"
        raise ValueError(f"{name} must be in {interval}, got {value!r}. {hint}".rstrip())


def check_interval(name: str, value: Any, hint: str = "") -> None:
    """
    Raise a ``ValueError`` unless ``value`` is an integer >= 1 (numpy integers included, bools not).

    :param name: Argument name, used in the message
    :param value: Value to check
    :param hint: Advice appended to the message
    """
    if isinstance(value, bool) or not isinstance(value, Integral) or value < 1:
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}. {hint}".rstrip())


def check_choice(name: str, value: Any, choices: tuple[str, ...]) -> None:
    """
    Raise a ``ValueError`` unless ``value`` is one of ``choices``.

    :param name: Argument name, used in the message
    :param value: Value to check
    :param choices: The valid values
    """
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}.")
