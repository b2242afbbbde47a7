"""Models: the energy form and the primitive form of an equilibrium network.

Both forms share one protocol, `AbstractEquilibriumModel`, which is all the
equilibrium solvers and learning rules use:

- `vector_field(u, x, y, beta, cost)`: a field whose zeros are the equilibria of
  the total energy `F = E + βC`; it is also the continuous-time dynamics
  `du/dt`.
- `parameter_energy(u, x, y, beta, cost)`: a scalar whose derivative with respect
  to the model's array leaves is the learning signal `∂F/∂θ`.
"""

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
from jaxtyping import Array, ArrayLike, PyTree

from ._costs import AbstractCost
from ._misc import tree_astype, tree_dtype


def holomorphic_grad(fn, u: PyTree) -> PyTree:
    """The complex derivative `∂fn/∂u` of a holomorphic scalar function.

    For holomorphic `fn`, the reverse-mode cotangent of the output `1` is
    `fn'(u)` (JAX transposes, it does not conjugate). For real `u` this is the
    ordinary gradient.
    """
    out, vjp = jax.vjp(fn, u)
    return vjp(jnp.ones_like(out))[0]


def parameters(model) -> tuple[PyTree, PyTree]:
    """Split a model into its parameters (the inexact array leaves) and the rest,
    as `eqx.partition(model, eqx.is_inexact_array)`."""
    return eqx.partition(model, eqx.is_inexact_array)


def learning_signal(
    model: "AbstractEquilibriumModel",
    u: PyTree[Array],
    x: Array,
    y: Array,
    beta: ArrayLike,
    cost: AbstractCost,
    weights: ArrayLike,
) -> PyTree[Array]:
    """The weighted learning signal `Σ_b w_b ∂F/∂θ(u_b, β_b; x_b, y_b)`.

    Examples run along the leading axis of `u`, `x`, `y`, `beta` and `weights`
    (`beta` may also be one scalar for all). `∂F/∂θ` is the derivative of the
    model's `parameter_energy`; it is the holomorphic one: the parameters are cast
    to the dtype of `u`, `beta` and `weights` combined before differentiating, so
    complex states or β give the complex signal (for real parameters, `G(β̄) =
    conj G(β)`). Returns a PyTree shaped like `holoode.parameters(model)[0]`, in
    that combined dtype; one backward pass for the whole batch.

    Every learning rule is built on it: holomorphic EP weights the points of a
    circle with `holoode.harmonic_weights`, classic EP takes `±1/(2β)`, the
    continuous-time rules multiply by `e^{−iωt}/|β|` as they go.
    """
    params, static = parameters(model)
    beta = jnp.broadcast_to(jnp.asarray(beta), jnp.shape(weights))
    dtype = jnp.result_type(tree_dtype(u), beta.dtype, jnp.asarray(weights).dtype)

    def weighted_energy(p):
        m = eqx.combine(p, static)
        energies = jax.vmap(
            lambda u_b, x_b, y_b, b: m.parameter_energy(u_b, x_b, y_b, b, cost)
        )(u, x, y, beta)
        return jnp.sum(weights * energies)

    return holomorphic_grad(weighted_energy, tree_astype(params, dtype))


class AbstractEquilibriumModel(eqx.Module):
    """The protocol shared by both model forms.

    Subclass `holoode.AbstractEnergyModel` or `holoode.AbstractPrimitiveModel`
    rather than this class. A model is an Equinox module describing one example
    (no batch axis); its inexact array leaves are the parameters `θ`.
    """

    @abc.abstractmethod
    def init_state(self, x: Array) -> PyTree[Array]:
        """The initial neural state `u` for input `x` (real, any PyTree)."""

    @abc.abstractmethod
    def readout(self, u: PyTree[Array], x: Array) -> Array:
        """The prediction (e.g. logits) read from state `u`; holomorphic in `u`."""

    @abc.abstractmethod
    def vector_field(
        self, u: PyTree, x: Array, y: ArrayLike, beta, cost: AbstractCost
    ) -> PyTree:
        """`du/dt` of the network nudged with strength `beta` (zeros = equilibria)."""

    @abc.abstractmethod
    def parameter_energy(
        self, u: PyTree, x: Array, y: ArrayLike, beta, cost: AbstractCost
    ) -> Array:
        """A scalar whose `θ`-derivative is the learning signal `∂F/∂θ`."""

    def loss(self, u: PyTree, x: Array, y: ArrayLike, cost: AbstractCost) -> Array:
        """The cost `C(readout(u, x), y)` of one example."""
        return cost(self.readout(u, x), y)


class AbstractEnergyModel(AbstractEquilibriumModel):
    """A network defined by a holomorphic energy `E_θ(u, x)`.

    Subclasses implement `energy(u, x)`, `init_state(x)` and `readout(u, x)`. The
    dynamics are the gradient flow of the total energy `F = E + β C`:
    `du/dt = −∂F/∂u`, whose stationary points are the equilibria. The learning
    signal is `∂F/∂θ`.

    `energy` and `readout` must be holomorphic in `u` and in the model's array
    leaves (check with `holoode.check_holomorphic`): holomorphic EP evaluates
    them at complex states.
    """

    @abc.abstractmethod
    def energy(self, u: PyTree[Array], x: Array) -> Array:
        """The scalar energy `E_θ(u, x)` of one example."""

    def total_energy(self, u, x, y, beta, cost) -> Array:
        """`F = E + β C`."""
        return self.energy(u, x) + beta * self.loss(u, x, y, cost)

    def vector_field(self, u, x, y, beta, cost):
        grad = holomorphic_grad(lambda v: self.total_energy(v, x, y, beta, cost), u)
        return jax.tree_util.tree_map(jnp.negative, grad)

    def parameter_energy(self, u, x, y, beta, cost):
        return self.total_energy(u, x, y, beta, cost)


class AbstractPrimitiveModel(AbstractEquilibriumModel):
    """A layered network defined by a primitive `Φ_θ(u, x)` and an activation `σ`.

    Subclasses implement `primitive(u, x)`, `activation(a)` (applied to the
    PyTree of pre-activations `a = ∂Φ/∂u`), `init_state(x)` and `readout(u, x)`.

    The energy is `E = Σ G(u) − Φ(u)` with `G' = σ⁻¹`, so the equilibria of
    `F = E + βC` satisfy `u = σ(∂(Φ − βC)/∂u)`. The dynamics are the rate
    equations `du/dt = σ(∂(Φ − βC)/∂u) − u`, which share those fixed points, and
    the learning signal `∂F/∂θ = −∂Φ/∂θ + β ∂C/∂θ` needs only `Φ` — `G` is
    never evaluated. This is the form of Laborieux & Zenke (2022).
    """

    @abc.abstractmethod
    def primitive(self, u: PyTree[Array], x: Array) -> Array:
        """The scalar primitive `Φ_θ(u, x)`; holomorphic in `u` and `θ`."""

    @abc.abstractmethod
    def activation(self, a: PyTree[Array]) -> PyTree[Array]:
        """`σ` applied to the pre-activations `a` (a PyTree shaped like `u`)."""

    def vector_field(self, u, x, y, beta, cost):
        def nudged_primitive(v):
            return self.primitive(v, x) - beta * self.loss(v, x, y, cost)

        pre = holomorphic_grad(nudged_primitive, u)
        return jax.tree_util.tree_map(jnp.subtract, self.activation(pre), u)

    def parameter_energy(self, u, x, y, beta, cost):
        return -self.primitive(u, x) + beta * self.loss(u, x, y, cost)
