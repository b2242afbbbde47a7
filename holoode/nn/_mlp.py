"""A layered Hopfield MLP in the primitive form."""

from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._activations import shifted_sigmoid
from .._model import AbstractPrimitiveModel
from ._complex import complex_matmul


class HopfieldMLP(AbstractPrimitiveModel):
    """A layered Hopfield network with a linear cross-entropy readout.

    Sizes `(d_in, h_1, ..., h_L, d_out)`: the state is the hidden layers
    `u = (u_1, ..., u_L)`, the input `u_0 = x` is clamped and the prediction is the
    logits `W_L u_L + b_L`. The primitive is

        Φ(u, x) = Σ_{l=1..L} u_l · (W_{l−1} u_{l−1} + b_{l−1}),

    so the fixed points are `u_l = σ(W_{l−1} u_{l−1} + b_{l−1} + W_lᵀ u_{l+1})`
    (the top hidden layer also receives `−β ∂C/∂u_L` through the readout), as in
    Laborieux & Zenke (2022). Weights are initialised uniformly in
    `±gain/√fan_in` (PyTorch's default linear layer, as the paper's code uses).

    **Arguments:**

    - `sizes`: layer widths, input first, number of classes last.
    - `key`: a PRNG key.
    - `activation`: a holomorphic elementwise function (default the shifted
      sigmoid).
    - `gain`: scale of the initial weights.
    - `dtype`: parameter dtype.
    """

    weights: list[Float[Array, "out in"]]
    biases: list[Float[Array, " out"]]
    sigma: Callable = shifted_sigmoid  # σ, applied to every unit by `activation`

    def __init__(
        self,
        sizes: Sequence[int],
        *,
        key: PRNGKeyArray,
        activation: Callable = shifted_sigmoid,
        gain: float = 1.0,
        dtype=jnp.float32,
    ):
        sizes = tuple(int(s) for s in sizes)
        if len(sizes) < 3 or min(sizes) < 1:
            raise ValueError(
                "HopfieldMLP(sizes=...) needs (input, hidden..., classes) with at "
                f"least one hidden layer and positive widths, got {sizes}."
            )
        keys = jr.split(key, 2 * (len(sizes) - 1))
        self.weights, self.biases = [], []
        for i, (n_in, n_out) in enumerate(zip(sizes[:-1], sizes[1:])):
            bound = gain / n_in**0.5
            self.weights.append(
                jr.uniform(keys[2 * i], (n_out, n_in), dtype, -bound, bound)
            )
            self.biases.append(
                jr.uniform(keys[2 * i + 1], (n_out,), dtype, -bound, bound)
            )
        self.sigma = activation

    @property
    def sizes(self) -> tuple[int, ...]:
        return (self.weights[0].shape[1],) + tuple(w.shape[0] for w in self.weights)

    def _check_input(self, x):
        if x.shape != (self.sizes[0],):
            raise ValueError(
                f"HopfieldMLP layer 0 expects an input of shape ({self.sizes[0]},), "
                f"got {x.shape}; flatten images with `x.reshape(len(x), -1)`."
            )

    def init_state(self, x):
        self._check_input(x)
        return [jnp.zeros((w.shape[0],), x.dtype) for w in self.weights[:-1]]

    def primitive(self, u, x):
        self._check_input(x)
        below = [x] + list(u[:-1])
        return sum(
            jnp.dot(u_l, complex_matmul(w, v) + b)
            for u_l, v, w, b in zip(u, below, self.weights[:-1], self.biases[:-1])
        )

    def activation(self, a):
        return jax.tree_util.tree_map(self.sigma, a)

    def readout(self, u, x):
        return complex_matmul(self.weights[-1], u[-1]) + self.biases[-1]
