"""Training a cell on the adding problem with the generated kernels.

The model is the cell's generated kernel followed by a linear readout of the
last output, ``prediction = y(T) · w + b``, trained on the mean squared
error. The backward pass is the readout's gradient put on the last output
(``dys`` is zero at every other step) and handed to the kernel's
``backward``; the parameters, the cell's and the readout's, are updated with
:class:`~.optim.Adam` after global-norm clipping, all at once: during
training they are views of one flat vector (:class:`~.optim.FlatParameters`).

Cells are compared at about the same number of trainable parameters: each
gets the hidden size ``n_h`` whose parameter count (recurrent parameters as
the kernel allocates them, plus the readout) is closest to a common target.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from functools import cache
from types import ModuleType

import numpy as np

from . import load_kernel
from .optim import Adam, FlatParameters, global_norm
from .tasks import N_INPUTS, adding_problem

READOUT_W = "readout_w"
READOUT_B = "readout_b"


@dataclass(frozen=True)
class TrainingConfig:
    """How one model is trained and tested."""

    param_target: int
    batch: int
    steps: int
    lr: float
    clip: float
    test_size: int
    backend: str = "numpy"
    """The kernels that run the cell (``derive.kernels.BACKENDS``); recorded
    in the results' provenance, not here: it changes no number beyond float
    tolerance."""

    def to_json(self) -> dict[str, float | int]:
        """The configuration as recorded next to the results."""
        return {
            "param_target": self.param_target,
            "batch": self.batch,
            "steps": self.steps,
            "lr": self.lr,
            "clip": self.clip,
            "test_size": self.test_size,
            "optimiser": "Adam(beta1=0.9, beta2=0.999, eps=1e-8), global-norm clipping",
        }


FULL_TRAINING = TrainingConfig(
    param_target=1200, batch=64, steps=800, lr=2e-2, clip=1.0, test_size=1000
)
"""The full runs: about 1200 parameters per model (n_h from 16 for the LSTM
to 33 for the RNN), 800 Adam steps of 64 sequences: the whole suite fits in
ten minutes on two cores."""

QUICK_TRAINING = TrainingConfig(
    param_target=300, batch=16, steps=25, lr=2e-2, clip=1.0, test_size=100
)
"""A run of seconds that exercises every piece; its numbers mean nothing."""


def recurrent_param_count(cell: str, n_h: int) -> int:
    """The number of parameters the kernel of ``cell`` allocates at ``n_h``."""
    params = load_kernel(cell).init_params(N_INPUTS, n_h, seed=0)
    return sum(int(p.size) for p in params.values())


def param_count(cell: str, n_h: int) -> int:
    """Trainable parameters of the model: the cell's plus the readout's."""
    return recurrent_param_count(cell, n_h) + n_h + 1


@cache
def step_cost(cell: str) -> int:
    """A rough relative cost of one time step of ``cell``: its number of
    parameter arrays (one weight and one bias per affine node)."""
    return len(load_kernel(cell).init_params(N_INPUTS, 1, seed=0))


@cache
def hidden_size(cell: str, param_target: int) -> int:
    """The ``n_h`` of ``cell`` whose parameter count is closest to the target
    (the smaller one on a tie)."""
    best_n_h, best_gap = 1, abs(param_count(cell, 1) - param_target)
    n_h = 1
    while True:
        n_h += 1
        count = param_count(cell, n_h)
        gap = abs(count - param_target)
        if gap < best_gap:
            best_n_h, best_gap = n_h, gap
        if count > param_target:
            return best_n_h


@dataclass
class Model:
    """A cell's kernel, its parameters and a linear readout of the last output."""

    cell: str
    kernel: ModuleType
    params: dict[str, np.ndarray]
    readout_w: np.ndarray
    readout_b: np.ndarray
    _dys: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)
    """The ``dys`` handed to ``backward``, kept between calls: zero but at
    the last step, which every call overwrites."""

    @classmethod
    def initial(cls, cell: str, n_h: int, seed: int, backend: str = "numpy") -> Model:
        """The model at initialisation: the kernel's ``init_params`` for the
        cell (run by ``backend``), a readout drawn like a torch ``Linear`` and a zero bias."""
        kernel = load_kernel(cell, backend)
        params = kernel.init_params(N_INPUTS, n_h, seed=seed)
        rng = np.random.default_rng([seed, 1])
        bound = 1.0 / np.sqrt(n_h)
        readout_w = rng.uniform(-bound, bound, size=n_h)
        return cls(cell, kernel, params, readout_w, np.zeros(()))

    @property
    def n_h(self) -> int:
        return int(self.readout_w.shape[0])

    def predict(self, xs: np.ndarray) -> np.ndarray:
        """The predictions for a batch ``xs`` of shape (T, B, n_x)."""
        ys, _ = self.kernel.forward(self.params, xs)
        return ys[-1] @ self.readout_w + self.readout_b

    def loss_and_grads(
        self, xs: np.ndarray, targets: np.ndarray
    ) -> tuple[float, dict[str, np.ndarray]]:
        """The mean squared error on a batch and its gradient for every parameter."""
        ys, cache = self.kernel.forward(self.params, xs)
        last = ys[-1]
        error = last @ self.readout_w + self.readout_b - targets
        loss = float(np.mean(error**2))
        d_prediction = 2.0 * error / error.shape[0]
        dys = self._dys
        if dys is None or dys.shape != ys.shape or dys.dtype != ys.dtype:
            dys = self._dys = np.zeros_like(ys)
        np.outer(d_prediction, self.readout_w, out=dys[-1])
        kernel_grads = self.kernel.backward(cache, dys)
        grads = {name: kernel_grads[name] for name in self.params}
        grads[READOUT_W] = last.T @ d_prediction
        grads[READOUT_B] = np.asarray(d_prediction.sum())
        return loss, grads

    def trainable(self) -> dict[str, np.ndarray]:
        """Every trainable array by name (views: updating them updates the model)."""
        return {**self.params, READOUT_W: self.readout_w, READOUT_B: self.readout_b}

    def flatten(self) -> FlatParameters:
        """Move every trainable array into one flat vector and make the
        model's arrays views of it (same names, shapes and values): updating
        the vector updates the model."""
        flat = FlatParameters(self.trainable())
        for name in self.params:  # the same dict, now of views
            self.params[name] = flat.views[name]
        self.readout_w, self.readout_b = flat.views[READOUT_W], flat.views[READOUT_B]
        return flat


def mse(model: Model, xs: np.ndarray, targets: np.ndarray) -> float:
    """The mean squared error of ``model`` on a batch."""
    return float(np.mean((model.predict(xs) - targets) ** 2))


def train(
    cell: str, length: int, seed: int, config: TrainingConfig, *, initial: Model | None = None
) -> tuple[Model, list[float]]:
    """Train ``cell`` on the adding problem at ``length`` steps.

    The batches come from a stream seeded by ``(seed, length)`` only, so at
    one seed every cell sees the same sequences. ``initial`` is the model to
    start from (updated in place); by default :meth:`Model.initial` at the
    hidden size of ``config`` and ``seed``. Returns the trained model and
    the training loss of every step.
    """
    if initial is not None and initial.cell != cell:
        raise ValueError(f"initial: expected a model of cell {cell!r}, got one of {initial.cell!r}")
    model = initial or Model.initial(cell, hidden_size(cell, config.param_target), seed, config.backend)
    optimiser = Adam(lr=config.lr)
    data = np.random.default_rng([seed, length, 2])
    flat = model.flatten()
    grad = np.empty_like(flat.flat)
    losses = []
    for _ in range(config.steps):
        xs, targets = adding_problem(data, length, config.batch)
        loss, grads = model.loss_and_grads(xs, targets)
        # global-norm clipping (optim.clip_by_global_norm) on the gathered vector:
        # the norm from the arrays, in the same order, then one scaling
        norm = global_norm(grads)
        flat.gather(grads, out=grad)
        if norm > config.clip:
            grad *= config.clip / norm
        optimiser.step({"flat": flat.flat}, {"flat": grad})
        losses.append(loss)
    return model, losses
