"""Optuna sampler for ACKTR, in the form rl-zoo's ``HYPERPARAMS_SAMPLER`` / ``HYPERPARAMS_CONVERTER`` expect."""

from typing import Any

import optuna
from rl_zoo3.hyperparams_opt import convert_onpolicy_params
from rl_zoo3.utils import SimpleLinearSchedule


def convert_acktr_params(sampled_params: dict[str, Any]) -> dict[str, Any]:
    """
    Turn raw sampled (or stored) parameters into ACKTR hyperparameters, as rl-zoo's yaml writes them: the learning
    rate is ``"lin_X"`` for a linear schedule and a number for a constant one, which rl-zoo turns into schedules
    when it trains with a stored trial (``--storage S --study-name N --trial-id K``).

    :param sampled_params: The trial's parameters, as :func:`sample_acktr_params` draws them
    :return: ACKTR hyperparameters
    """
    sampled_params = dict(sampled_params)
    lr_schedule = sampled_params.pop("lr_schedule")
    hyperparams = convert_onpolicy_params(sampled_params)
    if lr_schedule == "linear":
        hyperparams["learning_rate"] = f"lin_{hyperparams['learning_rate']}"
    return hyperparams


def sample_acktr_params(trial: optuna.Trial, n_actions: int, n_envs: int, additional_args: dict) -> dict[str, Any]:
    """
    Sampler for ACKTR hyperparameters: K-FAC-scale learning rates (natural-gradient steps, 1e-3 to 1),
    the trust-region size and the Fisher weight of the critic, besides A2C's.

    :param trial: The Optuna trial
    :param n_actions: Number of actions (unused, part of rl-zoo's sampler signature)
    :param n_envs: Number of environments (unused, part of rl-zoo's sampler signature)
    :param additional_args: rl-zoo's extra arguments (unused)
    :return: ACKTR keyword arguments (the learning rate a schedule or a number: rl-zoo's objective passes them to the
        constructor as they are)
    """
    n_steps = trial.suggest_categorical("n_steps", [8, 16, 32, 64, 128, 256, 512, 1024, 2048])
    one_minus_gamma = trial.suggest_float("one_minus_gamma", 0.0001, 0.03, log=True)
    one_minus_gae_lambda = trial.suggest_float("one_minus_gae_lambda", 0.0001, 0.1, log=True)
    learning_rate = trial.suggest_float("learning_rate", 1e-3, 1.0, log=True)
    lr_schedule = trial.suggest_categorical("lr_schedule", ["linear", "constant"])
    kfac_clip = trial.suggest_float("kfac_clip", 1e-4, 1e-2, log=True)
    ent_coef = trial.suggest_float("ent_coef", 0.00000001, 0.1, log=True)
    vf_coef = trial.suggest_float("vf_coef", 0.1, 1.0)
    vf_fisher_coef = trial.suggest_float("vf_fisher_coef", 0.25, 2.0, log=True)
    net_arch = trial.suggest_categorical("net_arch", ["tiny", "small", "medium"])
    activation_fn = trial.suggest_categorical("activation_fn", ["tanh", "relu"])

    # Display true values
    trial.set_user_attr("gamma", 1 - one_minus_gamma)

    hyperparams = convert_acktr_params(
        {
            "n_steps": n_steps,
            "one_minus_gamma": one_minus_gamma,
            "one_minus_gae_lambda": one_minus_gae_lambda,
            "learning_rate": learning_rate,
            "lr_schedule": lr_schedule,
            "kfac_clip": kfac_clip,
            "ent_coef": ent_coef,
            "vf_coef": vf_coef,
            "vf_fisher_coef": vf_fisher_coef,
            "net_arch": net_arch,
            "activation_fn": activation_fn,
        }
    )
    if lr_schedule == "linear":
        hyperparams["learning_rate"] = SimpleLinearSchedule(learning_rate)
    return hyperparams
