import copy
import math
import warnings
from typing import Any, ClassVar, TypeVar

import numpy as np
import torch as th
from gymnasium import spaces
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from stable_baselines3.common.buffers import RolloutBuffer
from stable_baselines3.common.callbacks import BaseCallback, CallbackList, ConvertCallback
from stable_baselines3.common.distributions import Distribution, StateDependentNoiseDistribution, kl_divergence
from stable_baselines3.common.logger import Logger
from stable_baselines3.common.on_policy_algorithm import OnPolicyAlgorithm
from stable_baselines3.common.policies import ActorCriticPolicy, BasePolicy
from stable_baselines3.common.type_aliases import GymEnv, MaybeCallback, Schedule
from stable_baselines3.common.utils import explained_variance
from stable_baselines3.common.vec_env import SubprocVecEnv, VecEnv
from torch import distributed as dist
from torch import nn
from torch.nn import functional as F

from sb3_acktr.acktr.distributed import GlobalTimesteps, all_agree, join_torchrun, launched_by_torchrun
from sb3_acktr.acktr.policies import CnnPolicy, MlpPolicy, MultiInputPolicy, training_mode_matters
from sb3_acktr.kfac import KFAC
from sb3_acktr.kfac.checks import check_choice, check_interval, check_number
from sb3_acktr.kfac.distributed import all_reduce_mean_, check_same_on_all_ranks, default_process_group
from sb3_acktr.kfac.hyperparameters import DEFAULTS, GROUP_OPTIONS, HYPERPARAMETERS

SelfACKTR = TypeVar("SelfACKTR", bound="ACKTR")

#: ACKTR's K-FAC arguments (SB2's names) and the KFAC argument each one is: their defaults, ranges and hints are
#: KFAC's (sb3_acktr.kfac.hyperparameters), checked under ACKTR's names
KFAC_ARGUMENTS = {
    "kfac_clip": "kfac_clip",
    "kfac_update": "inverse_interval",
    "kfac_stats_update": "stats_interval",
    "kfac_stats_samples": "stats_samples",
    "kfac_weight_sharing": "weight_sharing",
    "kfac_lstm_curvature": "lstm_curvature",
    "kfac_damping": "damping",
    "kfac_stats_decay": "stats_decay",
    "kfac_stats_warm_up": "stats_warm_up",
    "kfac_momentum": "momentum",
    "kfac_inverse_method": "inverse_method",
    "kfac_distributed_inverses": "distributed_inverses",
    "kfac_max_factor_dim": "max_factor_dim",
}


def kfac_default(name: str) -> Any:
    """
    :param name: One of ACKTR's K-FAC arguments (e.g. ``"kfac_update"``)
    :return: Its default: that of the KFAC hyperparameter it maps to (e.g. ``inverse_interval``)
    """
    return DEFAULTS[KFAC_ARGUMENTS[name]]


#: ACKTR's ``trust_region`` values and KFAC's ``trust_region`` for each: actor and critic are its parameter groups
KFAC_TRUST_REGIONS = {"joint": "joint", "per_network": "per_group"}
#: ``train/exact_kl`` is computed at every update on this many samples of the batch (see ``ACKTR._exact_kl_samples``):
#: a no-grad forward pass of 64 samples after the step (and one before it where the policy's mode matters), a cost
#: docs/benchmark.md measures against A2C's update
EXACT_KL_SAMPLES = 64
#: The parameters that define each kind of torch distribution SB3's action distributions hold, by which
#: :func:`distribution_rows` takes some rows of a batch's distribution
ROW_PARAMETERS: dict[type[th.distributions.Distribution], tuple[str, ...]] = {
    th.distributions.Categorical: ("logits",),
    th.distributions.Bernoulli: ("logits",),
    th.distributions.Normal: ("loc", "scale"),
}
#: Below this initial learning rate (Adam/RMSprop's scale) ACKTR warns: its steps are natural-gradient steps
SMALLEST_USUAL_LEARNING_RATE = 1e-3
#: ``target_kl``'s adaptation (OpenAI baselines' continuous-control ACKTR): the learning rate's multiplier is divided by
#: this factor after an update whose exact KL exceeds twice the target, multiplied by it below half the target
KL_ADAPTATION_FACTOR = 1.5
#: The multiplier's range: at most 1 (``learning_rate`` stays the largest step, the paper's η_max); at least 1e-4, from
#: which 23 updates under half the target bring it back to 1 (baselines clamped its step size to [1e-8, 1])
KL_MULTIPLIER_RANGE = (1e-4, 1.0)


def observation_rows(observations: th.Tensor | dict[str, th.Tensor], rows: slice) -> th.Tensor | dict[str, th.Tensor]:
    """Some rows of a batch of observations (of each key of Dict observations)."""
    if isinstance(observations, dict):
        return {key: value[rows] for key, value in observations.items()}
    return observations[rows]


def distribution_rows(distribution: Distribution, rows: slice) -> Distribution | None:
    """
    An action distribution on some rows of its batch, detached (a shallow copy of the SB3 distribution holding new
    torch distributions), or None if a torch distribution it holds is of a kind :data:`ROW_PARAMETERS` does not list.

    :param distribution: SB3's distribution on a batch
    :param rows: The rows to keep
    :return: The distribution on those rows, or None
    """
    parts = distribution.distribution if isinstance(distribution.distribution, list) else [distribution.distribution]
    kept = []
    for part in parts:
        names = ROW_PARAMETERS.get(type(part))
        if names is None:
            return None
        kept.append(type(part)(**{name: getattr(part, name)[rows].detach() for name in names}, validate_args=False))
    copied = copy.copy(distribution)
    copied.distribution = kept if isinstance(distribution.distribution, list) else kept[0]
    return copied


def masked_mean(tensor: th.Tensor, mask: th.Tensor | None) -> th.Tensor:
    """The mean of ``tensor`` over the rows ``mask`` keeps (all of them if None): padded batches count only samples."""
    return tensor.mean() if mask is None else tensor[mask].mean()


class ACKTR(OnPolicyAlgorithm):
    """
    Actor Critic using Kronecker-Factored Trust Region (ACKTR)

    A2C's loss, optimized by K-FAC natural-gradient steps inside a KL trust region. The curvature is the Fisher
    of the joint output ``p(a, v | s) = π(a|s)·N(v; V(s), 1)``: actions sampled from the current policy and a
    Gauss-Newton critic term weighted by ``vf_fisher_coef``.

    Paper: https://arxiv.org/abs/1708.05144
    Code: Written for SB3; the K-FAC conventions follow OpenAI baselines / Stable Baselines 2 (argument names and
    defaults) and Martens & Grosse 2015 (factored damping).

    :param policy: The policy model to use (MlpPolicy, CnnPolicy, ...)
    :param env: The environment to learn from (if registered in Gym, can be str)
    :param learning_rate: The learning rate η_max, it can be a function of the current progress remaining
        (from 1 to 0). K-FAC steps are natural-gradient steps: their scale is ~0.01-1, not Adam's ~1e-4
    :param n_steps: The number of steps to run for each environment per update
        (i.e. batch size is n_steps * n_env where n_env is number of environment copies running in parallel)
    :param gamma: Discount factor
    :param gae_lambda: Factor for trade-off of bias vs variance for Generalized Advantage Estimator.
        Equivalent to classic advantage (the paper's k-step return) when set to 1.
    :param ent_coef: Entropy coefficient for the loss calculation
    :param vf_coef: Value function coefficient for the loss calculation
    :param vf_fisher_coef: Scale of the critic's Fisher loss ``-vf_fisher_coef * log N(ṽ; V(s), 1)``. It scales the
        loss whose gradients make the factors, so the critic's block of the Fisher is ``vf_fisher_coef²·JᵀJ`` (the
        Gauss-Newton matrix of a Gaussian critic with standard deviation ``1 / vf_fisher_coef``). SB2 scaled its loss
        ``vf_fisher_coef * (V - ṽ)²`` the same way, with a block 4x ours: SB2's 1.0 equals 2.0 here
    :param max_grad_norm: The maximum value for the gradient clipping, applied to the raw gradient before
        preconditioning (``float("inf")`` disables it), as A2C's ``clip_grad_norm_``: K-FAC does it inside its step
        (``KFAC``'s ``max_grad_norm``)
    :param kfac_clip: Trust-region size (SB2's name; 2δ in the ACKTR paper): the step is scaled by
        ``min(1, sqrt(kfac_clip / (lr**2 * Δθᵀ∇)))``, so SB2's default 0.001 means δ = 0.0005
    :param kfac_update: Recompute the K-FAC inverses every ``kfac_update`` updates (SB2's name)
    :param kfac_stats_update: Refresh the K-FAC statistics (the Fisher backward pass) every ``kfac_stats_update``
        updates
    :param kfac_stats_samples: If set, estimate the Kronecker factors of each statistics update from this many
        samples of the batch, drawn at random (the Fisher backward pass still uses the whole batch). Makes the
        statistics' cost independent of the batch size: the CNN's convolution factors dominate an Atari update at
        batch 640 otherwise (see docs/benchmark.md). ``None``: the whole batch
    :param kfac_weight_sharing: Form of the Kronecker factors of the convolutions and of a recurrent policy's LSTM layers
        (``KFAC``'s ``weight_sharing``): ``"expand"`` (KFC, Grosse & Martens 2016: output positions, or time steps, as
        extra samples, cost ∝ positions) or ``"reduce"`` (Eschenhagen et al. 2023: aggregated per sample, or per
        sequence), or a dict from layer names of the policy (e.g. ``"features_extractor.cnn.0"``,
        ``"lstm_actor.l0"``) to forms
    :param kfac_lstm_curvature: Curvature of the ``nn.LSTM`` weights of a recurrent policy (``KFAC``'s
        ``lstm_curvature``): ``"kronecker"`` (Kronecker factors under independence across time steps, Martens, Ba &
        Johnson 2018) or ``"diagonal"`` (the diagonal Fisher)
    :param kfac_damping: Tikhonov damping λ of K-FAC (factored between the two Kronecker factors)
    :param kfac_stats_decay: Running-average weight of the old K-FAC statistics, in [0, 1)
    :param kfac_stats_warm_up: Plainly average the first ``1/(1 − kfac_stats_decay)`` batches of Kronecker factors
        (see :class:`~sb3_acktr.KFAC`'s ``stats_warm_up``): the trust region's quadratic model then predicts the early
        steps' KL closely (exact / quadratic-model KL in [0.5, 2] over the first 100 updates, docs/benchmark.md), and
        those steps are smaller. The zoo's entries, tuned without it, set it to False
    :param kfac_momentum: K-FAC momentum in [0, 1) (baselines' convention: the steady-state step is lr·ν·Δθ, the first
        one (1 − m)·lr·ν·Δθ, a tenth at 0.9). 0 applies every trust-region step whole, which helps where the policy
        must move in its first updates (the zoo's Acrobot-v1 and InvertedPendulum-v5 entries)
    :param kfac_distributed_inverses: Under ``torchrun``, ``"all_ranks"`` computes every K-FAC inverse on every rank
        (no communication) or ``"one_rank"`` each layer's on one rank, shared in one collective (``KFAC``'s
        ``distributed_inverses``; worth it for wide layers and many ranks). No effect in one process
    :param kfac_max_factor_dim: The widest Kronecker factor a layer may get (``KFAC``'s ``max_factor_dim``): a wider
        layer, such as an MlpPolicy's first layer on a flattened image, uses the diagonal Fisher, with a warning (its
        factor would take gigabytes and minutes per inverse). None: no limit
    :param kfac_inverse_method: ``"cholesky"`` (factored Tikhonov damping, as the paper) or ``"eigen"``
        (damping added to eigenvalue products, as OpenAI baselines and SB2)
    :param trust_region: ``"joint"``: one trust-region scale for actor and critic together (SB2);
        ``"per_network"``: actor and critic each scaled by their own ν (needs an actor and a critic that share
        no parameter, as SB3's default MlpPolicy or ``share_features_extractor=False``)
    :param target_kl: If set, adapt the step size to the real KL of the updates, as OpenAI baselines' continuous-control
        ACKTR did: after each update, its exact KL (``train/exact_kl``, averaged over the ranks of a distributed run)
        above ``2 * target_kl`` divides the learning rate's multiplier by 1.5, below ``target_kl / 2`` multiplies it by
        1.5, within [1e-4, 1] (``learning_rate`` stays the largest step). It bounds the KL that the trust region's
        quadratic model under-predicts, as on a recurrent policy (docs/benchmark.md). ``None``: off. Not PPO's
        ``target_kl``, which stops a PPO update's epochs early
    :param action_bound_coef: Weight of a penalty on a Gaussian policy's mean beyond the action bounds: the batch
        mean of ``Σᵢ max(0, |μᵢ − cᵢ| / hᵢ − 1)²`` (``c``, ``h``: the bounds' centre and half-width). The environment
        clips the actions; where the mean sits many standard deviations beyond a bound, every sampled action is
        clipped to it, the return does not depend on the sample and the policy gradient there vanishes, so nothing
        pulls the mean back (InvertedDoublePendulum-v5's falls, docs/benchmark.md). Needs a ``Box`` action space with
        finite bounds and unsquashed actions. 0: off
    :param normalize_advantage: Whether to normalize or not the advantage
    :param use_sde: Whether to use generalized State Dependent Exploration (gSDE)
        instead of action noise exploration (default: False)
    :param sde_sample_freq: Sample a new noise matrix every n steps when using gSDE
        Default: -1 (only sample at the beginning of the rollout)
    :param rollout_buffer_class: Rollout buffer class to use. If ``None``, it will be automatically selected.
    :param rollout_buffer_kwargs: Keyword arguments to pass to the rollout buffer on creation.
    :param stats_window_size: Window size for the rollout logging, specifying the number of episodes to average
        the reported success rate, mean episode length, and mean reward over
    :param tensorboard_log: the log location for tensorboard (if None, no logging)
    :param policy_kwargs: additional arguments to be passed to the policy on creation (``optimizer_class`` is
        ignored: ACKTR always optimizes with :class:`~sb3_acktr.KFAC`)
    :param verbose: Verbosity level: 0 for no output, 1 for info messages (such as device or wrappers used), 2 for
        debug messages
    :param seed: Seed for the pseudo random generators
    :param device: Device (cpu, cuda, ...) on which the code should be run.
        Setting it to auto, the code will be run on the GPU if possible.
    :param _init_setup_model: Whether or not to build the network at the creation of the instance
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpPolicy": MlpPolicy,
        "CnnPolicy": CnnPolicy,
        "MultiInputPolicy": MultiInputPolicy,
    }

    def __init__(
        self,
        policy: str | type[ActorCriticPolicy],
        env: GymEnv | str,
        learning_rate: float | Schedule = DEFAULTS["lr"],
        n_steps: int = 20,
        gamma: float = 0.99,
        gae_lambda: float = 1.0,
        ent_coef: float = 0.01,
        vf_coef: float = 0.25,
        vf_fisher_coef: float = 1.0,
        max_grad_norm: float = 0.5,
        kfac_clip: float = kfac_default("kfac_clip"),
        kfac_update: int = kfac_default("kfac_update"),
        kfac_stats_update: int = kfac_default("kfac_stats_update"),
        kfac_stats_samples: int | None = kfac_default("kfac_stats_samples"),
        kfac_weight_sharing: str | dict[str, str] = kfac_default("kfac_weight_sharing"),
        kfac_lstm_curvature: str = kfac_default("kfac_lstm_curvature"),
        kfac_damping: float = kfac_default("kfac_damping"),
        kfac_stats_decay: float = kfac_default("kfac_stats_decay"),
        kfac_stats_warm_up: bool = kfac_default("kfac_stats_warm_up"),
        kfac_momentum: float = kfac_default("kfac_momentum"),
        kfac_inverse_method: str = kfac_default("kfac_inverse_method"),
        kfac_distributed_inverses: str = kfac_default("kfac_distributed_inverses"),
        kfac_max_factor_dim: int | None = kfac_default("kfac_max_factor_dim"),
        trust_region: str = "joint",
        target_kl: float | None = None,
        action_bound_coef: float = 0.0,
        normalize_advantage: bool = False,
        use_sde: bool = False,
        sde_sample_freq: int = -1,
        rollout_buffer_class: type[RolloutBuffer] | None = None,
        rollout_buffer_kwargs: dict[str, Any] | None = None,
        stats_window_size: int = 100,
        tensorboard_log: str | None = None,
        policy_kwargs: dict[str, Any] | None = None,
        verbose: int = 0,
        seed: int | None = None,
        device: th.device | str = "auto",
        _init_setup_model: bool = True,
    ):
        super().__init__(
            policy,
            env,
            learning_rate=learning_rate,
            n_steps=n_steps,
            gamma=gamma,
            gae_lambda=gae_lambda,
            ent_coef=ent_coef,
            vf_coef=vf_coef,
            max_grad_norm=max_grad_norm,
            use_sde=use_sde,
            sde_sample_freq=sde_sample_freq,
            rollout_buffer_class=rollout_buffer_class,
            rollout_buffer_kwargs=rollout_buffer_kwargs,
            stats_window_size=stats_window_size,
            tensorboard_log=tensorboard_log,
            policy_kwargs=policy_kwargs,
            verbose=verbose,
            device=device,
            seed=seed,
            _init_setup_model=False,
            supported_action_spaces=(
                spaces.Box,
                spaces.Discrete,
                spaces.MultiDiscrete,
                spaces.MultiBinary,
            ),
        )
        self.vf_fisher_coef = vf_fisher_coef
        self.kfac_clip = kfac_clip
        self.kfac_update = kfac_update
        self.kfac_stats_update = kfac_stats_update
        self.kfac_stats_samples = kfac_stats_samples
        self.kfac_weight_sharing = kfac_weight_sharing
        self.kfac_lstm_curvature = kfac_lstm_curvature
        self.kfac_damping = kfac_damping
        self.kfac_stats_decay = kfac_stats_decay
        self.kfac_stats_warm_up = kfac_stats_warm_up
        self.kfac_momentum = kfac_momentum
        self.kfac_inverse_method = kfac_inverse_method
        self.kfac_distributed_inverses = kfac_distributed_inverses
        self.kfac_max_factor_dim = kfac_max_factor_dim
        self.trust_region = trust_region
        self.target_kl = target_kl
        #: The learning rate's multiplier that ``target_kl`` adapts (1 without it)
        self.kl_lr_multiplier = 1.0
        self.action_bound_coef = action_bound_coef
        self.normalize_advantage = normalize_advantage

        if "optimizer_class" in self.policy_kwargs or "optimizer_kwargs" in self.policy_kwargs:
            warnings.warn(
                "ACKTR always optimizes with KFAC: policy_kwargs 'optimizer_class'/'optimizer_kwargs' are ignored. "
                "Set K-FAC options with the kfac_* arguments.",
                UserWarning,
            )

        if _init_setup_model:
            self._setup_model()

    def _check_hyperparameters(self) -> None:
        """Reject out-of-range hyperparameters with a ValueError naming the argument, the value and the range."""
        learning_rate = HYPERPARAMETERS["lr"]
        hint = f"Try {learning_rate.default!r} (SB2's default) or a schedule."
        if callable(self.learning_rate):
            initial = self.learning_rate(1.0)
            check_number("learning_rate (the schedule's value at progress_remaining=1)", initial, 0.0, hint=hint)
        else:
            check_number("learning_rate", self.learning_rate, 0.0, hint=hint)
        check_interval("n_steps", self.n_steps)
        check_number("gamma", self.gamma, 0.0, 1.0, high_open=False)
        check_number("gae_lambda", self.gae_lambda, 0.0, 1.0, high_open=False)
        check_number("ent_coef", self.ent_coef, 0.0)
        check_number("vf_coef", self.vf_coef, 0.0)
        check_number("vf_fisher_coef", self.vf_fisher_coef, 0.0, hint="Try 1.0 (SB2's default).")
        check_number("max_grad_norm", self.max_grad_norm, 0.0, low_open=True, high_open=False, hint="Use inf to disable.")
        for name, kfac_name in KFAC_ARGUMENTS.items():
            HYPERPARAMETERS[kfac_name].check(name, getattr(self, name))
        check_choice("trust_region", self.trust_region, tuple(KFAC_TRUST_REGIONS))
        if self.target_kl is not None:
            check_number(
                "target_kl", self.target_kl, 0.0, low_open=True, hint="Try the trust region's δ, kfac_clip / 2, or None."
            )
        check_number("action_bound_coef", self.action_bound_coef, 0.0)
        if self.action_bound_coef > 0 and not (
            isinstance(self.action_space, spaces.Box)
            and np.all(np.isfinite(self.action_space.low))
            and np.all(np.isfinite(self.action_space.high))
        ):
            raise ValueError(
                f"action_bound_coef={self.action_bound_coef!r} penalizes a Gaussian mean beyond finite action bounds, but "
                f"the action space is {self.action_space}. Use action_bound_coef=0.0."
            )
        initial = self.learning_rate(1.0) if callable(self.learning_rate) else self.learning_rate
        if 0 < initial < SMALLEST_USUAL_LEARNING_RATE:
            warnings.warn(
                f"ACKTR's learning_rate={initial:g} is on Adam/RMSprop's scale (an A2C pipeline's 7e-4): K-FAC takes "
                "natural-gradient steps, which the trust region (kfac_clip) bounds from above only, so ACKTR will "
                f"barely move. Use {SMALLEST_USUAL_LEARNING_RATE:g} to 1 (SB2's default 0.25, or lin_0.25 in the zoo).",
                UserWarning,
            )

    def _check_policy_class(self) -> None:
        """Raise a ``TypeError`` unless the policy is an actor-critic this algorithm can train."""
        name = getattr(self.policy_class, "__name__", self.policy_class)
        if not (isinstance(self.policy_class, type) and issubclass(self.policy_class, ActorCriticPolicy)):
            raise TypeError(
                f"ACKTR needs an actor-critic policy (MlpPolicy, CnnPolicy, MultiInputPolicy or a subclass of SB3's "
                f"ActorCriticPolicy), got {name}."
            )
        if issubclass(self.policy_class, RecurrentActorCriticPolicy):
            raise TypeError(f"ACKTR does not carry LSTM states; {name} is a recurrent policy: use RecurrentACKTR.")

    def _setup_model(self) -> None:
        self._check_hyperparameters()
        self._check_policy_class()
        if launched_by_torchrun():
            self.device = join_torchrun(self.device)
        if self._process_group is not None:
            check_same_on_all_ranks("ACKTR", self._configuration(), self._process_group)
        super()._setup_model()
        # Built here, not through policy_kwargs: KFAC needs the module, and ACKTR.load() calls _setup_model() again,
        # so hyperparameters overridden at load time take effect. SB3 saves it as "policy.optimizer".
        actor_critic = self._actor_critic_params()
        if actor_critic is None:
            if self.trust_region == "per_network":
                raise ValueError(
                    "trust_region='per_network' needs an actor and a critic that share no parameter, but this "
                    "policy shares some (e.g. a CNN features extractor). Use trust_region='joint', or "
                    "policy_kwargs=dict(share_features_extractor=False)."
                )
            param_groups = [{"params": [p for p in self.policy.parameters() if p.requires_grad], "name": "actor_critic"}]
        else:
            param_groups = [{"params": actor_critic[0], "name": "actor"}, {"params": actor_critic[1], "name": "critic"}]
        self.policy.optimizer = KFAC(
            self.policy,
            lr=self.lr_schedule(1),
            trust_region=KFAC_TRUST_REGIONS[self.trust_region],
            param_groups=param_groups,
            **{kfac_name: getattr(self, name) for name, kfac_name in KFAC_ARGUMENTS.items()},
        )
        if self.action_bound_coef > 0 and self.policy.squash_output:
            raise ValueError(
                f"action_bound_coef={self.action_bound_coef!r} penalizes a mean beyond the action bounds, but this policy "
                "squashes its actions into them (squash_output=True). Use action_bound_coef=0.0."
            )
        #: Whether the exact KL's forward passes need evaluation mode (a policy without dropout, batch norm, ... computes
        #: the same in both: switching costs a walk over every module, twice per update)
        self._exact_kl_in_eval_mode = training_mode_matters(self.policy)

    @property
    def _process_group(self) -> dist.ProcessGroup | None:
        """The default process group of a data-parallel run (``torchrun``), None in one process."""
        return default_process_group()

    @property
    def _rank(self) -> int:
        return 0 if self._process_group is None else dist.get_rank()

    def _configuration(self) -> dict[str, Any]:
        """The hyperparameters that must be equal on every rank (K-FAC checks the network and its own options)."""
        names = (
            "n_steps", "n_envs", "gamma", "gae_lambda", "ent_coef", "vf_coef", "vf_fisher_coef", "max_grad_norm",
            *KFAC_ARGUMENTS, "trust_region", "target_kl", "action_bound_coef", "normalize_advantage", "use_sde",
            "sde_sample_freq",
        )  # fmt: skip
        schedule = self.learning_rate if callable(self.learning_rate) else None
        return {
            **{name: getattr(self, name) for name in names},
            "learning_rate": (schedule(1.0), schedule(0.5), schedule(0.0)) if schedule else self.learning_rate,
            "policy_class": self.policy_class.__name__ if isinstance(self.policy_class, type) else str(self.policy_class),
            "observation_space": repr(self.observation_space),
            "action_space": repr(self.action_space),
        }

    def set_random_seed(self, seed: int | None = None) -> None:
        """
        Set the seed of the pseudo-random generators (python, numpy, pytorch, gym, action_space).

        In a data-parallel run, rank r uses ``seed + r·n_envs``: its envs get the seeds that envs ``r·n_envs`` to
        ``(r+1)·n_envs − 1`` of one process with ``world_size·n_envs`` envs would get, so no two ranks replay the
        same episodes.

        :param seed: The seed (None: unseeded)
        """
        if seed is not None and self._rank > 0:
            seed += self._rank * self.n_envs
        super().set_random_seed(seed)

    def set_parameters(
        self,
        load_path_or_dict: str | dict[str, Any],
        exact_match: bool = True,
        device: th.device | str = "auto",
    ) -> None:
        """
        Load parameters from a given zip-file or a nested dictionary containing parameters for
        different modules (see ``get_parameters``).

        The K-FAC state is restored, but the K-FAC hyperparameters stay those of this model: torch's
        ``load_state_dict`` would restore the saved ``param_groups``, silently undoing
        ``ACKTR.load(path, kfac_clip=...)`` overrides (rl-zoo's continue-training passes them this way).

        :param load_path_or_dict: Location of the saved data (path or file-like, see ``save``), or a nested
            dictionary containing nn.Module parameters used by the policy. The dictionary maps
            object names to a state-dictionary returned by ``torch.nn.Module.state_dict()``.
        :param exact_match: If True, the given parameters should include parameters for each
            module and each of their parameters, otherwise raises an Exception. If set to False, this
            can be used to update only specific parameters.
        :param device: Device on which the code should run.
        """
        super().set_parameters(load_path_or_dict, exact_match=exact_match, device=device)
        # The parameter-group options (KFAC names) set by ACKTR arguments
        options = {kfac_name: getattr(self, name) for name, kfac_name in KFAC_ARGUMENTS.items() if kfac_name in GROUP_OPTIONS}
        for group in self.policy.optimizer.param_groups:
            group.update(lr=self.lr_schedule(self._current_progress_remaining) * self.kl_lr_multiplier, **options)

    def _actor_critic_params(self) -> tuple[list[nn.Parameter], list[nn.Parameter]] | None:
        """The actor's and the critic's trainable parameters, or None if they share any (or cannot be told apart)."""
        policy = self.policy
        modules = self._network_modules()
        if modules is None:
            return None
        actor_modules, critic_modules = modules
        actor = {id(p): p for module in actor_modules for p in module.parameters() if p.requires_grad}
        if isinstance(getattr(policy, "log_std", None), nn.Parameter) and policy.log_std.requires_grad:
            actor[id(policy.log_std)] = policy.log_std
        critic = {id(p): p for module in critic_modules for p in module.parameters() if p.requires_grad}
        trainable = {id(p) for p in policy.parameters() if p.requires_grad}
        if actor.keys() & critic.keys() or actor.keys() | critic.keys() != trainable:
            return None
        return list(actor.values()), list(critic.values())

    def _network_modules(self) -> tuple[list[nn.Module], list[nn.Module]] | None:
        """The actor's modules and the critic's (None if the policy's extractor cannot tell them apart)."""
        policy, extractor = self.policy, self.policy.mlp_extractor
        if not (hasattr(extractor, "policy_net") and hasattr(extractor, "value_net")):
            return None
        actor = [policy.pi_features_extractor, extractor.policy_net, policy.action_net]
        return actor, [policy.vf_features_extractor, extractor.value_net, policy.value_net]

    def _update_current_progress_remaining(self, num_timesteps: int, total_timesteps: int) -> None:
        """
        Compute the current progress remaining (starts from 1 and ends to 0), clamped at 0.

        Schedules are defined on [0, 1], but SB3's progress goes below 0 when the last rollout overshoots
        ``total_timesteps``: a linear schedule would then give a negative (ascent) step.

        :param num_timesteps: current number of timesteps
        :param total_timesteps: the number of timesteps ``learn()`` was asked for
        """
        super()._update_current_progress_remaining(num_timesteps, total_timesteps)
        self._current_progress_remaining = max(self._current_progress_remaining, 0.0)

    @staticmethod
    def _independent_actions(distribution: Distribution) -> th.Tensor:
        """
        Actions drawn from π(·|s) independently for every sample, as ``log_prob`` defines π. gSDE's own ``sample()``
        reuses one exploration matrix for the whole batch, which correlates the samples' scores (and inflates the
        diagonal Fisher of ``log_std``, docs/modules/acktr.md "Notes"): its per-sample Gaussian is sampled instead.

        :param distribution: The policy's distribution on the batch
        :return: One action per sample
        """
        if isinstance(distribution, StateDependentNoiseDistribution):
            gaussian_actions = distribution.distribution.sample()
            return gaussian_actions if distribution.bijector is None else distribution.bijector.forward(gaussian_actions)
        return distribution.sample()

    def _fisher_losses(
        self, distribution: Distribution, values: th.Tensor, mask: th.Tensor | None = None
    ) -> tuple[th.Tensor, th.Tensor]:
        """
        Losses whose gradients sample the Fisher of ``p(a, v | s)`` (ACKTR paper sec. 3.1).

        Actions are drawn from the current policy (the true Fisher, not the empirical one of the rollout) and
        the critic is a unit-variance Gaussian (Gauss-Newton): ``-log N(ṽ; V, 1) = ½(V - ṽ)² + const``.

        :param distribution: The policy's distribution on the batch, with its graph
        :param values: V(s) on the batch, with its graph
        :param mask: The rows that are samples (None: all), see :meth:`_sample_mask`
        :return: ``(pg_fisher_loss, vf_fisher_loss)``
        """
        sampled_actions = self._independent_actions(distribution).detach()
        pg_fisher_loss = -masked_mean(distribution.log_prob(sampled_actions), mask)
        sampled_values = values.detach() + th.randn_like(values)
        squared_error = (
            F.mse_loss(values, sampled_values) if mask is None else masked_mean((values - sampled_values) ** 2, mask)
        )
        vf_fisher_loss = self.vf_fisher_coef * 0.5 * squared_error
        return pg_fisher_loss, vf_fisher_loss

    def _evaluate_actions(self, rollout_data: Any, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        """Values, log-likelihoods of ``actions`` and entropies on the batch (a recurrent policy also needs its states)."""
        return self.policy.evaluate_actions(rollout_data.observations, actions)

    def _policy_distribution(self, rollout_data: Any) -> Distribution:
        """The current policy's distribution on the batch (for the exact KL of an update)."""
        return self.policy.get_distribution(rollout_data.observations)

    @staticmethod
    def _sample_mask(rollout_data: Any) -> th.Tensor | None:
        """Which rows of the batch are samples: all of them here (None); a recurrent buffer pads its sequences."""
        return None

    def train(self) -> None:
        """
        Update policy using the currently gathered rollout buffer (one K-FAC step over the whole batch).
        """
        # Switch to train mode (this affects batch norm / dropout)
        self.policy.set_training_mode(True)
        optimizer: KFAC = self.policy.optimizer  # type: ignore[assignment]
        # Update optimizer learning rate
        self._update_learning_rate(optimizer)
        learning_rate = optimizer.param_groups[0]["lr"]
        if not (learning_rate >= 0 and math.isfinite(learning_rate)):
            raise ValueError(
                f"learning_rate must be in [0, inf), but the schedule returned {learning_rate!r} "
                f"at progress_remaining={self._current_progress_remaining:.3f}."
            )

        # This will only loop once (get all data in one go)
        for rollout_data in self.rollout_buffer.get(batch_size=None):
            actions = rollout_data.actions
            if isinstance(self.action_space, spaces.Discrete):
                # Convert discrete action from float to long
                actions = actions.long().flatten()

            mask = self._sample_mask(rollout_data)
            record_curvature = optimizer.curvature_update_due
            with optimizer.record_curvature(enabled=record_curvature):
                values, log_prob, entropy = self._evaluate_actions(rollout_data, actions)
            values = values.flatten()
            # evaluate_actions() left the batch's π(·|s) in policy.action_dist; a shallow copy keeps it
            # after the next forward pass replaces it
            distribution = copy.copy(self.policy.action_dist)

            # Normalize advantage (not present in the original implementation)
            advantages = rollout_data.advantages
            if self.normalize_advantage:
                samples = advantages if mask is None else advantages[mask]
                advantages = (advantages - samples.mean()) / (samples.std() + 1e-8)

            # A2C's loss: policy gradient, value regression to the TD(gae_lambda) target, entropy bonus
            policy_loss = -masked_mean(advantages * log_prob, mask)
            if mask is None:
                value_loss = F.mse_loss(rollout_data.returns, values)
            else:
                value_loss = masked_mean((rollout_data.returns - values) ** 2, mask)
            # Approximate entropy when no analytical form
            entropy_loss = -masked_mean(-log_prob if entropy is None else entropy, mask)
            loss = policy_loss + self.ent_coef * entropy_loss + self.vf_coef * value_loss
            if self.action_bound_coef > 0:
                bound_loss = masked_mean(self._bound_excess(distribution), mask)
                loss = loss + self.action_bound_coef * bound_loss
                self.logger.record("train/action_bound_loss", bound_loss.item())

            if record_curvature:
                pg_fisher_loss, vf_fisher_loss = self._fisher_losses(distribution, values, mask)
                optimizer.update_curvature(pg_fisher_loss + vf_fisher_loss, sample_mask=mask)
                self.logger.record("train/pg_fisher_loss", pg_fisher_loss.item())
                self.logger.record("train/vf_fisher_loss", vf_fisher_loss.item())

            # Exact KL of the update (paper, appendix E), to compare with the quadratic model: the policy before and
            # after the step, on a fixed subsample of the batch, in eval mode (BatchNorm and Dropout as at prediction)
            kl_samples, kl_mask, kl_rows = self._exact_kl_samples(rollout_data, mask)
            # Where the policy's mode does not matter, the training forward pass gave the policy before the step
            before = None if self._exact_kl_in_eval_mode else distribution_rows(distribution, kl_rows)
            if self._exact_kl_in_eval_mode:
                self.policy.set_training_mode(False)
            try:
                if before is None:
                    with th.no_grad():
                        # A shallow copy: the next forward pass replaces the policy's action_dist in place
                        before = copy.copy(self._policy_distribution(kl_samples))

                # Optimization step: KFAC clips the whole batch's gradient (averaged over the ranks of a distributed run)
                # inside step(), as clip_grad_norm_ before it would; read at every update, as A2C does
                optimizer.zero_grad()
                loss.backward()
                optimizer.max_grad_norm = self.max_grad_norm
                optimizer.step()

                with th.no_grad():
                    sample_kl = kl_divergence(before, self._policy_distribution(kl_samples))
                    sample_kl = sample_kl.sum(dim=1) if sample_kl.dim() > 1 else sample_kl
                    exact_kl = masked_mean(sample_kl, kl_mask).item()
            finally:
                # Also when the step raises (e.g. a group option set to NaN): the policy trains on, as A2C's
                if self._exact_kl_in_eval_mode:
                    self.policy.set_training_mode(True)

        if self.target_kl is not None:
            self._adapt_to_kl(exact_kl)
        explained_var = explained_variance(self.rollout_buffer.values.flatten(), self.rollout_buffer.returns.flatten())

        self._n_updates += 1
        self.logger.record("train/n_updates", self._n_updates, exclude="tensorboard")
        self.logger.record("train/explained_variance", explained_var)
        self.logger.record("train/entropy_loss", entropy_loss.item())
        self.logger.record("train/policy_loss", policy_loss.item())
        self.logger.record("train/value_loss", value_loss.item())
        if hasattr(self.policy, "log_std"):
            self.logger.record("train/std", th.exp(self.policy.log_std).mean().item())
        self._record_trust_region(optimizer, exact_kl)

    def _bound_excess(self, distribution: Distribution) -> th.Tensor:
        """
        ``Σᵢ max(0, |μᵢ − cᵢ| / hᵢ − 1)²`` per sample: how far the Gaussian mean lies beyond the action bounds
        (``action_bound_coef``'s penalty).

        :param distribution: The batch's action distribution, with its graph
        :return: One value per sample
        """
        assert isinstance(self.action_space, spaces.Box)
        mean = distribution.distribution.mean  # type: ignore[union-attr]
        low = th.as_tensor(self.action_space.low, dtype=mean.dtype, device=mean.device)
        high = th.as_tensor(self.action_space.high, dtype=mean.dtype, device=mean.device)
        excess = th.relu((mean - (high + low) / 2).abs() / ((high - low) / 2) - 1)
        return (excess**2).sum(dim=1)

    def _update_learning_rate(self, optimizers: list[th.optim.Optimizer] | th.optim.Optimizer) -> None:
        """The schedule's learning rate (SB3), times the multiplier ``target_kl`` adapts; both logged."""
        super()._update_learning_rate(optimizers)
        if self.target_kl is None:
            return
        for optimizer in optimizers if isinstance(optimizers, list) else [optimizers]:
            for group in optimizer.param_groups:
                group["lr"] *= self.kl_lr_multiplier
        self.logger.record("train/learning_rate", self.lr_schedule(self._current_progress_remaining) * self.kl_lr_multiplier)
        self.logger.record("train/kl_lr_multiplier", self.kl_lr_multiplier)

    def _adapt_to_kl(self, exact_kl: float) -> None:
        """
        ``target_kl``'s rule (OpenAI baselines' ``acktr_cont``): the next updates' learning-rate multiplier from this
        update's exact KL (averaged over the ranks, so that every rank keeps the same multiplier and weights).

        :param exact_kl: The update's exact KL on this rank's samples
        """
        assert self.target_kl is not None
        if self._process_group is not None:
            kl = th.tensor([exact_kl], dtype=th.float64, device=self.device)
            all_reduce_mean_([kl], self._process_group)
            exact_kl = float(kl)
        low, high = KL_MULTIPLIER_RANGE
        if exact_kl > 2 * self.target_kl:
            self.kl_lr_multiplier = max(low, self.kl_lr_multiplier / KL_ADAPTATION_FACTOR)
        elif exact_kl < self.target_kl / 2:
            self.kl_lr_multiplier = min(high, self.kl_lr_multiplier * KL_ADAPTATION_FACTOR)

    def _exact_kl_samples(self, rollout_data: Any, mask: th.Tensor | None) -> tuple[Any, th.Tensor | None, slice]:
        """
        The samples ``train/exact_kl`` averages over: the first :data:`EXACT_KL_SAMPLES` of the batch (all of a smaller
        batch). SB3's rollout buffer hands the batch out in a random order, so they are a random subsample of the
        rollout's states, drawn without any extra random number.

        :param rollout_data: The batch
        :param mask: Which rows of the batch are samples (None: all)
        :return: The subsample, with its mask, and its rows in the batch
        """
        rows = slice(0, EXACT_KL_SAMPLES)
        subsample = rollout_data._replace(observations=observation_rows(rollout_data.observations, rows))
        return subsample, None if mask is None else mask[rows], rows

    def _record_trust_region(self, optimizer: KFAC, exact_kl: float) -> None:
        """Log the trust-region scale(s), the quadratic-model KL (total and actor's part) and the exact KL."""
        self.logger.record("train/exact_kl", exact_kl)
        self.logger.record("train/kfac_skipped_steps", optimizer.skipped_steps)
        self.logger.record("train/kfac_skipped_curvature_updates", optimizer.skipped_curvature_updates)
        self.logger.record("train/kfac_reset_statistics", optimizer.reset_statistics)
        if not optimizer.last_step_info:  # the step was skipped
            return
        info = {
            group["name"]: step_info for group, step_info in zip(optimizer.param_groups, optimizer.last_step_info, strict=True)
        }
        self.logger.record("train/quadratic_kl", sum(step_info["quadratic_kl"] for step_info in info.values()))
        if "actor" in info:
            self.logger.record("train/quadratic_kl_actor", info["actor"]["quadratic_kl"])
        if self.trust_region == "per_network":
            self.logger.record("train/trust_region_scale_actor", info["actor"]["nu"])
            self.logger.record("train/trust_region_scale_critic", info["critic"]["nu"])
        else:
            self.logger.record("train/trust_region_scale", optimizer.last_step_info[0]["nu"])

    def learn(
        self: SelfACKTR,
        total_timesteps: int,
        callback: MaybeCallback = None,
        log_interval: int = 100,
        tb_log_name: str | None = None,
        reset_num_timesteps: bool = True,
        progress_bar: bool = False,
    ) -> SelfACKTR:
        """
        Return a trained model (SB3's ``learn``).

        :param total_timesteps: The total number of samples (env steps) to train on
        :param callback: callback(s) called at every step with state of the algorithm.
        :param log_interval: The number of rollouts before logging (None: only callbacks dump the logs)
        :param tb_log_name: The name of the run for TensorBoard logging (default: the class name, ``"ACKTR"`` or
            ``"RecurrentACKTR"``)
        :param reset_num_timesteps: whether or not to reset the current timestep number (used in logging)
        :param progress_bar: Display a progress bar using tqdm and rich.
        :return: the trained model
        """
        if log_interval is not None:
            check_interval(
                "log_interval", log_interval, "learn() dumps the logs every log_interval updates; None leaves it to callbacks."
            )
        try:
            return super().learn(
                total_timesteps=total_timesteps,
                callback=callback,
                log_interval=log_interval,
                tb_log_name=type(self).__name__ if tb_log_name is None else tb_log_name,
                reset_num_timesteps=reset_num_timesteps,
                progress_bar=progress_bar,
            )
        except EOFError as error:
            # What SB3 surfaces when a SubprocVecEnv worker died
            if self.env is not None and isinstance(self.env.unwrapped, SubprocVecEnv):
                raise RuntimeError(
                    "A SubprocVecEnv worker process ended (its environment raised an exception, printed above by the "
                    "worker, or the process was killed): the training env is unusable. Fix the environment, or debug it "
                    "with DummyVecEnv (vec_env_cls=DummyVecEnv), which raises the environment's own exception."
                ) from error
            raise

    def _setup_learn(
        self,
        total_timesteps: int,
        callback: MaybeCallback = None,
        reset_num_timesteps: bool = True,
        tb_log_name: str = "run",
        progress_bar: bool = False,
    ) -> tuple[int, BaseCallback]:
        """
        SB3's setup, and in a data-parallel run: only rank 0 logs (the others get a logger without outputs and create
        no tensorboard folder) and runs the callbacks and the progress bar; every rank counts the global steps.
        """
        if self._process_group is None:
            return super()._setup_learn(total_timesteps, callback, reset_num_timesteps, tb_log_name, progress_bar)
        if self._rank > 0:
            self._logger, self._custom_logger = Logger(folder=None, output_formats=[]), True
            callback, progress_bar = None, False
        given = callback if isinstance(callback, list) else [] if callback is None else [callback]
        # First in the list, so that every other callback sees the global count
        callbacks: list[BaseCallback] = [GlobalTimesteps(dist.get_world_size())]
        callbacks += [c if isinstance(c, BaseCallback) else ConvertCallback(c) for c in given]
        return super()._setup_learn(total_timesteps, CallbackList(callbacks), reset_num_timesteps, tb_log_name, progress_bar)

    #: How a rollout is collected: SB3's ``OnPolicyAlgorithm.collect_rollouts`` (RecurrentACKTR: ``RecurrentPPO``'s)
    _collect_rollout = OnPolicyAlgorithm.collect_rollouts

    def collect_rollouts(
        self,
        env: VecEnv,
        callback: BaseCallback,
        rollout_buffer: RolloutBuffer,
        n_rollout_steps: int,
    ) -> bool:
        """
        Collect a rollout (:attr:`_collect_rollout`: SB3's, or ``RecurrentPPO``'s for RecurrentACKTR); in a
        data-parallel run the ranks then agree whether to go on, so that a callback stopping training on rank 0 stops
        every rank.

        :param env: The training environment
        :param callback: Callback that will be called at each step (and at the beginning and end of the rollout)
        :param rollout_buffer: Buffer to fill with rollouts
        :param n_rollout_steps: Number of experiences to collect per environment
        :return: True if function returned with at least `n_rollout_steps` collected, False if callback terminated
            rollout prematurely.
        """
        continue_training = self._collect_rollout(env, callback, rollout_buffer, n_rollout_steps)
        if self._process_group is None:
            return continue_training
        return all_agree(continue_training, self.device)

    def save(self, *args: Any, **kwargs: Any) -> None:
        """
        Save all the attributes of the object and the model parameters in a zip-file (SB3's ``save``). In a
        data-parallel run only rank 0 writes (the ranks hold the same parameters and K-FAC state); the file loads
        in one process or in another distributed run.

        :param args: ``path``, ``exclude``, ``include``, as SB3's ``save``
        :param kwargs: The same, by name
        """
        if self._rank == 0:
            super().save(*args, **kwargs)
