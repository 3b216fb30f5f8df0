"""What the generated kernels share: a stable σ and the input checks.

Every check raises a ``ValueError`` naming the argument, the expected and
the received: ``xs: expected shape (T, B, 3) with n_x = 3 from
params['W_r'], got (5, 2, 4)``. Sizes are written as in the cells: ``"n_h"``,
``"n_x"``, and ``"n_h+n_x"`` for a matrix acting on a concatenation.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import math

import numpy as np

FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
"""The dtypes kernels accept; float16 is refused (σ and tanh lose too much)."""
_FLOAT32, _FLOAT64 = FLOAT_DTYPES


SIGMOID_TAIL_HALF_Z = {np.dtype(np.float32): -2.0, np.dtype(np.float64): -10.0}
"""When some z is below −4 in float32 (σ < 0.018) or −20 in float64 (σ < 2e−9),
σ is computed as 1 / (1 + e^(−z)): above those, ½(1 + tanh(z/2)) is within
4e−6 (float32) and 6e−8 (float64) of σ, relatively."""


def sigmoid(z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """σ(z) = 1 / (1 + e^(−z)), accurate in both tails; see :func:`sigmoid_of_half`.

    No overflow warning at |z| = 1e4. The dtype of ``z`` (float32 or
    float64) is kept. ``out`` (may be ``z`` itself) receives the result, as
    for a ufunc.
    """
    z = np.asarray(z)
    if out is None:
        out = np.empty_like(z, dtype=z.dtype if z.dtype.kind == "f" else np.float64)
    np.multiply(z, out.dtype.type(0.5), out=out)
    return sigmoid_of_half(out, out=out)


def sigmoid_of_half(half_z: np.ndarray, out: np.ndarray | None = None) -> np.ndarray:
    """σ(z) from ``half_z`` = z / 2: ½ tanh(z/2) + ½, or 1 / (1 + e^(−z)) when there is a left tail.

    The kernels fold the ½ into the weights that produce a gate's
    pre-activation, so they call this on z/2 directly (in place, with
    ``out=half_z``). ``½ t + ½`` rounds exactly like ``½ (t + 1)``.

    Why two forms. ½(1 + tanh(z/2)) saturates instead of overflowing and is
    one fast ufunc pass (tanh is vectorised; an ``np.where`` over two
    stable branches is about 9× slower), but 1 + tanh(z/2) cancels for
    z ≪ 0: its values are multiples of ½ ulp(1), so in float32 σ(−18) is
    6e−8 instead of 1.5e−8 and σ(z) = 0 below z ≈ −17. That is not
    harmless: a gate held nearly shut (bias −20) gets gradients δz = δG ⊙
    G(1 − G) wrong by factors up to 600 relative to their own scale
    (``benchmarks/sigmoid_tail.py``), which a scale-free optimiser such as
    Adam follows; float64 has the same flaw further out (σ(z) = 0 below
    z ≈ −37). So when some z is below −4 in float32, −20 in float64 (a
    ``min`` pass tells), the whole array is computed as 1 / (1 + e^(−z)),
    accurate to a few ulps in both tails, e^(−z) clamped below overflow (σ
    changes only below the smallest normal float): five passes instead of
    three. Otherwise the tanh form's relative error is below 4e−6 in float32
    and 6e−8 in float64. (The float64 threshold is far out so that
    ordinary float64 runs, the experiments' among them, keep the tanh form
    and its exact results: their training is chaotic enough that changing
    σ in the last bits changes which seeds learn.)
    """
    if half_z.size and half_z.min() < SIGMOID_TAIL_HALF_Z.get(half_z.dtype, -2.0):
        return _sigmoid_of_half_exp(half_z, out)
    out = np.tanh(half_z, out=out)
    half = out.dtype.type(0.5)
    out *= half
    out += half
    return out


_EXP_LIMIT = {np.dtype(np.float32): np.float32(88.0), np.dtype(np.float64): np.float64(709.0)}
"""The largest −z whose e^(−z) is finite: clamping there keeps exp silent
and changes σ only below the smallest normal float."""


def _sigmoid_of_half_exp(half_z: np.ndarray, out: np.ndarray | None) -> np.ndarray:
    """1 / (1 + e^(−z)) from z/2, in five passes, ``out`` may be ``half_z``."""
    dtype = half_z.dtype
    out = np.multiply(half_z, dtype.type(-2), out=out)
    np.minimum(out, _EXP_LIMIT.get(dtype, dtype.type(88)), out=out)
    np.exp(out, out=out)
    out += dtype.type(1)
    return np.reciprocal(out, out=out)


def hard_sigmoid(z: np.ndarray) -> np.ndarray:
    """PyTorch's hard-σ, clip(z/6 + ½, 0, 1), in the dtype of ``z``."""
    z = np.asarray(z)
    return np.clip(z / z.dtype.type(6) + z.dtype.type(0.5), 0, 1)


def step(y: np.ndarray) -> np.ndarray:
    """1 where y > 0, else 0 (ReLU's derivative in its output; 0 at 0, as
    PyTorch), in the dtype of ``y``."""
    y = np.asarray(y)
    return (y > 0).astype(y.dtype)


def inside01(y: np.ndarray) -> np.ndarray:
    """1 where 0 < y < 1, else 0 (hard-σ's derivative ×6, in its output)."""
    y = np.asarray(y)
    return ((y > 0) & (y < 1)).astype(y.dtype)


@dataclass(frozen=True)
class Sizes:
    """The sizes read from the parameters: ``values["n_x"]`` and the
    parameter each was read from (``origin["n_x"] == "W_r"``)."""

    values: dict[str, int]
    origin: dict[str, str] = field(default_factory=dict)
    _texts: dict[tuple[str, ...], str] = field(default_factory=dict, init=False, repr=False, compare=False)

    def __getitem__(self, name: str) -> int:
        return self.values[name]

    def why(self, *names: str) -> str:
        """`` with n_x = 3 from params['W_r']`` — where the expected sizes come from.

        Written once per ``names``: a kernel asks for it at every call (its
        ``xs`` check's message), with the Sizes of a known layout."""
        text = self._texts.get(names)
        if text is None:
            parts = [f"{n} = {self.values[n]} from params[{self.origin[n]!r}]" for n in names if n in self.origin]
            text = self._texts[names] = " with " + ", ".join(parts) if parts else ""
        return text


def check_params(
    params: Mapping[str, np.ndarray], expected: Mapping[str, Sequence[int | str]], dtype: np.dtype | None = None
) -> tuple[Sizes, np.dtype]:
    """Check ``params`` against ``expected`` shapes; return the sizes and the dtype.

    ``expected`` maps each key to a shape whose entries are ints or size
    names (``("n_h", "n_h+n_x")``). A size name takes its value from the
    first parameter (in ``expected``'s order) where it can be read; every
    other parameter must agree. All parameters must share one float dtype
    (``dtype`` if given) and hold finite values.
    """
    asked = dtype  # the argument, before it is resolved: part of the layout's key
    known = _known_params(params, expected, asked)
    if known is not None:
        return known
    if not isinstance(params, Mapping):
        raise ValueError(f"params: expected a dict of arrays with keys {list(expected)}, got {type(params).__name__}")
    missing = [k for k in expected if k not in params]
    extra = [k for k in params if k not in expected]
    if missing or extra:
        detail = (f" (missing {missing})" if missing else "") + (f" (unexpected {extra})" if extra else "")
        raise ValueError(f"params: expected keys {list(expected)}, got {list(params)}{detail}")
    arrays = {k: _as_array(params[k]) for k in expected}
    plan = _plan(expected)
    for key, rank in plan.ranks:
        if rank != arrays[key].ndim:
            raise ValueError(f"params[{key!r}]: expected shape {_spec(expected[key])}, got {arrays[key].shape}")
    sizes = _bind_sizes(plan, arrays, expected)
    values = sizes.values
    resolved: dict[str, int] = {}  # each size entry computed once: this runs at every kernel call
    for key, spec in plan.shapes:
        array = arrays[key]
        want = tuple(e if type(e) is int else resolved[e] if e in resolved else resolved.setdefault(e, sum(values[t] for t in plan.terms[e])) for e in spec)
        if array.shape != want:
            names = [t for entry in expected[key] if isinstance(entry, str) for t in entry.split("+")]
            raise ValueError(
                f"params[{key!r}]: expected shape {want} = {_spec(expected[key])}{sizes.why(*dict.fromkeys(names))}, got {array.shape}"
            )
    first = next(iter(arrays))
    dtype = np.dtype(dtype) if dtype is not None else arrays[first].dtype
    with np.errstate(over="ignore", invalid="ignore"):  # see _finite_quiet: one errstate for every parameter
        for key, array in arrays.items():
            _check_dtype(f"params[{key!r}]", array, dtype, f" like params[{first!r}]")
            _finite_quiet(f"params[{key!r}]", array)
    _remember_params(arrays, expected, asked, dtype, sizes)
    return sizes, dtype


@dataclass(frozen=True)
class _Layout:
    """A parameter layout :func:`check_params` accepted: each key with its
    array's shape and dtype, the ``dtype`` argument, and the result."""

    arrays: tuple[tuple[str, tuple[int, ...], np.dtype], ...]
    asked: object
    sizes: Sizes
    dtype: np.dtype


_KNOWN: dict[int, tuple[dict[str, tuple], list[_Layout]]] = {}
"""The layouts :func:`check_params` has accepted, by the id of ``expected``:
(a copy of ``expected`` then, its layouts, the latest first). A hit counts
only while ``expected`` still equals the copy: a reused id or a dict of
shapes changed in place takes the full path."""

_LAYOUTS_PER_SHAPES = 8  # a kernel sees one or two (float32 and float64); more is a sweep over sizes


def _known_params(
    params: object, expected: Mapping[str, Sequence[int | str]], dtype: np.dtype | None
) -> tuple[Sizes, np.dtype] | None:
    """:func:`check_params`' result when ``params`` has a layout it accepted
    before (same keys, shapes and dtypes), after checking that the values are
    finite; ``None`` (take the full path) otherwise, or when a value is not.

    The kernels call ``check_params`` at every step of a training loop with
    the same layout each time: this skips re-deriving the sizes (most of
    the check's cost for a small model) and keeps only the value check. It
    runs at every kernel call, where each Python operation counts (in a
    training loop, this check took about a sixth of a small RNN's time): the
    latest layout is tried first, the shapes and dtypes compared as they
    are (a dtype first by identity: NumPy gives every native float32 array
    the same one).
    """
    if type(params) is not dict:
        return None
    entry = _KNOWN.get(id(expected))
    if entry is None or len(params) != len(expected):
        return None
    for layout in entry[1]:
        if layout.asked is dtype and _has_layout(params, layout):
            break
    else:
        return None
    if entry[0] != expected:  # the shapes as they were then: a dict changed in place misses
        return None
    test = _COMPILED_FINITE
    summed = []  # no compiled test, or not C-contiguous: a NumPy sum
    for key, _, _ in layout.arrays:
        array = params[key]
        if test is None or not array.flags.c_contiguous:
            summed.append(array)
        elif not test(array):
            return None  # the full path says which and where
    if summed:
        with np.errstate(over="ignore", invalid="ignore"):  # see _finite_quiet
            for array in summed:
                if not math.isfinite(np.add.reduce(array, axis=None)):
                    return None  # maybe not finite: the full path says which and where
    return layout.sizes, layout.dtype


def _has_layout(params: dict, layout: _Layout) -> bool:
    """Whether ``params`` holds an ndarray of the layout's shape and dtype
    under each of its keys (and, having as many keys, no other)."""
    for key, shape, dtype in layout.arrays:
        array = params.get(key)
        if type(array) is not np.ndarray or array.shape != shape:
            return False
        if array.dtype is not dtype and array.dtype != dtype:  # equal, not identical: a dtype unpickled, say
            return False
    return True


def _remember_params(
    arrays: Mapping[str, np.ndarray],
    expected: Mapping[str, Sequence[int | str]],
    asked: object,
    dtype: np.dtype,
    sizes: Sizes,
) -> None:
    """Record a layout :func:`check_params` accepted (ndarrays only, as given), for :func:`_known_params`."""
    if not all(type(a) is np.ndarray for a in arrays.values()):
        return
    layout = _Layout(tuple((k, a.shape, a.dtype) for k, a in arrays.items()), asked, sizes, dtype)
    copy = {k: tuple(spec) for k, spec in expected.items()}
    entry = _KNOWN.get(id(expected))
    if entry is None or entry[0] != copy:
        if len(_KNOWN) >= 256:
            _KNOWN.clear()
        entry = _KNOWN[id(expected)] = (copy, [])
    entry[1].insert(0, layout)
    del entry[1][_LAYOUTS_PER_SHAPES:]


def as_arrays(params: Mapping[str, object], names: Sequence[str]) -> Mapping[str, np.ndarray]:
    """``params`` itself when its values under ``names`` are all ndarrays (as
    a kernel is almost always given), else a dict of them as arrays (nested
    lists, say, which :func:`check_params` accepts)."""
    for name in names:
        if type(params[name]) is not np.ndarray:
            return {k: _as_array(params[k]) for k in names}
    return params


def check_sequence(
    name: str,
    array: np.ndarray,
    shape: Sequence[int | None],
    dtype: np.dtype | None = None,
    *,
    dims: Sequence[str] = ("T", "B", "n"),
    why: str = "",
    finite: bool = True,
) -> np.ndarray:
    """Check a (T, B, n) sequence such as ``xs`` or ``dys``; return it as an array.

    ``shape`` has ``None`` for a free size (shown by its label from
    ``dims``); ``why`` explains the fixed ones (``Sizes.why``, or
    ``" like ys"``). The dtype must be float32 or float64 (``dtype`` if
    given) and, unless ``finite`` is False (a caller that checks them
    later), the values finite. Free sizes must be at least 1.
    """
    # what a kernel is given at every call, told apart in a few attribute reads (the dtype by identity:
    # NumPy gives every native float32 array the same one): an ndarray of the rank, sizes and dtype asked for
    if type(array) is np.ndarray and array.ndim == len(shape) and array.dtype is dtype and (dtype is _FLOAT32 or dtype is _FLOAT64):
        for got, want in zip(array.shape, shape):
            if got < 1 if want is None else got != want:
                break
        else:
            if finite:
                _check_finite(name, array)
            return array
    array = _as_array(array)
    if array.ndim != len(shape):
        raise ValueError(f"{name}: expected rank {len(shape)}, shape {_shown(shape, dims)}{why}, got shape {array.shape}")
    for got, want, dim in zip(array.shape, shape, dims):
        if want is None and got < 1:
            raise ValueError(
                f"{name}: expected shape {_shown(shape, dims)}{why}{' and' if why else ' with'} {dim} ≥ 1, got {array.shape}"
            )
        if want is not None and got != want:
            raise ValueError(f"{name}: expected shape {_shown(shape, dims)}{why}, got {array.shape}")
    _check_dtype(name, array, dtype, " like params")
    if finite:
        _check_finite(name, array)
    return array


def _shown(shape: Sequence[int | None], dims: Sequence[str]) -> str:
    """``(T, B, 3)``: a shape with its free sizes shown by their labels."""
    return "(" + ", ".join(str(s) if s is not None else d for s, d in zip(shape, dims)) + ")"


def check_states(
    name: str,
    states: Mapping[str, np.ndarray] | None,
    names: Sequence[str],
    shape: tuple[int, ...],
    dtype: np.dtype,
    *,
    dims: str = "(B, n_h)",
) -> dict[str, np.ndarray]:
    """Check a dict of states (``state0``, ``dstate``); ``None`` means zeros.

    Returns ``{state: array}`` for every name in ``names``, each of
    ``shape`` and ``dtype``, finite.
    """
    if states is None:
        return {s: np.zeros(shape, dtype) for s in names}
    if not isinstance(states, Mapping):
        raise ValueError(f"{name}: expected None or a dict with keys {list(names)}, got {type(states).__name__}")
    if set(states) != set(names):
        raise ValueError(f"{name}: expected keys {list(names)}, got {list(states)}")
    out = {s: _as_array(states[s]) for s in names}
    with np.errstate(over="ignore", invalid="ignore"):  # see _finite_quiet
        for s, array in out.items():
            if array.shape != tuple(shape):
                raise ValueError(f"{name}[{s!r}]: expected shape {tuple(shape)} = {dims}, got {array.shape}")
            _check_dtype(f"{name}[{s!r}]", array, dtype, " like params")
            _finite_quiet(f"{name}[{s!r}]", array)
    return out


def init_uniform(rng: np.random.Generator, shape: tuple[int, ...], bound: float, dtype: np.dtype) -> np.ndarray:
    """Uniform(−bound, bound) values drawn in float64 then cast, so that a
    seed gives the same parameters up to rounding in either dtype."""
    return rng.uniform(-bound, bound, size=shape).astype(dtype)


@dataclass(frozen=True)
class _Plan:
    """What :func:`check_params` needs from the expected shapes alone, worked
    out once per shapes (it runs at every kernel call).

    ``ranks``: (key, rank) in ``expected``'s order; ``binds``: the steps of
    reading the sizes, in order — (key, dimension, the size name bound there,
    the names already bound in that entry); ``shapes``: (key, shape);
    ``terms``: each size entry's names.
    """

    ranks: tuple[tuple[str, int], ...]
    binds: tuple[tuple[str, int, str, tuple[str, ...]], ...]
    shapes: tuple[tuple[str, tuple[int | str, ...]], ...]
    terms: dict[str, tuple[str, ...]]


_PLANS: dict[tuple, _Plan] = {}
"""The plans made so far, keyed by the expected shapes' items (a few per kernel)."""


def _plan(expected: Mapping[str, Sequence[int | str]]) -> _Plan:
    """The :class:`_Plan` of ``expected``, from :data:`_PLANS` when it has been made before."""
    try:
        key = tuple((k, tuple(spec)) for k, spec in expected.items())
        plan = _PLANS.get(key)
    except TypeError:  # an unhashable entry: make the plan, do not keep it
        key, plan = None, None
    if plan is None:
        terms = {e: tuple(e.split("+")) for spec in expected.values() for e in spec if isinstance(e, str)}
        names = {t for ts in terms.values() for t in ts}
        bound: set[str] = set()
        binds = []
        progress = True
        # bind each name at the first entry that determines it (a sum with one unknown term binds that term)
        while progress and len(bound) < len(names):
            progress = False
            for k, spec in expected.items():
                for dim, entry in enumerate(spec):
                    ts = terms[entry] if isinstance(entry, str) else ()
                    unknown = [t for t in ts if t not in bound]
                    if len(unknown) == 1:
                        binds.append((k, dim, unknown[0], tuple(t for t in ts if t in bound)))
                        bound.add(unknown[0])
                        progress = True
        plan = _Plan(
            ranks=tuple((k, len(spec)) for k, spec in expected.items()),
            binds=tuple(binds),
            shapes=tuple((k, tuple(spec)) for k, spec in expected.items()),
            terms=terms,
        )
        if key is not None:
            if len(_PLANS) >= 256:
                _PLANS.clear()
            _PLANS[key] = plan
    return plan


def _bind_sizes(plan: _Plan, arrays: Mapping[str, np.ndarray], expected: Mapping[str, Sequence[int | str]]) -> Sizes:
    """Bind each size name to the first dimension that determines it, following ``plan.binds``."""
    values: dict[str, int] = {}
    origin: dict[str, str] = {}
    for key, dim, name, known in plan.binds:
        shape = arrays[key].shape
        value = shape[dim] - sum(values[t] for t in known)
        if value < 1:
            raise ValueError(f"params[{key!r}]: expected shape {_spec(expected[key])}, sizes ≥ 1, got {shape}")
        values[name], origin[name] = value, key
    return Sizes(values, origin)


def _spec(spec: Sequence[int | str]) -> str:
    return str(tuple(spec)).replace("'", "")


def _check_dtype(label: str, array: np.ndarray, dtype: np.dtype | None, like: str) -> None:
    if array.dtype not in FLOAT_DTYPES:
        raise ValueError(f"{label}: expected dtype float32 or float64, got {array.dtype}")
    if dtype is not None and array.dtype != dtype:
        raise ValueError(f"{label}: expected dtype {np.dtype(dtype)}{like}, got {array.dtype}")


def _as_array(value: object) -> np.ndarray:
    """``value`` itself when it is already an ndarray, else ``np.asarray(value)``."""
    return value if type(value) is np.ndarray else np.asarray(value)


_COMPILED_FINITE: Callable[[np.ndarray], bool] | None = None
"""A compiled test that a C-contiguous float array holds only finite values,
3–4× faster than a NumPy sum at every size; :mod:`derive.runtime_numba`
installs its own (:func:`use_compiled_finite`) when a Numba kernel loads it.
It only lets an array through faster: a refusal still goes to the exact
check, which gives the message, so both paths accept and refuse alike."""


def use_compiled_finite(test: Callable[[np.ndarray], bool] | None) -> None:
    """Let the checks use ``test`` (None: the NumPy sum) for C-contiguous arrays."""
    global _COMPILED_FINITE
    _COMPILED_FINITE = test


def _check_finite(label: str, array: np.ndarray) -> None:
    """Refuse an array holding a NaN or an inf, naming how many and where the first is."""
    test = _COMPILED_FINITE
    if test is not None and array.flags.c_contiguous and test(array):
        return
    with np.errstate(over="ignore", invalid="ignore"):
        _finite_quiet(label, array)


def _finite_quiet(label: str, array: np.ndarray) -> None:
    """:func:`_check_finite`, to call under ``np.errstate(over="ignore", invalid="ignore")``.

    A fast path first: one sum. A finite sum proves every element finite (a
    NaN makes it NaN, an inf makes it ±inf or NaN); a sum that is not finite
    may come from finite elements whose sum overflows, so it only sends the
    array to the exact element check, which gives the message.
    """
    if math.isfinite(np.add.reduce(array, axis=None)):
        return
    finite = np.isfinite(array)
    if not finite.all():
        bad = np.argwhere(~finite)
        n_nan = int(np.isnan(array).sum())
        raise ValueError(
            f"{label}: expected finite values, got {n_nan} NaN and {len(bad) - n_nan} inf "
            f"(first at index {tuple(int(i) for i in bad[0])})"
        )
