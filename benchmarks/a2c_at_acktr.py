"""
A2C at ACKTR's settings: the benchmark row that isolates what the natural gradient buys.

The row's entry is the package's ACKTR entry for the env (``hyperparams/acktr.yml``, where those settings live) less
the arguments ACKTR takes and A2C does not (K-FAC's, the trust region's, ``vf_fisher_coef``): the same ``n_envs``,
``n_steps``, ``gamma``, ``gae_lambda``, normalization, wrappers, network and coefficients, trained by A2C's own
optimizer (SB3's RMSprop) at a learning rate tuned for it, on the shape of ACKTR's schedule (``lin_`` or constant).
Only the optimizer and its learning rate differ from the ACKTR row. The tuned rates live in
``benchmarks/hyperparams/a2c_at_acktr.yml``, each with the study that chose it.

Tune the learning rate with rl-zoo's ``-optimize`` (this script takes rl-zoo's ``train`` arguments; its sampler
draws the learning rate alone), on seeds apart from the reported ones, then run the protocol::

    python benchmarks/a2c_at_acktr.py --env Pendulum-v1 -n 200000 -optimize --n-trials 20 --n-evaluations 10 \\
        --sampler tpe --pruner median --seed 100 --num-threads 1 -f /tmp/a2c_at_acktr
    python benchmarks/sample_efficiency.py --env Pendulum-v1 --algo a2c_at_acktr --seed 0
"""

import argparse
import inspect
import sys
import tempfile
from functools import partial
from pathlib import Path
from typing import Any

import optuna
import yaml
from rl_zoo3.utils import SimpleLinearSchedule
from stable_baselines3 import A2C

from sb3_acktr import ACKTR
from sb3_acktr.zoo import HYPERPARAMS
from sb3_acktr.zoo import main as zoo_main

#: The row's algorithm name in rl-zoo (``--algo``) and in the results
NAME = "a2c_at_acktr"
#: The tuned learning rates, ``{env_id: {learning_rate: X}}``
TUNED = Path(__file__).resolve().parent / "hyperparams" / f"{NAME}.yml"
#: The range the learning rate is drawn from (log-uniform): RMSprop's, rl-zoo's A2C sampler's up to 0.1
LEARNING_RATE_RANGE = (1e-5, 1e-1)


def acktr_only_keys() -> set[str]:
    """The constructor arguments ACKTR takes and A2C does not (K-FAC's, the trust region's, the critic's Fisher weight)."""
    return set(inspect.signature(ACKTR.__init__).parameters) - set(inspect.signature(A2C.__init__).parameters)


def acktr_defaults_a2c_lacks() -> dict[str, Any]:
    """
    ACKTR's defaults for the arguments both take but default differently (``n_steps``, ``ent_coef``, ``vf_coef``):
    an entry that leaves them out trains ACKTR at these, so A2C at ACKTR's settings must get them written out.
    The learning rate is not among them: it is tuned.
    """
    acktr, a2c = inspect.signature(ACKTR.__init__).parameters, inspect.signature(A2C.__init__).parameters
    return {
        key: parameter.default
        for key, parameter in acktr.items()
        if key in a2c and key != "learning_rate" and parameter.default != a2c[key].default
    }


def acktr_entry(env_id: str) -> dict[str, Any]:
    """
    The package's ACKTR entry for ``env_id``, anchors resolved.

    :param env_id: Environment id
    :return: The entry
    :raises KeyError: If ``hyperparams/acktr.yml`` has no entry for ``env_id``
    """
    entries = yaml.safe_load(HYPERPARAMS.read_text())
    if env_id not in entries:
        raise KeyError(f"{HYPERPARAMS.name} has no entry for {env_id}: A2C at ACKTR's settings needs ACKTR's entry")
    return dict(entries[env_id])


def linear_schedule(entry: dict[str, Any]) -> bool:
    """Whether an ACKTR entry's learning rate is a linear schedule (``lin_X``; ACKTR's default, 0.25, is constant)."""
    return str(entry.get("learning_rate", "")).startswith("lin_")


def tuned_learning_rate(env_id: str) -> float:
    """
    The learning rate tuned for A2C at ACKTR's settings on ``env_id``.

    :param env_id: Environment id
    :return: The rate (the schedule's initial value when ACKTR's entry is linear)
    :raises KeyError: If none was tuned yet, saying how to tune it
    """
    tuned = yaml.safe_load(TUNED.read_text()) or {}
    if env_id not in tuned:
        raise KeyError(
            f"no tuned learning rate for {env_id} in {TUNED}: tune it first with "
            f"`python benchmarks/a2c_at_acktr.py --env {env_id} -optimize ...` (see the module's docstring) and add "
            f"the best trial's rate there"
        )
    return float(tuned[env_id]["learning_rate"])


def a2c_entry(env_id: str, learning_rate: float | None) -> dict[str, Any]:
    """
    The A2C entry at ACKTR's settings: ACKTR's entry without ACKTR's own keys, with ACKTR's defaults where A2C's
    differ and the entry is silent, at ``learning_rate`` on the shape of ACKTR's schedule.

    :param env_id: Environment id
    :param learning_rate: A2C's learning rate, or None to leave it to a sampler (``-optimize``)
    :return: The entry, as rl-zoo reads it from a yaml
    """
    entry = acktr_entry(env_id)
    linear = linear_schedule(entry)
    dropped = acktr_only_keys() | {"learning_rate"}
    entry = acktr_defaults_a2c_lacks() | {key: value for key, value in entry.items() if key not in dropped}
    if learning_rate is not None:
        entry["learning_rate"] = f"lin_{learning_rate}" if linear else learning_rate
    return entry


def convert_learning_rate(sampled_params: dict[str, Any], linear: bool) -> dict[str, Any]:
    """
    A stored trial's parameters as the yaml writes them (rl-zoo's ``HYPERPARAMS_CONVERTER``).

    :param sampled_params: ``{"learning_rate": X}``
    :param linear: Whether the schedule is linear (``lin_X``)
    :return: ``{"learning_rate": "lin_X" or X}``
    """
    learning_rate = sampled_params["learning_rate"]
    return {"learning_rate": f"lin_{learning_rate}" if linear else learning_rate}


def sample_learning_rate(
    trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict, linear: bool
) -> dict[str, Any]:
    """
    rl-zoo sampler (``HYPERPARAMS_SAMPLER``) that draws the learning rate alone: every other key stays the entry's.

    :param trial: The Optuna trial
    :param n_actions: Number of actions (unused, part of rl-zoo's sampler signature)
    :param n_envs: Number of environments (unused, part of rl-zoo's sampler signature)
    :param additional_args: rl-zoo's extra arguments (unused)
    :param linear: Whether the schedule is linear, as ACKTR's entry
    :return: ``{"learning_rate": X}``, X a schedule when ``linear``
    """
    learning_rate = trial.suggest_float("learning_rate", *LEARNING_RATE_RANGE, log=True)
    return {"learning_rate": SimpleLinearSchedule(learning_rate) if linear else learning_rate}


def register(env_id: str) -> None:
    """
    Add ``a2c_at_acktr`` (A2C) to rl-zoo, with the learning-rate sampler on the shape of ``env_id``'s ACKTR schedule.

    :param env_id: Environment id
    """
    import rl_zoo3
    from rl_zoo3 import hyperparams_opt

    linear = linear_schedule(acktr_entry(env_id))
    rl_zoo3.ALGOS[NAME] = A2C
    hyperparams_opt.HYPERPARAMS_SAMPLER[NAME] = partial(sample_learning_rate, linear=linear)
    hyperparams_opt.HYPERPARAMS_CONVERTER[NAME] = partial(convert_learning_rate, linear=linear)


def main(argv: list[str] | None = None) -> None:
    """
    rl-zoo's ``train`` with ``--algo a2c_at_acktr`` on a yaml of the derived entry: ``-optimize`` tunes the learning
    rate; without it, trains at the tuned one.

    :param argv: rl-zoo ``train`` arguments, ``--env`` among them (default: ``sys.argv[1:]``)
    """
    args = list(sys.argv[1:] if argv is None else argv)
    # Read (not consume) what this script needs; rl-zoo parses every argument again
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--env", required=True, help="Environment id: its entry in hyperparams/acktr.yml is used")
    parser.add_argument("--algo", help=argparse.SUPPRESS)
    parser.add_argument("--conf-file", "-conf", help=argparse.SUPPRESS)
    parser.add_argument(
        "-optimize", "--optimize-hyperparameters", dest="optimize", action="store_true", help="Tune the learning rate"
    )
    known, _ = parser.parse_known_args(args)
    if known.algo is not None or known.conf_file is not None:
        parser.error("--algo and --conf-file are set by this script (a2c_at_acktr, the derived entry)")
    try:
        entry = a2c_entry(known.env, None if known.optimize else tuned_learning_rate(known.env))
    except KeyError as error:
        parser.error(error.args[0])
    register(known.env)
    with tempfile.TemporaryDirectory(prefix=f"{NAME}_") as folder:
        config = Path(folder) / f"{NAME}.yml"
        config.write_text(yaml.safe_dump({known.env: entry}))
        zoo_main(["train", "--algo", NAME, "--conf-file", str(config), *args])


if __name__ == "__main__":
    main()
