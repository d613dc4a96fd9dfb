"""cnfkit: conditional normalizing flows (Winkler et al. 2019; Xiao, Yan & Amit 2019)."""

from .flows import ConditionalFlow, VectorFlow
from .layers import (
    ActNorm,
    AdditiveCoupling,
    AffineCoupling,
    Bijection,
    FlowSequential,
    InvConv1x1,
    InvConv1x1LU,
    Permutation,
    Squeeze,
)
from .metrics import bits_per_dim
from .priors import DiagonalGaussian, SplitPrior

__version__ = "0.1.0"

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Bijection",
    "ConditionalFlow",
    "DiagonalGaussian",
    "FlowSequential",
    "InvConv1x1",
    "InvConv1x1LU",
    "Permutation",
    "SplitPrior",
    "Squeeze",
    "VectorFlow",
    "bits_per_dim",
]
