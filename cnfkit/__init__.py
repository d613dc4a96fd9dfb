"""cnfkit: conditional normalizing flows (Winkler et al. 2019; Xiao, Yan & Amit 2019).

The package is laid out by role; the library never imports the layers above it:

* the library: :mod:`~cnfkit.bijections`, :mod:`~cnfkit.priors`, :mod:`~cnfkit.nets`,
  :mod:`~cnfkit.flows`, :mod:`~cnfkit.dequantization`, :mod:`~cnfkit.likelihoods`,
  :mod:`~cnfkit.metrics`, :mod:`~cnfkit.probabilistic`, :mod:`~cnfkit.train`, :mod:`~cnfkit.config`,
  :mod:`~cnfkit.data`, :mod:`~cnfkit.utils`;
* the papers' models: :mod:`cnfkit.models` (segmentation, super-resolution, toy problems);
* the reproduction: :mod:`cnfkit.repro` (profiles, results, paper numbers, claims, report, reproduce)
  and :mod:`cnfkit.experiments` (one driver per notebook).
"""

from . import _runtime

_runtime.configure()  # before torch is imported (see cnfkit/_runtime.py)

from . import _moved
from .bijections import (
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
from .flows import ConditionalFlow, Flow, FlowDistribution, VectorFlow
from .metrics import bits_per_dim
from .priors import DiagonalGaussian, SplitPrior

__version__ = "0.2.0"

_moved.install()
_runtime.apply_threads()  # CNFKIT_THREADS, also where torch was imported first

__all__ = [
    "ActNorm",
    "AdditiveCoupling",
    "AffineCoupling",
    "Bijection",
    "ConditionalFlow",
    "DiagonalGaussian",
    "Flow",
    "FlowDistribution",
    "FlowSequential",
    "InvConv1x1",
    "InvConv1x1LU",
    "Permutation",
    "SplitPrior",
    "Squeeze",
    "VectorFlow",
    "bits_per_dim",
]
