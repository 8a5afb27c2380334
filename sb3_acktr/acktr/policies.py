"""Policies for ACKTR: SB3's actor-critic policies, under the names SB3 users know."""

from sb3_contrib.common.torch_layers import BatchRenorm
from stable_baselines3.common.policies import ActorCriticCnnPolicy, ActorCriticPolicy, MultiInputActorCriticPolicy
from torch import nn

MlpPolicy = ActorCriticPolicy
CnnPolicy = ActorCriticCnnPolicy
MultiInputPolicy = MultiInputActorCriticPolicy

#: Packages whose modules are known: among them, only :data:`MODE_DEPENDENT_MODULES` (and recurrent layers with dropout)
#: compute differently in training and evaluation mode; a module from any other package may (e.g. a noisy layer)
KNOWN_MODULE_PACKAGES = ("torch", "stable_baselines3", "sb3_contrib", "sb3_acktr")
#: The modules of the known packages whose forward pass reads ``self.training`` (torch's dropout, batch and instance
#: norms, RReLU, attention and transformer layers; sb3-contrib's BatchRenorm)
MODE_DEPENDENT_MODULES = (
    nn.modules.dropout._DropoutNd,
    nn.modules.batchnorm._NormBase,
    nn.RReLU,
    nn.MultiheadAttention,
    nn.TransformerEncoderLayer,
    nn.TransformerDecoderLayer,
    nn.TransformerEncoder,
    BatchRenorm,
)


def training_mode_matters(module: nn.Module) -> bool:
    """
    Whether ``module`` may compute differently in training and in evaluation mode: False only when every submodule is
    known not to (a module of another package, or one that overrides ``train()``, is assumed to).

    :param module: A policy, or any module
    :return: True if switching its mode may change its outputs or its state
    """
    for submodule in module.modules():
        cls = type(submodule)
        if cls.__module__.split(".")[0] not in KNOWN_MODULE_PACKAGES or cls.train is not nn.Module.train:
            return True
        if isinstance(submodule, MODE_DEPENDENT_MODULES) or (isinstance(submodule, nn.RNNBase) and submodule.dropout > 0):
            return True
    return False
