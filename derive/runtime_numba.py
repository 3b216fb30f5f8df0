"""What the generated Numba kernels share: element-wise functions that
vectorise, typed per dtype.

Numba compiles ``np.tanh`` and ``np.exp`` on a scalar to a call into the C
library's ``tanh``/``exp`` (about 25 ns per float32 on this project's
machine, against 0.5 ns for NumPy's SIMD loops), and such a call stops
LLVM from vectorising the loop around it. The functions here are written in
plain arithmetic instead: e^(−y) by Cody–Waite reduction, y = k ln 2 − r
with |r| ≤ ½ ln 2, a Taylor polynomial for e^(−r) − 1 (degree 14 in
float64, 8 in float32) and 2^(−k) built from its bits, so that a loop of σ
or tanh compiles to SIMD instructions. Measured (``numba-findings`` in the
project notes): within 2.2 ulps of the exact σ and tanh in both dtypes,
over |z| ≤ 30 and at ±1e4 (no overflow, no NaN), relative to the value;
σ is accurate in both tails, tanh near 0.

Every function is generic over float32 and float64 through
``numba.extending.overload``: the float32 version computes in float32 with
float32 constants (a Python float literal is a float64 in Numba and would
silently promote the loop). ``fastmath={'contract'}`` lets LLVM fuse a
multiply and an add into one FMA (more exact, not less); no other
fast-math flag and no process-wide LLVM option is set.

This module imports Numba: only the Numba kernels import it.
"""

from __future__ import annotations

import numpy as np
from llvmlite import ir
from numba import njit, types
from numba.core import cgutils
from numba.core.imputils import impl_ret_borrowed
from numba.extending import intrinsic, overload
from numba.np.arrayobj import populate_array
from numba.np.linalg import ensure_blas

from derive import runtime, scipy_blas

scipy_blas.load()  # the BLAS extension alone, not all of scipy.linalg: 0.2 s less at every first kernel load
ensure_blas()  # numba_xxgemm calls SciPy's BLAS: without SciPy, a clear ImportError now rather than at a product

_OPTIONS = {"error_model": "numpy", "fastmath": {"contract"}}
_FLAGS = {**_OPTIONS, "cache": True}


@intrinsic
def _f64_from_bits(typingctx, bits):  # noqa: ANN001, ANN202 - a Numba intrinsic
    """The float64 whose IEEE bits are the int64 ``bits``."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        value = args[0]
        if bits.bitwidth != 64:
            value = builder.sext(value, ir.IntType(64))
        return builder.bitcast(value, ir.DoubleType())

    return types.float64(bits), codegen


@intrinsic
def _f32_from_bits(typingctx, bits):  # noqa: ANN001, ANN202 - a Numba intrinsic
    """The float32 whose IEEE bits are the low 32 bits of ``bits``."""
    if not isinstance(bits, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        value = args[0]
        if bits.bitwidth > 32:
            value = builder.trunc(value, ir.IntType(32))
        elif bits.bitwidth < 32:
            value = builder.sext(value, ir.IntType(32))
        return builder.bitcast(value, ir.FloatType())

    return types.float32(bits), codegen


@njit(**_FLAGS)
def _expm1_neg_f64(y):  # noqa: ANN001, ANN202
    """(e^(−y) − 1, e^(−y)) for y ≥ 0 in float64, y clamped at 708."""
    y = min(y, 708.0)
    k = np.floor(y * 1.4426950408889634 + 0.5)
    r = (k * 6.93147180369123816490e-01 - y) + k * 1.90821492927058770002e-10  # −y + k ln 2, |r| ≤ ½ ln 2
    q = 1.0 / 87178291200.0
    q = q * r + 1.0 / 6227020800.0
    q = q * r + 1.0 / 479001600.0
    q = q * r + 1.0 / 39916800.0
    q = q * r + 1.0 / 3628800.0
    q = q * r + 1.0 / 362880.0
    q = q * r + 1.0 / 40320.0
    q = q * r + 1.0 / 5040.0
    q = q * r + 1.0 / 720.0
    q = q * r + 1.0 / 120.0
    q = q * r + 1.0 / 24.0
    q = q * r + 1.0 / 6.0
    q = q * r + 0.5
    q = q * r + 1.0
    q = q * r  # e^r − 1
    s = _f64_from_bits((1023 - np.int64(k)) << 52)  # 2^(−k), exact
    return s * q + (s - 1.0), s * q + s


@njit(**_FLAGS)
def _expm1_neg_f32(y):  # noqa: ANN001, ANN202
    """(e^(−y) − 1, e^(−y)) for y ≥ 0 in float32, y clamped at 87."""
    y = min(y, np.float32(87.0))
    k = np.floor(y * np.float32(1.44269504) + np.float32(0.5))
    r = (k * np.float32(0.693359375) - y) + k * np.float32(-2.12194440e-4)
    q = np.float32(1.0 / 40320.0)
    q = q * r + np.float32(1.0 / 5040.0)
    q = q * r + np.float32(1.0 / 720.0)
    q = q * r + np.float32(1.0 / 120.0)
    q = q * r + np.float32(1.0 / 24.0)
    q = q * r + np.float32(1.0 / 6.0)
    q = q * r + np.float32(0.5)
    q = q * r + np.float32(1.0)
    q = q * r
    s = _f32_from_bits((127 - np.int64(k)) << 23)
    return s * q + (s - np.float32(1.0)), s * q + s


def _per_dtype(make):  # noqa: ANN001, ANN202
    """An ``overload`` implementation picked by the argument's float type:
    ``make(dtype, expm1_neg)`` returns the implementation for that dtype."""

    def typer(z):  # noqa: ANN001, ANN202
        if z == types.float64:
            return make(np.float64, _expm1_neg_f64)
        if z == types.float32:
            return make(np.float32, _expm1_neg_f32)
        return None

    return typer


def sigmoid(z):  # noqa: ANN001, ANN201 - typed by its overload
    """σ(z) = 1 / (1 + e^(−z)), from e^(−|z|): accurate in both tails, no overflow."""
    return 1.0 / (1.0 + np.exp(-z))


def tanh(z):  # noqa: ANN001, ANN201
    """tanh(z) = −expm1(−2|z|) / (2 + expm1(−2|z|)), the sign of z restored."""
    return np.tanh(z)


def relu(z):  # noqa: ANN001, ANN201
    """max(z, 0)."""
    return max(z, 0.0)


def softplus(z):  # noqa: ANN001, ANN201
    """log(1 + e^z) = max(z, 0) + log(1 + e^(−|z|))."""
    return np.logaddexp(z, 0.0)


def hard_sigmoid(z):  # noqa: ANN001, ANN201
    """clip(z/6 + 1/2, 0, 1)."""
    return min(max(z / 6.0 + 0.5, 0.0), 1.0)


def step(z):  # noqa: ANN001, ANN201
    """1 where z > 0, else 0 (ReLU's derivative in its output)."""
    return 1.0 if z > 0 else 0.0


def inside01(z):  # noqa: ANN001, ANN201
    """1 where 0 < z < 1, else 0 (hard-σ's derivative × 6, in its output)."""
    return 1.0 if 0 < z < 1 else 0.0


@overload(sigmoid, jit_options=_OPTIONS)
@_per_dtype
def _sigmoid(dtype, expm1_neg):  # noqa: ANN001, ANN202
    zero, one = dtype(0.0), dtype(1.0)

    def impl(z):  # noqa: ANN001, ANN202
        e = expm1_neg(abs(z))[1]
        s = one / (one + e)
        return s if z >= zero else e * s

    return impl


@overload(tanh, jit_options=_OPTIONS)
@_per_dtype
def _tanh(dtype, expm1_neg):  # noqa: ANN001, ANN202
    two = dtype(2.0)

    def impl(z):  # noqa: ANN001, ANN202
        m = expm1_neg(two * abs(z))[0]
        return np.copysign(-m / (two + m), z)

    return impl


@overload(relu, jit_options=_OPTIONS)
@_per_dtype
def _relu(dtype, expm1_neg):  # noqa: ANN001, ANN202
    zero = dtype(0.0)

    def impl(z):  # noqa: ANN001, ANN202
        return z if z > zero else zero

    return impl


@overload(softplus, jit_options=_OPTIONS)
@_per_dtype
def _softplus(dtype, expm1_neg):  # noqa: ANN001, ANN202
    zero = dtype(0.0)

    def impl(z):  # noqa: ANN001, ANN202
        return max(z, zero) + np.log1p(expm1_neg(abs(z))[1])

    return impl


@overload(hard_sigmoid, jit_options=_OPTIONS)
@_per_dtype
def _hard_sigmoid(dtype, expm1_neg):  # noqa: ANN001, ANN202
    zero, one, six, half = dtype(0.0), dtype(1.0), dtype(6.0), dtype(0.5)

    def impl(z):  # noqa: ANN001, ANN202
        return min(max(z / six + half, zero), one)

    return impl


@overload(step, jit_options=_OPTIONS)
@_per_dtype
def _step(dtype, expm1_neg):  # noqa: ANN001, ANN202
    zero, one = dtype(0.0), dtype(1.0)

    def impl(z):  # noqa: ANN001, ANN202
        return one if z > zero else zero

    return impl


@overload(inside01, jit_options=_OPTIONS)
@_per_dtype
def _inside01(dtype, expm1_neg):  # noqa: ANN001, ANN202
    zero, one = dtype(0.0), dtype(1.0)

    def impl(z):  # noqa: ANN001, ANN202
        return one if (z > zero and z < one) else zero

    return impl


__all__ = ["all_finite", "block_sums", "dot", "dot_add", "flat", "gemm", "gemm_in_pieces", "hard_sigmoid", "input_gradient", "inside01", "project", "relu", "sigmoid", "softplus", "step", "sum_rows", "tanh", "tile_rows", "weight_gradient"]


@njit(cache=True, error_model="numpy")
def all_finite(a):  # noqa: ANN001, ANN201
    """True when the C-contiguous array ``a`` holds no NaN and no inf: v − v is
    0 for a finite v and NaN otherwise, and an and of comparisons vectorises
    (a sum would not: LLVM keeps the order of float additions)."""
    flat = a.ravel()
    zero = flat.dtype.type(0)
    ok = True
    for i in range(flat.size):
        v = flat[i]
        ok &= (v - v) == zero
    return ok


runtime.use_compiled_finite(all_finite)  # the input checks of every kernel, NumPy's too, use it from now on


_GEMM = types.ExternalFunction("numba_xxgemm", types.intc(
    types.char, types.char, types.char, types.intp, types.intp, types.intp,  # kind, transa, transb, m, n, k
    types.voidptr, types.voidptr, types.intp, types.voidptr, types.intp,  # alpha, a, lda, b, ldb
    types.voidptr, types.voidptr, types.intp,  # beta, c, ldc
))
"""Numba's own entry to BLAS's gemm (``numba_xxgemm`` in its C helpers, the
function ``np.dot`` calls: SciPy's BLAS, column-major). Called directly, a
product is a few lines of code, where ``np.dot`` on a transposed array
compiles a much larger body into each function that calls it (measured
0.5 s per kernel and dtype), and it can add into the output (beta = 1) and
write into a column slice of it (ldc) without a temporary."""


@intrinsic
def _address(typingctx, a, offset):  # noqa: ANN001, ANN202 - a Numba intrinsic
    """The address of ``a.flat[offset]``, as void*."""
    if not isinstance(a, types.Array) or not isinstance(offset, types.Integer):
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        array = context.make_array(signature.args[0])(context, builder, args[0])
        return builder.bitcast(builder.gep(array.data, [args[1]]), ir.IntType(8).as_pointer())

    return types.voidptr(a, types.intp), codegen


@intrinsic
def _slot(typingctx, value):  # noqa: ANN001, ANN202 - a Numba intrinsic
    """The address of a copy of the float ``value`` on the calling function's stack, as void*."""
    if not isinstance(value, types.Float):
        return None

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        return builder.bitcast(cgutils.alloca_once_value(builder, args[0]), ir.IntType(8).as_pointer())

    return types.voidptr(value), codegen


@njit(cache=True, error_model="numpy")
def gemm(a, b, out, column, transpose_a, beta):  # noqa: ANN001, ANN201
    """out[:, column:column + n] = op(a) @ b + beta · out[:, column:column + n],
    op(a) = aᵀ if ``transpose_a``, on C-contiguous 2-D arrays of one dtype."""
    m, k = (a.shape[1], a.shape[0]) if transpose_a else (a.shape[0], a.shape[1])
    n = b.shape[1]
    size = a.itemsize
    if (b.shape[0] != k or out.shape[0] != m or column < 0 or column + n > out.shape[1]
            # each operand laid out as BLAS is told: rows of shape[1] contiguous items, one after the other. The
            # stride of a dimension of length 1 is not looked at: NumPy calls such an array C-contiguous whatever
            # it is (a (1, 1) transposed view has strides (8, 40)) and no element is reached through it. Written
            # out here: a helper function measured 80 ns more per product (Numba did not inline it)
            or (a.shape[1] > 1 and a.strides[1] != size) or (a.shape[0] > 1 and a.strides[0] != a.shape[1] * size)
            or (b.shape[1] > 1 and b.strides[1] != size) or (b.shape[0] > 1 and b.strides[0] != n * size)
            or (out.shape[1] > 1 and out.strides[1] != size) or (out.shape[0] > 1 and out.strides[0] != out.shape[1] * size)):
        raise ValueError("gemm: expected C-contiguous operands of matching shapes")
    # row-major out = op(a) @ b is column-major outᵀ = bᵀ op(a)ᵀ
    status = _GEMM(np.int8(100 if size == 8 else 115), np.int8(110), np.int8(116 if transpose_a else 110),  # d|s, n, t|n
                   n, m, k, _slot(a.dtype.type(1)), _address(b, 0), n, _address(a, 0), a.shape[1],
                   _slot(a.dtype.type(beta)), _address(out, column), out.shape[1])
    if status < 0:
        raise RuntimeError("gemm: BLAS is not available (Numba needs SciPy's)")


# OpenBLAS (SciPy's, on this project's AVX-512 machine) runs a product whose m·n·k is at most 100³ through its
# small-matrix kernels, without packing the operands: the products over all steps, long in one dimension
# (T·B), ran 24–47 % faster at the medium shape cut into pieces under that size than whole (weight gradients,
# projections and δx, float32 and float64; the large shape 2–32 %). Pieces shorter than 32 rows ran slower
# than one call (n_h ≥ 256): such a product stays whole.
_SMALL_GEMM = 100**3
_SHORTEST_PIECE = 32


@njit(cache=True, error_model="numpy")
def gemm_in_pieces(a, b, out, column, transpose_a, beta):  # noqa: ANN001, ANN201
    """:func:`gemm` on operands long in their rows (the T·B of all steps), cut
    into pieces of rows that BLAS multiplies with its small-matrix kernels:
    ``out``'s rows when a is not transposed (each piece with ``beta``), else
    the depth k of the product (the first piece with ``beta``, the others
    adding into it)."""
    rows = a.shape[0]
    piece = _SMALL_GEMM // max(a.shape[1] * b.shape[1], 1)  # m·n (a transposed) or k·n: the product's size per row of a
    if piece < _SHORTEST_PIECE:
        piece = max(rows, 1)  # one piece: the whole product
    for r in range(0, max(rows, 1), piece):  # one call site: three compiled 1.4 s longer (all kernels, both dtypes)
        end = min(r + piece, rows)
        gemm(a[r:end], b[r:end] if transpose_a else b, out if transpose_a else out[r:end], column, transpose_a,
             beta if r == 0 or not transpose_a else 1.0)


@njit(cache=True, error_model="numpy")
def dot(a, b, out):  # noqa: ANN001, ANN201
    """out = a @ b (2-D C-contiguous, BLAS): compiled once per dtype here and
    cached, not once per kernel that calls it."""
    gemm(a, b, out, 0, False, 0.0)


@njit(cache=True, error_model="numpy")
def dot_add(a, b, out):  # noqa: ANN001, ANN201
    """out += a @ b (2-D C-contiguous, BLAS)."""
    gemm(a, b, out, 0, False, 1.0)


# What the fused loops of a step use. A loop runs over the B·n_h elements of a step's (B, n_h)
# arrays at once, through flat views: one loop over the batch rows around one over n_h left the
# vector loop a trip count of n_h, and LLVM's SIMD loop (4 to 16 elements per pass with its unrolling)
# then ran in scalar code for n_h = 15 and for the float32 LSTM with peepholes at n_h = 16 (its forward
# loop 3.6× slower at B = 64).


@intrinsic
def flat(typingctx, a):  # noqa: ANN001, ANN202 - a Numba intrinsic
    """The C-contiguous array ``a`` as a 1-D view of all its elements:
    ``a.ravel()`` without the reshape helper Numba calls for it."""
    if not isinstance(a, types.Array) or a.layout != "C":
        return None
    result = types.Array(a.dtype, 1, "C")

    def codegen(context, builder, signature, args):  # noqa: ANN001, ANN202
        source = context.make_array(signature.args[0])(context, builder, args[0])
        view = context.make_array(result)(context, builder)
        size = source.nitems
        data = source.data
        # an empty asm the pointer passes through: LLVM no longer knows which array the view is in, so it
        # checks the ranges it reads and writes at run time, rather than giving up on c(t-1) and c(t)
        launder = ir.InlineAsm(ir.FunctionType(data.type, [data.type]), "", "=r,0", side_effect=False)
        data = builder.call(launder, [data])
        populate_array(view, data=data, shape=[size], strides=[source.itemsize], itemsize=source.itemsize,
                       meminfo=source.meminfo)
        return impl_ret_borrowed(context, builder, result, view._getvalue())

    return result(a), codegen


@njit(cache=True, error_model="numpy")
def tile_rows(p, B):  # noqa: ANN001, ANN201
    """A per-element parameter p (n,) repeated for the B rows of a step, (B·n,):
    read at the index of the flat loop."""
    n = p.shape[0]
    out = np.empty(B * n, p.dtype)
    for b in range(B):
        for j in range(n):  # not a slice assignment: its shape check's message adds a libm call
            out[b * n + j] = p[j]
    return out


@njit(cache=True, error_model="numpy")
def sum_rows(rows, out):  # noqa: ANN001, ANN201
    """out = Σ_b rows[b·n:(b+1)·n], rows (B·n,), out (n,): a per-element
    parameter's gradient, summed over the batch after the loop."""
    n = out.shape[0]
    out[:] = 0
    for b in range(rows.shape[0] // n):
        r = rows[b * n:(b + 1) * n]
        for j in range(n):
            out[j] += r[j]


@njit(cache=True, error_model="numpy")
def block_sums(dZ, out):  # noqa: ANN001, ANN201
    """out[i] = Σ_r dZ[i, r] for each block i of dZ (k, T·B, n_h), the bias
    gradients; True when every sum is finite, which is so when dZ holds no
    inf and no NaN and no sum overflows."""
    for i in range(dZ.shape[0]):
        sum_rows(flat(dZ[i]), out[i])
    return all_finite(out)


# The products before and after a kernel's time loop, over all steps at once, each one compiled call
# from the kernel's wrapper: a NumPy call costs about 1 µs, as much as the work at T=20, B=4. Compiled
# into the kernels' own loops instead, they measured ~0.4 s more compile per kernel and dtype (Numba
# optimises again, in every caller, the code of the functions it calls); here they compile once.


@njit(cache=True, error_model="numpy")
def project(xs, W_x, b, Z):  # noqa: ANN001, ANN201
    """Z[i] = x(t) W_x[i] + b[i] for every step t, with ``xs`` (T·B, n_x) and Z
    (k, T·B, n_h): the blocks past ``len(W_x)`` take no x(t) part, and an empty
    ``b`` (0, n_h) adds no bias. With biases, x(t) takes a column of ones and
    each W_x[i] the row b[i], so that one GEMM writes each block whole: adding
    the biases in a pass of their own read and wrote all of Z once more (at
    B = 64 and n_h ≥ 120, a GEMM of depth n_x = 2 is that pass's cost again)."""
    rows, n_x = xs.shape
    dtype = Z.dtype
    zero = dtype.type(0)
    with_bias = b.shape[0] > 0
    if with_bias:
        xs1 = np.empty((rows, n_x + 1), dtype)
        for r in range(rows):
            xr = xs[r]
            x1 = xs1[r]
            for c in range(n_x):
                x1[c] = xr[c]
            x1[n_x] = 1
        W1 = np.empty((n_x + 1, Z.shape[2]), dtype)
    for i in range(Z.shape[0]):
        z = Z[i]
        if i < W_x.shape[0]:
            if with_bias:
                # element loops: the slice assignments W1[:n_x] = W_x[i], W1[n_x] = b[i] compiled 4.7 s
                # longer (per dtype), for the same work
                for r in range(n_x + 1):
                    source = W_x[i, r] if r < n_x else b[i]
                    w1 = W1[r]
                    for j in range(w1.shape[0]):
                        w1[j] = source[j]
                gemm_in_pieces(xs1, W1, z, 0, False, 0.0)
            else:
                gemm_in_pieces(xs, W_x[i], z, 0, False, 0.0)
        else:
            for r in range(z.shape[0]):
                row = z[r]
                for j in range(row.shape[0]):
                    row[j] = b[i, j] if with_bias else zero


@njit(cache=True, error_model="numpy")
def input_gradient(dZ, W_x, d_xs):  # noqa: ANN001, ANN201
    """δx after the backward loop, all steps at once: d_xs = Σ_i dZ[i] @ W_x[i]
    over the first len(W_x) blocks of dZ (k, T·B, n_h), the ones that read
    x(t) (a prefix of Z, as in :func:`project`), into d_xs (T·B, n_x)."""
    for i in range(W_x.shape[0]):
        gemm_in_pieces(dZ[i], W_x[i], d_xs, 0, False, 0.0 if i == 0 else 1.0)


@njit(cache=True, error_model="numpy")
def weight_gradient(dZ, block, part, d_W, column):  # noqa: ANN001, ANN201
    """One part's columns of a weight's gradient after the backward loop, all
    steps at once: d_W[:, column:column + width] = dZ[block]ᵀ @ part, with dZ
    (k, T·B, n_h) and the part (T·B, width), Σ_t δz(t) part(t)ᵀ."""
    gemm_in_pieces(dZ[block], part, d_W, column, True, 0.0)
