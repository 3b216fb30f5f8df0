"""A small optimiser in NumPy: Adam (Kingma & Ba 2015) and global-norm clipping."""

from __future__ import annotations

import math
from collections.abc import Mapping, MutableMapping

import numpy as np


def global_norm(grads: Mapping[str, np.ndarray]) -> float:
    """The Euclidean norm of all gradients taken as one vector."""
    return math.sqrt(sum(float(np.vdot(g, g)) for g in grads.values()))


def clip_by_global_norm(
    grads: Mapping[str, np.ndarray], max_norm: float
) -> tuple[dict[str, np.ndarray], float]:
    """Scale ``grads`` so that their global norm is at most ``max_norm``.

    Returns the (possibly scaled) gradients and the norm before clipping.
    Every gradient is scaled by the same factor, so the direction of the
    update is kept; only its length is bounded (Pascanu et al. 2013).
    """
    if max_norm <= 0:
        raise ValueError(f"max_norm: expected a positive number, got {max_norm}")
    norm = global_norm(grads)
    if norm <= max_norm:
        return dict(grads), norm
    scale = max_norm / norm
    return {name: g * scale for name, g in grads.items()}, norm


class Adam:
    """Adam with bias correction, updating a dict of arrays in place."""

    def __init__(
        self,
        lr: float = 1e-3,
        beta1: float = 0.9,
        beta2: float = 0.999,
        eps: float = 1e-8,
    ) -> None:
        if lr <= 0:
            raise ValueError(f"lr: expected a positive learning rate, got {lr}")
        if not (0 <= beta1 < 1 and 0 <= beta2 < 1):
            raise ValueError(f"beta1, beta2: expected values in [0, 1), got {beta1}, {beta2}")
        self.lr = lr
        self.beta1 = beta1
        self.beta2 = beta2
        self.eps = eps
        self.steps = 0
        self._m: dict[str, np.ndarray] = {}
        self._v: dict[str, np.ndarray] = {}

    def step(
        self, params: MutableMapping[str, np.ndarray], grads: Mapping[str, np.ndarray]
    ) -> None:
        """Apply one update to every parameter that has a gradient."""
        self.steps += 1
        correction1 = 1.0 - self.beta1**self.steps
        correction2 = 1.0 - self.beta2**self.steps
        for name, grad in grads.items():
            m = self._m.setdefault(name, np.zeros_like(grad))
            v = self._v.setdefault(name, np.zeros_like(grad))
            m *= self.beta1
            m += (1.0 - self.beta1) * grad
            v *= self.beta2
            v += (1.0 - self.beta2) * grad * grad
            m_hat = m / correction1
            v_hat = v / correction2
            params[name] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)
