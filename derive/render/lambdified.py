"""Per-step forward and VJP functions built at run time with ``sympy.lambdify``.

For notebooks and quick experiments, and as a second code path from the
same equations: a test runs these steps over a sequence and checks them
against the committed kernels. Slower than the kernels (no stacked GEMMs,
nothing precomputed), but nothing here is generated to disk.

>>> import numpy as np, derive
>>> step = derive.cell("gru").lambdify()
>>> p = {k: np.full(s, 0.1) for k, s in step.param_shapes(n_x=2, n_h=3).items()}
>>> values = step.forward(p, np.ones((4, 2)), {"c": np.zeros((4, 3))})
>>> values["c"].shape
(4, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

import numpy as np
import sympy

from ..cell import Cell
from ..derivation import OUTPUT_GRAD, carried_in
from ..graph import Affine, WeightT, adjoint
from .. import functions, runtime
from .numpy_kernel import KernelPrinter

Arrays = Mapping[str, np.ndarray]


# the kernels' own printer spells every activation (np.maximum(z, 0), sigmoid(z), …):
# the names it prints are these
_MODULES = [{"np": np, **{f: getattr(runtime, f) for a in functions.REGISTRY for f in a.runtime}}, "numpy"]


def _compile(expr: sympy.Expr) -> tuple[list[str], Callable[..., np.ndarray]]:
    names = sorted(s.name for s in expr.free_symbols)
    printer = KernelPrinter({})
    return names, sympy.lambdify([sympy.Symbol(n) for n in names], expr, modules=_MODULES, printer=printer)


@dataclass
class StepFunctions:
    """One step of a cell, forward and backward, as NumPy functions.

    Vectors are batch-major ``(B, n)`` arrays; a weight acting on
    ``[p, q]`` multiplies ``np.concatenate([p, q], axis=1)``.
    """

    cell: Cell
    _forward: dict[str, tuple[list[str], Callable[..., np.ndarray]]] = field(init=False)
    _adjoints: list[tuple[str, dict[WeightT, sympy.Symbol], list[str], Callable[..., np.ndarray]]] = field(init=False)

    def __post_init__(self) -> None:
        self._forward = {
            n.target: _compile(n.expr) for n in self.cell.nodes if not isinstance(n, Affine)
        }
        self._adjoints = []
        for a in self.cell.backward.adjoints:
            atoms = {w: sympy.Symbol(f"_matmul{i}") for i, w in enumerate(sorted(a.expr.atoms(WeightT), key=sympy.default_sort_key))}
            names, fn = _compile(a.expr.xreplace(atoms))
            self._adjoints.append((a.symbol.name, atoms, names, fn))

    def param_shapes(self, n_x: int, n_h: int) -> dict[str, tuple[int, ...]]:
        """The shape of every parameter at sizes ``n_x``, ``n_h``."""
        return {name: self.cell.param_shape(name, n_x, n_h) for name in self.cell.params}

    def forward(self, params: Arrays, x: np.ndarray, state: Arrays) -> dict[str, np.ndarray]:
        """Every vector of the step — inputs, previous states, nodes — by name."""
        values: dict[str, np.ndarray] = {self.cell.inputs[0]: np.asarray(x)}
        values.update({s.prev: np.asarray(state[s.name]) for s in self.cell.states})
        values.update({p: np.asarray(params[p]) for p in self.cell.per_element})  # broadcast over the batch
        for node in self.cell.nodes:
            if isinstance(node, Affine):
                stacked = np.concatenate([values[p] for p in node.parts], axis=1)
                value = stacked @ params[node.weight].T
                if node.bias:
                    value = value + params[node.bias]
            else:
                names, fn = self._forward[node.target]
                value = fn(*(values[n] for n in names))
            values[node.target] = value
        return values

    def vjp(
        self, params: Arrays, values: Arrays, d_y: np.ndarray, d_next: Arrays
    ) -> dict[str, np.ndarray]:
        """The step's gradients, given ``values`` from :meth:`forward`, the
        gradient ``d_y`` on its output and ``d_next[s]`` arriving at each
        new state from step t+1.

        Returns this step's contribution to every parameter's gradient, the
        gradient of ``x`` and, under each state's name, the gradient sent
        back to its previous value.
        """
        env: dict[str, np.ndarray] = dict(values)
        env[OUTPUT_GRAD] = np.asarray(d_y)
        env.update({carried_in(s.name).name: np.asarray(d_next[s.name]) for s in self.cell.states})
        blocks = _block_slices(self.cell, params)
        for target, atoms, names, fn in self._adjoints:
            for w, placeholder in atoms.items():
                env[placeholder.name] = env[w.adjoint.name] @ params[w.weight][:, blocks[w.weight][w.part]]
            env[target] = fn(*(env[n] for n in names))
        out: dict[str, np.ndarray] = {}
        for g in self.cell.backward.weight_grads:
            stacked = np.concatenate([env[p] for p in g.parts], axis=1)
            out[g.weight] = env[g.d_affine.name].T @ stacked
        for g in self.cell.backward.bias_grads:
            out[g.bias] = env[g.d_affine.name].sum(axis=0)
        for g in self.cell.backward.param_grads:
            names, fn = _compile(g.expr)
            out[g.param] = np.asarray(fn(*(env[n] for n in names))).sum(axis=0)
        out["x"] = env[adjoint(self.cell.inputs[0]).name]
        out.update({s.name: env[adjoint(s.prev).name] for s in self.cell.states})
        return out


def _block_slices(cell: Cell, params: Arrays) -> dict[str, dict[str, slice]]:
    """The columns of each weight that act on each of its parts."""
    n_h = next(params[n.weight].shape[0] for n in cell.nodes if isinstance(n, Affine))
    sizes = {"n_h": n_h}
    out: dict[str, dict[str, slice]] = {}
    for node in cell.nodes:
        if isinstance(node, Affine):
            total = params[node.weight].shape[1]
            sizes["n_x"] = total - sum(n_h for p in node.parts if cell.vectors[p].size == "n_h")
            start, cols = 0, {}
            for p in node.parts:
                end = start + sizes[cell.vectors[p].size]
                cols[p] = slice(start, end)
                start = end
            out[node.weight] = cols
    return out
