from typing import Any, ClassVar

import torch as th
from gymnasium import spaces
from sb3_contrib import RecurrentPPO
from sb3_contrib.common.recurrent.buffers import RecurrentDictRolloutBuffer, RecurrentRolloutBuffer
from sb3_contrib.common.recurrent.policies import RecurrentActorCriticPolicy
from sb3_contrib.common.recurrent.type_aliases import RNNStates
from sb3_contrib.ppo_recurrent.policies import CnnLstmPolicy, MlpLstmPolicy, MultiInputLstmPolicy
from stable_baselines3.common.distributions import Distribution
from stable_baselines3.common.policies import BasePolicy
from torch import nn

from sb3_acktr.acktr.acktr import ACKTR, EXACT_KL_SAMPLES, observation_rows


class RecurrentACKTR(ACKTR):
    """
    ACKTR with LSTM policies: sb3-contrib's recurrent policies and rollout buffers (as ``RecurrentPPO`` uses them),
    one K-FAC step over the whole rollout.

    The LSTM states are carried across rollouts and reset at episode starts exactly as in ``RecurrentPPO`` (whose
    rollout collection is reused); the update evaluates the rollout as sequences, padded to a common length, and
    every loss, Fisher loss and curvature statistic counts only the real steps (the buffer's mask). Curvature: every
    layer gets Kronecker factors, the LSTMs' under independence across time steps (Martens, Ba & Johnson 2018;
    ``kfac_lstm_curvature="diagonal"`` puts the LSTM weights on K-FAC's diagonal Fisher instead).

    Paper: https://arxiv.org/abs/1708.05144 (ACKTR); sb3-contrib's ``RecurrentPPO`` for the recurrent machinery.

    The parameters are :class:`~sb3_acktr.ACKTR`'s, with a recurrent policy (``MlpLstmPolicy``, ``CnnLstmPolicy``,
    ``MultiInputLstmPolicy`` or a subclass of sb3-contrib's ``RecurrentActorCriticPolicy``); ``rollout_buffer_class``
    must stay None (the recurrent buffers are chosen from the observation space).
    """

    policy_aliases: ClassVar[dict[str, type[BasePolicy]]] = {
        "MlpLstmPolicy": MlpLstmPolicy,
        "CnnLstmPolicy": CnnLstmPolicy,
        "MultiInputLstmPolicy": MultiInputLstmPolicy,
    }
    policy: RecurrentActorCriticPolicy

    def _get_policy_from_name(self, policy_name: str) -> type[BasePolicy]:
        """A policy class from its alias; ACKTR's aliases name the recurrent policy to use instead."""
        if policy_name in ACKTR.policy_aliases:
            recurrent = policy_name.replace("Policy", "LstmPolicy")
            raise TypeError(f"{policy_name} has no memory: use {recurrent} with RecurrentACKTR, or {policy_name} with ACKTR.")
        return super()._get_policy_from_name(policy_name)

    def _check_policy_class(self) -> None:
        if not (isinstance(self.policy_class, type) and issubclass(self.policy_class, RecurrentActorCriticPolicy)):
            raise TypeError(
                "RecurrentACKTR needs a recurrent policy (MlpLstmPolicy, CnnLstmPolicy, MultiInputLstmPolicy or a "
                f"subclass of sb3-contrib's RecurrentActorCriticPolicy), got "
                f"{getattr(self.policy_class, '__name__', self.policy_class)}. For a policy without memory, use ACKTR."
            )

    def _setup_model(self) -> None:
        if self.rollout_buffer_class is not None:
            raise ValueError(
                f"RecurrentACKTR uses sb3-contrib's recurrent rollout buffers; rollout_buffer_class="
                f"{self.rollout_buffer_class.__name__} cannot be used. Leave it at None."
            )
        super()._setup_model()
        # SB3 recorded the class of the default buffer it built (replaced below): the recurrent one is chosen from the
        # observation space each time, on load too
        self.rollout_buffer_class = None
        lstm = self.policy.lstm_actor
        if lstm.bidirectional:
            raise ValueError(
                "RecurrentACKTR: a bidirectional LSTM (lstm_kwargs=dict(bidirectional=True)) cannot run step by step "
                "through an episode, as rollouts do. Remove bidirectional from lstm_kwargs."
            )
        # Hidden and cell states of the actor's and the critic's LSTMs (the same architecture, as RecurrentPPO)
        state_shape = (lstm.num_layers, self.n_envs, lstm.hidden_size)
        self._last_lstm_states = RNNStates(
            (th.zeros(state_shape, device=self.device), th.zeros(state_shape, device=self.device)),
            (th.zeros(state_shape, device=self.device), th.zeros(state_shape, device=self.device)),
        )
        buffer_class = (
            RecurrentDictRolloutBuffer if isinstance(self.observation_space, spaces.Dict) else RecurrentRolloutBuffer
        )
        self.rollout_buffer = buffer_class(
            self.n_steps,
            self.observation_space,  # type: ignore[arg-type]
            self.action_space,
            (self.n_steps, lstm.num_layers, self.n_envs, lstm.hidden_size),
            self.device,
            gamma=self.gamma,
            gae_lambda=self.gae_lambda,
            n_envs=self.n_envs,
        )

    def _network_modules(self) -> tuple[list[nn.Module], list[nn.Module]] | None:
        """ACKTR's actor and critic modules, with the actor's LSTM, and the critic's LSTM or linear layer if any."""
        modules = super()._network_modules()
        if modules is None:
            return None
        actor, critic = modules
        policy = self.policy
        critic_extra = [module for module in (policy.lstm_critic, policy.critic) if isinstance(module, nn.Module)]
        return [*actor, policy.lstm_actor], [*critic, *critic_extra]

    _collect_rollout = RecurrentPPO.collect_rollouts  # type: ignore[assignment]

    def _evaluate_actions(self, rollout_data: Any, actions: th.Tensor) -> tuple[th.Tensor, th.Tensor, th.Tensor | None]:
        return self.policy.evaluate_actions(
            rollout_data.observations, actions, rollout_data.lstm_states, rollout_data.episode_starts
        )

    def _policy_distribution(self, rollout_data: Any) -> Distribution:
        distribution, _ = self.policy.get_distribution(
            rollout_data.observations, rollout_data.lstm_states.pi, rollout_data.episode_starts
        )
        return distribution

    @staticmethod
    def _sample_mask(rollout_data: Any) -> th.Tensor | None:
        """The real steps of the padded sequences."""
        return rollout_data.mask > 1e-8

    def _exact_kl_samples(self, rollout_data: Any, mask: th.Tensor | None) -> tuple[Any, th.Tensor | None, slice]:
        """
        The samples ``train/exact_kl`` averages over: whole sequences (the LSTM runs each from its start), the first
        ones of the batch that hold at least :data:`~sb3_acktr.acktr.acktr.EXACT_KL_SAMPLES` padded rows (all of a
        smaller batch). sb3-contrib's buffer starts the batch at a random step of the rollout.

        :param rollout_data: The batch, sequences padded to a common length
        :param mask: Which rows are real steps
        :return: The subsample, with its mask, and its rows in the (sequence-major) batch
        """
        n_sequences = rollout_data.lstm_states.pi[0].shape[1]
        length = len(rollout_data.episode_starts) // n_sequences
        kept = min(n_sequences, -(-EXACT_KL_SAMPLES // length))
        rows = slice(0, kept * length)
        lstm_states = RNNStates(*(tuple(state[:, :kept] for state in states) for states in rollout_data.lstm_states))
        subsample = rollout_data._replace(
            observations=observation_rows(rollout_data.observations, rows),
            episode_starts=rollout_data.episode_starts[rows],
            lstm_states=lstm_states,
        )
        return subsample, None if mask is None else mask[rows], rows

    def _excluded_save_params(self) -> list[str]:
        return [*super()._excluded_save_params(), "_last_lstm_states"]
