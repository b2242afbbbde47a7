"""Holomorphic costs `C(prediction, y)`."""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
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
        """Raise `ValueError` if the targets `y` (a batch: leading axis) do not fit
        one example's prediction of shape `prediction_shape`. `y` is an array, whose
        values are then checked too, or a `jax.ShapeDtypeStruct` (traced targets:
        shape and dtype only; `valid_target` flags bad values at run time)."""

    @abc.abstractmethod
    def valid_target(self, prediction_shape: tuple[int, ...], y: ArrayLike) -> Array:
        """Whether one example's target `y` is a value this cost is defined for (a
        boolean scalar; works on traced values)."""

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
        value = logsumexp(prediction) - jnp.take(prediction, y, mode="clip")
        # An out-of-range label has no cost: NaN in value and derivative (a clipped
        # or wrapped index would silently train towards another class).
        flag = jnp.where(self.valid_target(prediction.shape, y), 1.0, jnp.nan)
        return value * flag.astype(jnp.real(value).dtype)

    def check_target(self, prediction_shape, y):
        if len(prediction_shape) != 1:
            raise ValueError(
                "CrossEntropy expects the model's readout to be a vector of logits, "
                f"got shape {prediction_shape}."
            )
        shape, dtype = tuple(jnp.shape(y)), jnp.result_type(y.dtype)
        if len(shape) != 1 or not jnp.issubdtype(dtype, jnp.integer):
            raise ValueError(
                "CrossEntropy expects `y` to hold one integer label per example "
                f"(shape (batch,)), got per-example shape {shape[1:]} and dtype "
                f"{dtype}. Use `holoode.SquaredError()` for target vectors."
            )
        if isinstance(y, jax.ShapeDtypeStruct) or isinstance(y, jax.core.Tracer):
            return
        classes = prediction_shape[0]
        labels = np.asarray(y)
        bad = np.flatnonzero((labels < 0) | (labels >= classes))
        if bad.size:
            i = int(bad[0])
            more = f" (and {bad.size - 1} more)" if bad.size > 1 else ""
            raise ValueError(
                f"CrossEntropy got the label y[{i}] = {labels[i]}{more}, but the "
                f"readout has {classes} classes: labels must be integers 0 … "
                f"{classes - 1} (−1 does not mean the last class). Fix: map the "
                f"labels to 0 … {classes - 1}, or give the readout as many outputs "
                "as there are classes."
            )

    def valid_target(self, prediction_shape, y):
        return (y >= 0) & (y < prediction_shape[0])

    def accuracy(self, prediction, y):
        return (jnp.argmax(jnp.real(prediction)) == y).astype(jnp.float32)


class SquaredError(AbstractCost):
    """Half the squared error `½ Σ (z − y)²` (no conjugate: holomorphic in `z`)."""

    def __call__(self, prediction, y):
        return 0.5 * jnp.sum((prediction - y) ** 2)

    def check_target(self, prediction_shape, y):
        if tuple(jnp.shape(y))[1:] != tuple(prediction_shape):
            raise ValueError(
                f"SquaredError expects `y` shaped like the readout {prediction_shape} "
                f"per example, got {tuple(jnp.shape(y))[1:]}."
            )
        if not jnp.issubdtype(jnp.result_type(y.dtype), jnp.inexact):
            raise ValueError(
                "SquaredError expects floating-point targets `y`, got dtype "
                f"{jnp.result_type(y.dtype)}; one-hot encode labels or use "
                "CrossEntropy()."
            )
        if isinstance(y, jax.ShapeDtypeStruct) or isinstance(y, jax.core.Tracer):
            return
        bad = np.argwhere(~np.isfinite(np.asarray(y)))
        if bad.size:
            where = ", ".join(map(str, bad[0]))
            raise ValueError(
                f"SquaredError got a non-finite target: y[{where}] = "
                f"{np.asarray(y)[tuple(bad[0])]} ({len(bad)} entries are NaN or "
                "inf). Fix: clean the targets."
            )

    def valid_target(self, prediction_shape, y):
        return jnp.all(jnp.isfinite(y))

    def accuracy(self, prediction, y):
        return (jnp.argmax(jnp.real(prediction)) == jnp.argmax(y)).astype(jnp.float32)
