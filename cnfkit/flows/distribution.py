"""``flow.given(context)``: a conditional flow at a fixed context as a :class:`torch.distributions.Distribution`."""

from __future__ import annotations

import math
from typing import ClassVar

import torch
from torch import Tensor

from .base import Flow

__all__ = ["FlowDistribution"]


class FlowDistribution(torch.distributions.Distribution):
    """``flow.given(context)``: a conditional flow at a fixed context, as a :class:`torch.distributions.Distribution`.

    ``batch_shape`` is ``(rows of context,)`` and ``event_shape`` the shape of one ``y`` (``(C, H, W)``
    for an image flow, ``(D,)`` for a vector flow), so cnfkit plugs into code written for
    torch.distributions (Pyro, sbi-style pipelines): ``log_prob(value)`` takes ``sample_shape +
    batch_shape + event_shape`` and returns ``sample_shape + batch_shape``; ``sample`` /
    ``rsample(sample_shape)`` draw ``sample_shape + batch_shape + event_shape`` (the conditioner runs once
    per row of the context; ``rsample`` keeps gradients to the parameters and to the context).
    """

    arg_constraints: ClassVar[dict] = {}
    support = torch.distributions.constraints.independent(torch.distributions.constraints.real, 1)
    has_rsample = True

    def __init__(
        self,
        flow: Flow,
        context: Tensor | None,
        event_shape: tuple[int, ...],
        batch: int,
        validate_args: bool | None = None,
    ) -> None:
        self.flow, self.context = flow, context
        self.support = torch.distributions.constraints.independent(
            torch.distributions.constraints.real, len(event_shape)
        )
        super().__init__(torch.Size([batch]), torch.Size(event_shape), validate_args=validate_args)

    def _flat_context(self, n: int) -> Tensor | None:
        c = self.context
        if c is None:
            return None
        return c.unsqueeze(0).expand(n, *c.shape).reshape(n * c.shape[0], *c.shape[1:])

    def log_prob(self, value: Tensor) -> Tensor:
        if self._validate_args:
            self._validate_sample(value)
        sample_shape = value.shape[: value.dim() - len(self.event_shape) - 1]
        if value.shape[len(sample_shape) :] != self.batch_shape + self.event_shape:
            want = tuple(self.batch_shape + self.event_shape)
            raise ValueError(f"value must have shape sample_shape + {want}, got {tuple(value.shape)}")
        n = math.prod(sample_shape)
        flat = value.reshape(n * self.batch_shape[0], *self.event_shape)
        return self.flow.log_prob(flat, self._flat_context(n)).reshape(*sample_shape, *self.batch_shape)

    def rsample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> Tensor:
        sample_shape = torch.Size(sample_shape)
        n = max(1, math.prod(sample_shape))
        b = self.batch_shape[0]
        rows = n if self.context is not None else n * b  # per row of the context, or all of them unconditionally
        size = tuple(self.event_shape[1:])
        y = self.flow._sample(
            self.context, num_samples=rows, temperature=1.0, generator=None, size=size, with_log_prob=True
        )[0]
        # rows come out grouped per row of the context (i*n + j): bring the sample dimension first
        y = y.reshape(b, n, *self.event_shape).transpose(0, 1)
        return y.reshape(*sample_shape, b, *self.event_shape)

    def sample(self, sample_shape: torch.Size | list[int] | tuple[int, ...] = ()) -> Tensor:
        with torch.no_grad():
            return self.rsample(sample_shape)
