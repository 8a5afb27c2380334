"""K-FAC: Kronecker-factored approximate curvature, as a ``torch.optim.Optimizer``. Imports torch only, never SB3."""

from sb3_acktr.kfac.optimizer import KFAC

__all__ = ["KFAC"]
