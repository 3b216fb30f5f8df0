"""The input checks' fast paths (derive/runtime.py) refuse and accept exactly
what the element-wise checks do, with the same messages.

``check_params`` works out once per expected shapes what it needs from them
(the order the sizes are read in), and tells finite arrays by one sum each,
looking element by element only when a sum is not finite. A sum of finite
values can overflow: such arrays must pass, with no warning (the suite runs
with warnings as errors).
"""

from __future__ import annotations

import re
from collections.abc import Iterator

import numpy as np
import pytest

from derive import runtime
from derive.runtime import check_params, check_sequence, check_states

SHAPES = {"W": ("n_h", "n_h+n_x"), "b": ("n_h",), "v": (2, "n_x")}


def _params(dtype: type = np.float64, n_x: int = 3, n_h: int = 4) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    return {
        "W": rng.standard_normal((n_h, n_h + n_x)).astype(dtype),
        "b": rng.standard_normal(n_h).astype(dtype),
        "v": rng.standard_normal((2, n_x)).astype(dtype),
    }


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_finite_values_whose_sum_overflows_pass(dtype: type) -> None:
    params = _params(dtype)
    big = np.finfo(dtype).max / 2
    params["W"][:] = big  # 28 values of max/2: their sum overflows to inf, each is finite
    params["v"][0] = big
    params["v"][1] = -big
    sizes, got = check_params(params, SHAPES)
    assert (sizes["n_x"], sizes["n_h"], got) == (3, 4, np.dtype(dtype))
    xs = np.full((5, 2, 3), big, dtype)
    assert check_sequence("xs", xs, (None, None, 3), np.dtype(dtype)) is xs
    states = check_states("state0", {"a": np.full((2, 4), -big, dtype)}, ("a",), (2, 4), np.dtype(dtype))
    assert states["a"][0, 0] == -big


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    ("values", "counts"),
    [
        ([np.nan], "1 NaN and 0 inf"),
        ([np.inf], "0 NaN and 1 inf"),
        ([np.inf, -np.inf], "0 NaN and 2 inf"),  # their sum is NaN
        ([-np.inf, np.nan], "1 NaN and 1 inf"),
    ],
)
def test_one_non_finite_value_among_many_is_refused(dtype: type, values: list[float], counts: str) -> None:
    def spoil(array: np.ndarray, first: tuple[int, ...]) -> np.ndarray:
        array[first] = values[0]
        if len(values) > 1:
            array.flat[-1] = values[1]
        return array

    params = _params(dtype, n_x=60, n_h=40)
    spoil(params["W"], (2, 5))
    with pytest.raises(ValueError, match=re.escape(f"params['W']: expected finite values, got {counts} (first at index (2, 5))")):
        check_params(params, SHAPES)
    xs = spoil(np.zeros((3, 7, 9), dtype), (2, 5, 0))
    with pytest.raises(ValueError, match=re.escape(f"xs: expected finite values, got {counts} (first at index (2, 5, 0))")):
        check_sequence("xs", xs, (None, None, 9), np.dtype(dtype))
    state = spoil(np.zeros((4, 8), dtype), (1, 6))
    with pytest.raises(ValueError, match=re.escape(f"dstate['c']: expected finite values, got {counts} (first at index (1, 6))")):
        check_states("dstate", {"a": np.zeros((4, 8), dtype), "c": state}, ("a", "c"), (4, 8), np.dtype(dtype))


def test_a_huge_finite_param_beside_a_nan_names_the_nan() -> None:
    params = _params(np.float32)
    params["W"][:] = np.finfo(np.float32).max  # overflowing sum, all finite: passes
    params["b"][3] = np.nan
    with pytest.raises(ValueError, match=re.escape("params['b']: expected finite values, got 1 NaN and 0 inf (first at index (3,))")):
        check_params(params, SHAPES)


def test_expected_shapes_that_differ_read_their_own_sizes() -> None:
    """What check_params keeps per expected shapes belongs to those shapes:
    the same keys with other shapes, or the same shapes in another order
    (the first parameter that determines a size names it), are read anew."""
    params = _params()
    assert check_params(params, SHAPES)[0].values == {"n_h": 4, "n_x": 3}
    assert check_params(params, SHAPES)[0].origin == {"n_h": "W", "n_x": "W"}
    swapped = {"W": ("n_x", "n_x+n_h"), "b": ("n_x",), "v": (2, "n_h")}
    assert check_params(params, swapped)[0].values == {"n_x": 4, "n_h": 3}
    reordered = {"v": (2, "n_x"), "b": ("n_h",), "W": ("n_h", "n_h+n_x")}
    sizes = check_params(params, reordered)[0]
    assert sizes.origin == {"n_x": "v", "n_h": "b"}
    with pytest.raises(ValueError, match=re.escape("params['W']: expected shape (4, 7) = (n_h, n_h+n_x) with n_h = 4 from params['b'], n_x = 3 from params['v'], got (4, 8)")):
        check_params({**params, "W": np.zeros((4, 8))}, reordered)
    # a dict of shapes changed in place after use is read as it is now
    shapes = dict(SHAPES)
    check_params(params, shapes)
    shapes["v"] = (3, "n_x")
    with pytest.raises(ValueError, match=re.escape("params['v']: expected shape (3, 3) = (3, n_x) with n_x = 3 from params['W'], got (2, 3)")):
        check_params(params, shapes)


def test_unhashable_expected_shapes_work() -> None:
    params = _params()
    as_lists = {k: list(v) for k, v in SHAPES.items()}
    assert check_params(params, as_lists)[0].values == {"n_h": 4, "n_x": 3}


def test_a_size_below_one_is_refused_where_it_is_read() -> None:
    params = _params()
    params["W"] = np.zeros((4, 4))  # n_x = 0
    with pytest.raises(ValueError, match=re.escape("params['W']: expected shape (n_h, n_h+n_x), sizes ≥ 1, got (4, 4)")):
        check_params(params, SHAPES)


def test_a_layout_seen_before_is_still_checked_value_by_value() -> None:
    """A second call with the same keys, shapes and dtypes skips re-reading
    the sizes, not the checks that depend on more than the layout: values
    that are not finite, another dtype asked for, another byte order, an
    array subclass, a key renamed — each refused as on a first call."""
    params = _params()
    assert check_params(params, SHAPES)[0].values == {"n_h": 4, "n_x": 3}
    nan = {**params, "b": params["b"].copy()}
    nan["b"][2] = np.nan
    with pytest.raises(ValueError, match=re.escape("params['b']: expected finite values, got 1 NaN and 0 inf (first at index (2,))")):
        check_params(nan, SHAPES)
    with pytest.raises(ValueError, match=re.escape("params['W']: expected dtype float32 like params['W'], got float64")):
        check_params(params, SHAPES, np.float32)
    swapped = {**params, "v": params["v"].astype(">f8")}
    with pytest.raises(ValueError, match=re.escape("params['v']: expected dtype float32 or float64, got >f8")):
        check_params(swapped, SHAPES)
    renamed = {"W": params["W"], "b": params["b"], "u": params["v"]}
    with pytest.raises(ValueError, match=re.escape("params: expected keys ['W', 'b', 'v'], got ['W', 'b', 'u']")):
        check_params(renamed, SHAPES)
    # and the layout still passes afterwards, with the sizes of its first call
    sizes, dtype = check_params(params, SHAPES)
    assert (sizes.values, sizes.origin, dtype) == ({"n_h": 4, "n_x": 3}, {"n_h": "W", "n_x": "W"}, np.dtype(np.float64))


def test_layouts_seen_before_skip_reading_the_sizes_whichever_came_last(monkeypatch: pytest.MonkeyPatch) -> None:
    """float32 and float64 parameters of one layout, alternating (a kernel
    used in both dtypes), and arrays whose dtype equals the one remembered
    without being the same object: the sizes are read once per layout, and
    each call gets its own dtype back."""
    reads = []
    bind = runtime._bind_sizes
    monkeypatch.setattr(runtime, "_bind_sizes", lambda *a: reads.append(1) or bind(*a))
    shapes = dict(SHAPES)  # expected shapes no other test has used
    p64, p32 = _params(np.float64), _params(np.float32)
    for _ in range(3):
        assert check_params(p64, shapes)[1] == np.float64
        assert check_params(p32, shapes)[1] == np.float32
    assert len(reads) == 2
    tagged = np.dtype(np.float64, metadata={"unit": "none"})  # equal to float64, another object
    assert tagged == np.float64 and tagged is not p64["W"].dtype
    assert check_params({k: v.astype(tagged) for k, v in p64.items()}, shapes)[1] == np.float64
    assert len(reads) == 2
    other = _params(np.float64, n_x=5)  # another layout: read, then remembered beside the others
    assert check_params(other, shapes)[0].values == {"n_h": 4, "n_x": 5}
    assert check_params(p32, shapes)[0].values == {"n_h": 4, "n_x": 3}
    assert len(reads) == 3


def test_the_text_of_where_sizes_come_from_is_written_per_names() -> None:
    sizes = check_params(_params(), SHAPES)[0]
    assert sizes.why("n_x") == " with n_x = 3 from params['W']"
    assert sizes.why("n_h") == " with n_h = 4 from params['W']"
    assert sizes.why("n_x") == " with n_x = 3 from params['W']"
    assert sizes.why("n_h", "n_x") == " with n_h = 4 from params['W'], n_x = 3 from params['W']"
    assert sizes.why("n_y") == ""


def test_a_sequence_of_the_dtype_asked_for_is_still_checked_size_by_size() -> None:
    """The fast path of check_sequence (an ndarray of the rank and dtype asked
    for) still refuses a wrong size, an empty free size and a non-finite value."""
    dtype = np.dtype(np.float32)
    xs = np.zeros((2, 3, 4), dtype)
    assert check_sequence("xs", xs, (None, None, 4), dtype) is xs
    with pytest.raises(ValueError, match=re.escape("xs: expected shape (T, B, 5), got (2, 3, 4)")):
        check_sequence("xs", xs, (None, None, 5), dtype, dims=("T", "B", "n_x"))
    with pytest.raises(ValueError, match=re.escape("xs: expected shape (T, B, 4) with B ≥ 1, got (2, 0, 4)")):
        check_sequence("xs", np.zeros((2, 0, 4), dtype), (None, None, 4), dtype, dims=("T", "B", "n_x"))
    with pytest.raises(ValueError, match=re.escape("dys: expected shape (2, 3, 4) like ys, got (2, 2, 4)")):
        check_sequence("dys", np.zeros((2, 2, 4), dtype), (2, 3, 4), dtype, why=" like ys")
    xs[1, 2, 3] = np.nan
    with pytest.raises(ValueError, match=re.escape("xs: expected finite values, got 1 NaN and 0 inf (first at index (1, 2, 3))")):
        check_sequence("xs", xs, (None, None, 4), dtype)
    assert check_sequence("xs", xs, (None, None, 4), dtype, finite=False) is xs


@pytest.fixture(params=["numpy sum", "compiled"])
def finite_test(request: pytest.FixtureRequest) -> Iterator[str]:
    """Each way the checks tell finite arrays fast: one NumPy sum, or the
    compiled test derive.runtime_numba installs (Numba installed only)."""
    saved = runtime._COMPILED_FINITE
    if request.param == "compiled":
        runtime_numba = pytest.importorskip("derive.runtime_numba")
        runtime.use_compiled_finite(runtime_numba.all_finite)
    else:
        runtime.use_compiled_finite(None)
    yield request.param
    runtime.use_compiled_finite(saved)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_either_finite_test_refuses_nan_and_inf_with_the_same_message(finite_test: str, dtype: type) -> None:
    """Params (on a first call and on a layout seen before), a sequence and a
    state holding a NaN or an inf are refused with the exact message; a
    transposed (not C-contiguous) array takes the NumPy path and is refused
    the same way; finite values whose sum overflows pass."""
    params = _params(dtype)
    check_params(params, SHAPES)
    for bad, what in ((np.nan, "1 NaN and 0 inf"), (np.inf, "0 NaN and 1 inf"), (-np.inf, "0 NaN and 1 inf")):
        for first_call in (False, True):
            shapes = dict(SHAPES) if first_call else SHAPES  # a new dict: a layout never seen
            broken = {**params, "W": params["W"].copy()}
            broken["W"][1, 5] = bad
            with pytest.raises(ValueError, match=re.escape(f"params['W']: expected finite values, got {what} (first at index (1, 5))")):
                check_params(broken, shapes)
            transposed = {**params, "v": np.asfortranarray(params["v"])}
            transposed["v"][1, 2] = bad
            with pytest.raises(ValueError, match=re.escape(f"params['v']: expected finite values, got {what} (first at index (1, 2))")):
                check_params(transposed, shapes)
        xs = np.zeros((2, 3, 3), dtype)
        xs[1, 2, 0] = bad
        with pytest.raises(ValueError, match=re.escape(f"xs: expected finite values, got {what} (first at index (1, 2, 0))")):
            check_sequence("xs", xs, (None, None, 3), dtype)
        state = np.zeros((3, 4), dtype)
        state[2, 3] = bad
        with pytest.raises(ValueError, match=re.escape(f"state0['c']: expected finite values, got {what} (first at index (2, 3))")):
            check_states("state0", {"c": state}, ["c"], (3, 4), np.dtype(dtype))
    big = np.full((2, 3, 3), np.finfo(dtype).max / 2, dtype)
    assert check_sequence("xs", big, (None, None, 3), dtype) is big
