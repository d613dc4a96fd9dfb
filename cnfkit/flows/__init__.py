"""Conditional normalizing flows: one base (:class:`Flow`), the multi-scale image flow and the vector flow.

* :mod:`~cnfkit.flows.base`: :class:`Flow`, the shared surface (``log_prob``, ``sample``, ``rsample``,
  ``given``, ``bits_per_dim``) and the input checks;
* :mod:`~cnfkit.flows.image`: :class:`ConditionalFlow` (Winkler et al.'s multi-scale conditional Glow);
* :mod:`~cnfkit.flows.vector`: :class:`VectorFlow` (coupling blocks on vectors; Xiao et al., the toy problems);
* :mod:`~cnfkit.flows.distribution`: :class:`FlowDistribution`, ``flow.given(context)`` as a
  :class:`torch.distributions.Distribution`.
"""

from .base import Flow, check_context, check_data, check_num_samples, check_temperature
from .distribution import FlowDistribution
from .image import ConditionalFlow, resize_features
from .vector import VectorFlow, VectorPrior

__all__ = [
    "ConditionalFlow",
    "Flow",
    "FlowDistribution",
    "VectorFlow",
    "VectorPrior",
    "check_context",
    "check_data",
    "check_num_samples",
    "check_temperature",
    "resize_features",
]
