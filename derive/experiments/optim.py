"""A small optimiser in NumPy: Adam (Kingma & Ba 2015) and global-norm clipping.

Both work on a dict of arrays. Training keeps its parameters as views of one
flat vector (:class:`FlatParameters`), so that a step is a handful of NumPy
calls over that vector instead of a dozen per parameter array: the same
element-wise arithmetic, so the same numbers.
"""

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
            m, v = self._m.get(name), self._v.get(name)
            if m is None or v is None:  # not setdefault: it would allocate zeros at every step
                m = self._m[name] = np.zeros_like(grad)
                v = self._v[name] = np.zeros_like(grad)
            m *= self.beta1
            m += (1.0 - self.beta1) * grad
            v *= self.beta2
            v += (1.0 - self.beta2) * grad * grad
            m_hat = m / correction1
            v_hat = v / correction2
            params[name] -= self.lr * m_hat / (np.sqrt(v_hat) + self.eps)


class FlatParameters:
    """Named arrays laid out one after the other in one contiguous vector.

    ``flat`` holds the values and ``views`` the arrays, as views of ``flat``
    with their shapes: writing into one writes into the other. An optimiser
    given ``{"flat": flat}`` and the gradients gathered the same way
    (:meth:`gather`) updates every array with a few calls over one vector.
    """

    def __init__(self, arrays: Mapping[str, np.ndarray]) -> None:
        if not arrays:
            raise ValueError("arrays: expected at least one named array, got none")
        values = {name: np.asarray(array) for name, array in arrays.items()}
        dtypes = {array.dtype for array in values.values()}
        if len(dtypes) != 1 or not np.issubdtype(next(iter(dtypes)), np.floating):
            raise ValueError(f"arrays: expected arrays of one float dtype, got {sorted(map(str, dtypes))}")
        self.shapes: dict[str, tuple[int, ...]] = {name: array.shape for name, array in values.items()}
        self.flat = np.concatenate([array.ravel() for array in values.values()])
        self.views = self.split(self.flat)

    @property
    def size(self) -> int:
        """The number of values, all arrays together."""
        return int(self.flat.size)

    def split(self, vector: np.ndarray) -> dict[str, np.ndarray]:
        """The arrays of ``vector`` (laid out like :attr:`flat`), as views of it."""
        if vector.shape != self.flat.shape:
            raise ValueError(f"vector: expected shape {self.flat.shape}, got {vector.shape}")
        arrays, start = {}, 0
        for name, shape in self.shapes.items():
            stop = start + math.prod(shape)
            arrays[name] = vector[start:stop].reshape(shape)
            start = stop
        return arrays

    def gather(self, arrays: Mapping[str, np.ndarray], out: np.ndarray | None = None) -> np.ndarray:
        """One vector laid out like :attr:`flat` from ``arrays`` (every name,
        its shape), written into ``out`` when given."""
        parts = []
        for name, shape in self.shapes.items():
            if name not in arrays:
                raise ValueError(f"arrays: expected an array named {name!r}, got {sorted(arrays)}")
            array = np.asarray(arrays[name])
            if array.shape != shape:
                raise ValueError(f"arrays[{name!r}]: expected shape {shape}, got {array.shape}")
            parts.append(array.ravel())
        return np.concatenate(parts, out=out)
