"""Holomorphic costs `C(prediction, y)`."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, Inexact


class AbstractCost(eqx.Module):
    """A cost `C(prediction, y)` that is holomorphic in `prediction`.

    Holomorphic EP evaluates the cost at complex predictions, so it must be
    written with holomorphic operations only (no `abs`, `conj`, `maximum`, ...).
    Single example, no batch axis.
    """

    @abc.abstractmethod
    def __call__(self, prediction: Inexact[Array, "..."], y: ArrayLike) -> Array:
        """The (complex) scalar cost of one example."""

    @abc.abstractmethod
    def check_target(self, prediction_shape: tuple[int, ...], y) -> None:
        """Raise `ValueError` if `y` (one example) does not fit `prediction`."""

    @abc.abstractmethod
    def accuracy(self, prediction: Array, y: ArrayLike) -> Array:
        """1.0 if the prediction is right (for reporting), else 0.0."""


def logsumexp(z: Inexact[Array, " n"]) -> Array:
    """Holomorphic log-sum-exp: `log Σ exp(z)` on the principal branch.

    The shift by the largest real part changes nothing mathematically (it cancels
    exactly), so the function stays holomorphic; it only prevents overflow.
    """
    shift = jax.lax.stop_gradient(jnp.max(jnp.real(z)))
    return jnp.log(jnp.sum(jnp.exp(z - shift))) + shift


class CrossEntropy(AbstractCost):
    """Softmax cross-entropy `logsumexp(z) − z[y]` for an integer label `y`.

    Holomorphic in the logits `z` wherever `Σ exp(z)` stays off the negative real
    axis — always true near real logits.
    """

    def __call__(self, prediction, y):
        return logsumexp(prediction) - jnp.take(prediction, y)

    def check_target(self, prediction_shape, y):
        if len(prediction_shape) != 1:
            raise ValueError(
                "CrossEntropy expects the model's readout to be a vector of logits, "
                f"got shape {prediction_shape}."
            )
        if jnp.ndim(y) != 0 or not jnp.issubdtype(jnp.result_type(y), jnp.integer):
            raise ValueError(
                "CrossEntropy expects `y` to hold one integer label per example "
                f"(shape (batch,)), got per-example shape {jnp.shape(y)} and dtype "
                f"{jnp.result_type(y)}. Use `holoode.SquaredError()` for target "
                "vectors."
            )

    def accuracy(self, prediction, y):
        return (jnp.argmax(jnp.real(prediction)) == y).astype(jnp.float32)


class SquaredError(AbstractCost):
    """Half the squared error `½ Σ (z − y)²` (no conjugate: holomorphic in `z`)."""

    def __call__(self, prediction, y):
        return 0.5 * jnp.sum((prediction - y) ** 2)

    def check_target(self, prediction_shape, y):
        if tuple(jnp.shape(y)) != tuple(prediction_shape):
            raise ValueError(
                f"SquaredError expects `y` shaped like the readout {prediction_shape} "
                f"per example, got {jnp.shape(y)}."
            )
        if not jnp.issubdtype(jnp.result_type(y), jnp.inexact):
            raise ValueError(
                "SquaredError expects floating-point targets `y`, got dtype "
                f"{jnp.result_type(y)}; one-hot encode labels or use CrossEntropy()."
            )

    def accuracy(self, prediction, y):
        return (jnp.argmax(jnp.real(prediction)) == jnp.argmax(y)).astype(jnp.float32)
