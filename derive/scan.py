"""The linear recurrence s(t) = a(t) ⊙ s(t−1) + b(t) over all t at once.

The generated scan kernels (:mod:`derive.render.scan_kernel`) call these
two functions; they hold no cell-specific knowledge.

A Python loop over T steps pays NumPy's per-call overhead T times on small
(B, n) arrays. The pairs (a, b) compose associatively,
(a₂, b₂) ∘ (a₁, b₁) = (a₂ a₁, a₂ b₁ + b₂), which is what a parallel scan
exploits. In NumPy the cheapest form is a **blocked scan**: the T steps are
cut into K blocks of L ≈ √T steps;

1. inside every block at once (arrays of shape (K, B, n)), L sequential
   steps give the block's local states from zero and the running products
   of a (L Python-level steps over K times larger arrays);
2. K sequential steps carry the state across the blocks' ends;
3. one vectorised pass adds each block's incoming state times the running
   products.

That is about 2√T Python-level steps instead of T, with only products of a
(no division, no logarithm: any sign, no overflow of 1/∏a). Step 2 is the
only part sequential over blocks; a GPU would do it with a tree instead.
"""

from __future__ import annotations

import math

import numpy as np


def _check(a: np.ndarray, b: np.ndarray, s0: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(f"a, b: expected two arrays of the same shape (T, ...), got {a.shape} and {b.shape}")
    if s0.shape != a.shape[1:]:
        raise ValueError(f"s0: expected shape {a.shape[1:]} (a step of a and b), got {s0.shape}")


def block_length(steps: int) -> int:
    """The block length L ≈ √T used for ``steps`` steps (at least 1)."""
    return max(1, math.isqrt(max(steps, 1)))


def linear_scan(a: np.ndarray, b: np.ndarray, s0: np.ndarray, block: int | None = None) -> np.ndarray:
    """All states of s(t) = a(t) ⊙ s(t−1) + b(t), s(−1) = ``s0``.

    ``a`` and ``b`` have shape (T, …), ``s0`` the shape of one step.
    Returns an array of shape (T + 1, …): ``out[0] = s0``, ``out[t + 1] = s(t)``.
    ``block`` is the block length (default ≈ √T); any value gives the same
    states up to rounding.
    """
    a, b, s0 = np.asarray(a), np.asarray(b), np.asarray(s0)
    _check(a, b, s0)
    T, rest = a.shape[0], a.shape[1:]
    dtype = np.result_type(a, b, s0)
    L = min(block or block_length(T), max(T, 1))
    K = -(-T // L)
    pad = K * L - T
    out = np.empty((K * L + 1, *rest), dtype)
    out[0] = s0
    if T == 0:
        return out
    if pad:  # a = 1, b = 0 past the end: the padded steps keep the state
        a = np.concatenate([a, np.ones((pad, *rest), a.dtype)])
        b = np.concatenate([b, np.zeros((pad, *rest), b.dtype)])
    ak = a.reshape(K, L, *rest)  # splitting the time axis: a view, whatever its strides
    bk = b.reshape(K, L, *rest)
    # 1. each block from zero, every block at once: its end state and ∏ a over it
    end = bk[:, 0].astype(dtype, copy=True)
    gain = ak[:, 0].astype(dtype, copy=True)
    for j in range(1, L):
        end *= ak[:, j]
        end += bk[:, j]
        gain *= ak[:, j]
    # 2. the state entering each block, across the blocks' ends
    carry = np.empty((K, *rest), dtype)
    carry[0] = s0
    for k in range(1, K):
        np.multiply(gain[k - 1], carry[k - 1], out=carry[k])
        carry[k] += end[k - 1]
    # 3. every state, every block at once, from its block's incoming state
    states = out[1:].reshape(K, L, *rest)
    np.multiply(ak[:, 0], carry, out=states[:, 0])
    states[:, 0] += bk[:, 0]
    for j in range(1, L):
        np.multiply(ak[:, j], states[:, j - 1], out=states[:, j])
        states[:, j] += bk[:, j]
    return out[: T + 1]


def reverse_linear_scan(a: np.ndarray, d: np.ndarray, g_last: np.ndarray, block: int | None = None) -> np.ndarray:
    """The gradients g(t) of the backward pass of :func:`linear_scan`:
    g(t) = d(t) + a(t+1) ⊙ g(t+1), with g(T−1) = d(T−1) + ``g_last``.

    ``d`` is the gradient on each s(t) from the loss (shape (T, …)),
    ``g_last`` the gradient on the final state. Returns g, shape (T, …):
    the total gradient on each s(t); the gradient on s(−1) is a(0) ⊙ g(0).
    The same three passes as :func:`linear_scan`, each block read backwards.
    """
    a, d, g_last = np.asarray(a), np.asarray(d), np.asarray(g_last)
    _check(a, d, g_last)
    T, rest = a.shape[0], a.shape[1:]
    dtype = np.result_type(a, d, g_last)
    if T == 0:
        return np.empty((0, *rest), dtype)
    L = min(block or block_length(T), T)
    K = -(-T // L)
    pad = K * L - T
    if pad:  # a = 1, d = 0 past the end: the padded steps pass g_last on unchanged
        a = np.concatenate([a, np.ones((pad, *rest), a.dtype)])
        d = np.concatenate([d, np.zeros((pad, *rest), d.dtype)])
    ak = a.reshape(K, L, *rest)
    dk = d.reshape(K, L, *rest)
    # a(t+1) for the last step of each block: the next block's first a; 1 after the end
    a_after = np.ones((K, *rest), a.dtype)
    a_after[:-1] = ak[1:, 0]
    # 1. each block from zero at its end, every block at once: g at its first step, ∏ a over it
    start = dk[:, L - 1].astype(dtype, copy=True)
    gain = a_after.astype(dtype, copy=True)
    for j in range(L - 2, -1, -1):
        start *= ak[:, j + 1]
        start += dk[:, j]
        gain *= ak[:, j + 1]
    # 2. the gradient entering each block from the one after it
    carry = np.empty((K, *rest), dtype)
    carry[K - 1] = g_last
    for k in range(K - 2, -1, -1):
        np.multiply(gain[k + 1], carry[k + 1], out=carry[k])
        carry[k] += start[k + 1]
    # 3. every g, every block at once
    out = np.empty((K, L, *rest), dtype)
    np.multiply(a_after, carry, out=out[:, L - 1])
    out[:, L - 1] += dk[:, L - 1]
    for j in range(L - 2, -1, -1):
        np.multiply(ak[:, j + 1], out[:, j + 1], out=out[:, j])
        out[:, j] += dk[:, j]
    return out.reshape(K * L, *rest)[:T]
