"""The linear recurrence s(t) = a(t) ⊙ s(t−1) + b(t) over all t at once.

The generated scan kernels (:mod:`derive.render.scan_kernel`) call these
functions; they hold no cell-specific knowledge.

A Python loop over T steps pays NumPy's per-call overhead T times on small
(B, n) arrays. The pairs (a, b) compose associatively,
(a₂, b₂) ∘ (a₁, b₁) = (a₂ a₁, a₂ b₁ + b₂), which is what a parallel scan
exploits. In NumPy the cheapest form is a **blocked scan**: the first K·L of
the T steps are cut into K blocks of L ≈ √T steps;

1. inside every block at once (arrays of shape (K, B, n)), L sequential
   steps give the block's local end state from zero and the product of a
   over the block (L Python-level steps over K times larger arrays);
2. K sequential steps carry the state across the blocks' ends;
3. L sequential steps, every block at once, compute each state from its
   block's incoming state, in place over b: s(t) = a(t) ⊙ s(t−1) + b(t),
   the loop's own step.

The last T − K·L < L steps (when L does not divide T) follow one by one.
That is about 2√T Python-level steps instead of T (about 5√T operations),
with only products of a (no division, no logarithm, unlike a cumulative
sum in log space): any sign, a(t) = 0 included (the state then forgets
its past exactly, as in the loop), no 1/∏a to overflow. The product of a
over one block multiplies only the state carried into the next block,
exactly where the loop's L steps multiply that state by the same factors:
when it underflows, so does what the loop carries. Step 2 is the only part
sequential over blocks; a GPU would do it with a tree instead.

The kernels call :func:`linear_scan_into` on one chunk of
:func:`chunk_steps` time steps at a time, carrying the state from chunk to
chunk, and evaluate everything else (the gates, a, b, the derived backward
equations) on the same chunk: every temporary array then fits in the
processor's cache and costs one small allocation, where a whole (T, B, n)
temporary costs a fresh allocation of tens of megabytes and a trip through
main memory for each operation. With chunks of C steps that is about
7 T / √C Python-level operations for the scan, each on a cached array.
"""

from __future__ import annotations

import math

import numpy as np

CHUNK_ELEMENTS = 1 << 15
"""Elements per array in a kernel's time chunk (:func:`chunk_steps`): 256 KiB in float64."""


def _check(a: np.ndarray, b: np.ndarray, s0: np.ndarray) -> None:
    if a.shape != b.shape or a.ndim < 1:
        raise ValueError(f"a, b: expected two arrays of the same shape (T, ...), got {a.shape} and {b.shape}")
    if s0.shape != a.shape[1:]:
        raise ValueError(f"s0: expected shape {a.shape[1:]} (a step of a and b), got {s0.shape}")


def block_length(steps: int) -> int:
    """The block length L ≈ √T used for ``steps`` steps (at least 1)."""
    return max(1, math.isqrt(max(steps, 1)))


def chunk_steps(steps: int, width: int) -> int:
    """How many time steps the kernels evaluate at once when one step holds
    ``width`` elements (B · n_h): about :data:`CHUNK_ELEMENTS` elements per
    array, at least one step, at most ``steps``."""
    if steps < 0 or width < 0:
        raise ValueError(f"steps, width: expected non-negative integers, got {steps} and {width}")
    return max(1, min(steps, CHUNK_ELEMENTS // max(width, 1)))


def linear_scan_into(a: np.ndarray, states: np.ndarray, block: int | None = None) -> np.ndarray:
    """s(t) = a(t) ⊙ s(t−1) + b(t) in place: on entry ``states[0]`` holds
    s(−1) and ``states[1:]`` holds b (shape (T, …) like ``a``); on return
    ``states[t + 1]`` holds s(t). Returns ``states``.

    ``block`` is the block length (default ≈ √T); any value gives the same
    states up to rounding. ``a`` may be any view (broadcast, reversed).
    """
    if not isinstance(states, np.ndarray) or states.ndim < 1 or states.shape[1:] != a.shape[1:] \
            or states.shape[0] != a.shape[0] + 1:
        raise ValueError(f"states: expected an array of shape (T + 1, ...) = {(a.shape[0] + 1, *a.shape[1:])}, "
                         f"got {getattr(states, 'shape', type(states).__name__)}")
    T, rest = a.shape[0], a.shape[1:]
    if T == 0:
        return states
    L = min(block or block_length(T), T)
    K = T // L
    n = K * L
    ak = a[:n].reshape(K, L, *rest)  # splitting the time axis: a view, whatever the strides
    bk = states[1 : n + 1].reshape(K, L, *rest)
    # 1. each block from zero, every block at once: its end state and ∏ a over it
    both = np.empty((2, K, *rest), states.dtype)  # the end states and the gains, side by side:
    end, gain = both  # one multiply by a(t) for the two
    end[...] = bk[:, 0]
    gain[...] = ak[:, 0]
    for j in range(1, L):
        both *= ak[:, j]
        end += bk[:, j]
    # 2. the state entering each block, across the blocks' ends
    carry = np.empty((K, *rest), states.dtype)
    carry[0] = states[0]
    for k in range(1, K):
        np.multiply(gain[k - 1], carry[k - 1], out=carry[k])
        carry[k] += end[k - 1]
    # 3. every state, every block at once, from its block's incoming state, over b in place
    term, prev = end, carry  # end is spent: its buffer holds a(t) ⊙ s(t−1)
    for j in range(L):
        np.multiply(ak[:, j], prev, out=term)
        bk[:, j] += term
        prev = bk[:, j]
    # the steps past the last whole block, one by one
    for t in range(n, T):
        states[t + 1] += a[t] * states[t]
    return states


def linear_scan(a: np.ndarray, b: np.ndarray, s0: np.ndarray, block: int | None = None) -> np.ndarray:
    """All states of s(t) = a(t) ⊙ s(t−1) + b(t), s(−1) = ``s0``.

    ``a`` and ``b`` have shape (T, …), ``s0`` the shape of one step.
    Returns an array of shape (T + 1, …): ``out[0] = s0``, ``out[t + 1] = s(t)``.
    ``block`` is the block length (default ≈ √T); any value gives the same
    states up to rounding.
    """
    a, b, s0 = np.asarray(a), np.asarray(b), np.asarray(s0)
    _check(a, b, s0)
    out = np.empty((a.shape[0] + 1, *a.shape[1:]), np.result_type(a, b, s0))
    out[0] = s0
    out[1:] = b
    return linear_scan_into(a, out, block)


def reverse_linear_scan(a: np.ndarray, d: np.ndarray, g_last: np.ndarray, block: int | None = None) -> np.ndarray:
    """The gradients g(t) of the backward pass of :func:`linear_scan`:
    g(t) = d(t) + a(t+1) ⊙ g(t+1), with g(T−1) = d(T−1) + ``g_last``.

    ``d`` is the gradient on each s(t) from the loss (shape (T, …)),
    ``g_last`` the gradient on the final state. Returns g, shape (T, …):
    the total gradient on each s(t); the gradient on s(−1) is a(0) ⊙ g(0).
    The same blocked scan as :func:`linear_scan_into`, on time-reversed
    views: g(T−1−u) = d(T−1−u) + a(T−u) ⊙ g(T−u) is a forward scan in u.
    """
    a, d, g_last = np.asarray(a), np.asarray(d), np.asarray(g_last)
    _check(a, d, g_last)
    T = a.shape[0]
    out = np.empty(a.shape, np.result_type(a, d, g_last))
    if T == 0:
        return out
    out[:] = d
    out[T - 1] += g_last
    linear_scan_into(a[:0:-1], out[::-1], block)  # a(T−1), …, a(1) onto g(T−1), …, g(0)
    return out
