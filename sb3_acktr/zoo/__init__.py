"""
ACKTR in the RL Baselines3 Zoo, without forking it.

rl-zoo reads its algorithms and samplers from plain dicts at call time: :func:`register` adds ``acktr`` to them,
and :func:`main` forwards every flag to rl-zoo's own ``train``/``enjoy``/``record_video``, pointing
``--conf-file`` at the package's ``hyperparams/acktr.yml`` when the algorithm is ``acktr`` and none was given
(the pattern rl-zoo documents for SBX)::

    python -m sb3_acktr.zoo train --algo acktr --env CartPole-v1
    python -m sb3_acktr.zoo train --algo a2c --env CartPole-v1    # rl-zoo's own yaml, for comparison
    python -m sb3_acktr.zoo enjoy --algo acktr --env CartPole-v1 -f logs/
    python -m sb3_acktr.zoo results --algo acktr --env CartPole-v1 -f logs/   # table + evaluations.png

MinAtar games (``--env MinAtar/<Game>-v1``, with the ``minatar`` extra) are registered in gymnasium before rl-zoo
runs (:func:`sb3_acktr.minatar.register_minatar_envs`).
"""

import atexit
import os
import re
import runpy
import shutil
import sys
import tempfile
from pathlib import Path

from sb3_acktr.acktr.distributed import launched_by_torchrun
from sb3_acktr.extras import env_missing_modules, import_optional, missing_module_message
from sb3_acktr.minatar import ENV_ID_PREFIX, register_minatar_envs

#: The package's zoo hyperparameters (``hyperparams/acktr.yml``, shipped inside the wheel)
HYPERPARAMS = Path(__file__).resolve().parent.parent / "hyperparams" / "acktr.yml"
#: RecurrentACKTR's (``hyperparams/acktr_lstm.yml``), for ``--algo acktr_lstm``
RECURRENT_HYPERPARAMS = HYPERPARAMS.with_name("acktr_lstm.yml")
#: The package's algorithms in rl-zoo, and their default ``--conf-file``
ZOO_CONFIGS = {"acktr": HYPERPARAMS, "acktr_lstm": RECURRENT_HYPERPARAMS}

COMMANDS = ("train", "enjoy", "record_video", "results")
USAGE = f"usage: python -m sb3_acktr.zoo {{{','.join(COMMANDS)}}} [rl-zoo arguments ...]"


def register() -> None:
    """
    Add ACKTR to rl-zoo: ``rl_zoo3.ALGOS["acktr"]`` and ``["acktr_lstm"]`` (RecurrentACKTR, named as rl-zoo names
    RecurrentPPO ``ppo_lstm``), with ACKTR's Optuna sampler and converter for both. Idempotent.

    Call it before ``rl_zoo3.train.train()`` / ``rl_zoo3.enjoy.enjoy()`` in your own scripts.

    :raises ImportError: If rl-zoo is not installed, naming the ``zoo`` extra
    """
    rl_zoo3 = import_optional("rl_zoo3", "sb3_acktr.zoo")
    rl_zoo_hyperparams_opt = import_optional("rl_zoo3.hyperparams_opt", "sb3_acktr.zoo")

    from sb3_acktr import ACKTR, RecurrentACKTR
    from sb3_acktr.zoo.hyperparams_opt import convert_acktr_params, sample_acktr_params

    for name, algo in (("acktr", ACKTR), ("acktr_lstm", RecurrentACKTR)):
        rl_zoo3.ALGOS[name] = algo
        rl_zoo_hyperparams_opt.HYPERPARAMS_SAMPLER[name] = sample_acktr_params
        rl_zoo_hyperparams_opt.HYPERPARAMS_CONVERTER[name] = convert_acktr_params


def _option(args: list[str], name: str) -> str | None:
    """The value of option ``name`` (e.g. ``"--algo"``) in rl-zoo arguments, if given."""
    for index, arg in enumerate(args):
        if arg == name and index + 1 < len(args):
            return args[index + 1]
        if arg.startswith(f"{name}="):
            return arg.split("=", 1)[1]
    return None


def _has_conf_file(args: list[str]) -> bool:
    # argparse also accepts unambiguous prefixes of --conf-file
    return any(arg == "-conf" or (arg.startswith("--conf") and "--conf-file".startswith(arg.split("=")[0])) for arg in args)


def _conf_file(args: list[str]) -> str:
    """The hyperparameters file rl-zoo reads, for error messages."""
    for index, arg in enumerate(args):
        if _has_conf_file([arg]):
            return arg.split("=", 1)[1] if "=" in arg else args[index + 1]
    return "rl-zoo's hyperparams/<algo>.yml"


def _params(args: list[str]) -> list[str]:
    """The ``key:value`` items given to rl-zoo's ``-params`` (``--hyperparams``)."""
    items: list[str] = []
    for index, arg in enumerate(args):
        if arg in ("-params", "--hyperparams"):
            for item in args[index + 1 :]:
                if item.startswith("-"):
                    break
                items.append(item)
    return items


def _source_of(error: TypeError, args: list[str]) -> str:
    """Where the unexpected keyword argument of ``error`` came from: ``-params`` if given there, else the yaml file."""
    match = re.search(r"unexpected keyword argument '(\w+)'", str(error))
    if match and any(item.split(":", 1)[0] == match.group(1) for item in _params(args)):
        return "-params"
    return _conf_file(args)


def _data_parallel_arguments(args: list[str]) -> list[str]:
    """
    Under ``torchrun``: rank 0 trains with the arguments as given (its log folder is the run's); the other ranks
    step their envs and take part in every update, but evaluate, save and log nothing, into a temporary folder.
    """
    algo = _option(args, "--algo")
    if algo not in ZOO_CONFIGS:
        sys.exit(f"error: under torchrun only --algo acktr or acktr_lstm trains data-parallel, got --algo {algo}.")
    if any(arg in ("-optimize", "--optimize-hyperparameters") for arg in args):
        sys.exit(
            "error: -optimize does not run under torchrun. Run several optimization processes on one study instead "
            "(--storage, --study-name; see the zoo guide)."
        )
    if int(os.environ["RANK"]) == 0:
        return args
    scratch = tempfile.mkdtemp(prefix=f"sb3_acktr_rank{os.environ['RANK']}_")
    atexit.register(shutil.rmtree, scratch, ignore_errors=True)
    # argparse keeps the last value of an option given twice
    quiet = ["--eval-freq", "-1", "--save-freq", "-1", "--tensorboard-log", "", "--verbose", "0"]
    return [*args, "--log-folder", scratch, *quiet]


def main(argv: list[str] | None = None) -> None:
    """
    Command line: ``python -m sb3_acktr.zoo {train,enjoy,record_video} [rl-zoo arguments]``, and ``results``
    (print and plot the evaluations of a run, see :mod:`sb3_acktr.zoo.results`).

    :param argv: Arguments without the program name (default: ``sys.argv[1:]``)
    """
    args = list(sys.argv[1:] if argv is None else argv)
    if not args or args[0] not in COMMANDS:
        print(USAGE, file=sys.stderr)
        sys.exit(2)
    command, args = args[0], args[1:]
    try:
        if command == "results":
            import_optional("sb3_acktr.zoo.results", "python -m sb3_acktr.zoo results").main(args)
            return
        register()
        env_id = _option(args, "--env")
        if env_id is not None and env_id.startswith(ENV_ID_PREFIX):
            register_minatar_envs()
    except ImportError as error:
        sys.exit(f"error: {error}")
    missing = env_missing_modules(env_id) if env_id is not None else ()
    if missing:
        sys.exit(f"error: {missing_module_message(missing[0], str(env_id))}")
    algo = _option(args, "--algo")
    if command == "train" and algo in ZOO_CONFIGS and not _has_conf_file(args):
        args += ["--conf-file", str(ZOO_CONFIGS[algo])]
    if command == "train" and launched_by_torchrun():
        args = _data_parallel_arguments(args)
    # rl-zoo parses sys.argv itself
    program = "python -m sb3_acktr.zoo" if sys.argv[0].endswith("__main__.py") else Path(sys.argv[0]).name
    sys.argv = [f"{program} {command}", *args]
    if command == "train":
        from rl_zoo3.train import train

        try:
            train()
        except TypeError as error:
            # rl-zoo passes every yaml key it does not consume to the algorithm's constructor
            if "unexpected keyword argument" not in str(error):
                raise
            sys.exit(
                f"error: {error}. Every hyperparameter (yaml key or -params) that rl-zoo does not consume itself "
                f"must be an argument of the algorithm's constructor: check the spelling in {_source_of(error, args)}."
            )
    elif command == "enjoy":
        from rl_zoo3.enjoy import enjoy

        enjoy()
    else:
        runpy.run_module("rl_zoo3.record_video", run_name="__main__")
