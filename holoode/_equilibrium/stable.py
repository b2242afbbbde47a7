"""Is an equilibrium stable? A Lanczos check on the symmetric form of the
linearised dynamics.

Root finders and accelerated fixed-point methods converge to any zero of the
vector field, including a maximum or a saddle of the energy that the network's
own dynamics would leave. EP's gradient formula assumes the free state is a
stable equilibrium (a minimum of the energy), so such a state must be refused.

Both model forms have a linearisation with real spectrum:

- energy form, `du/dt = −∂E/∂u`: the Jacobian is `A = −H` (the Hessian of `E`),
  symmetric;
- primitive form, `du/dt = σ(∂Φ/∂u) − u`: the Jacobian `J = D W − I` (`D = σ'(a)`
  elementwise, `W = ∂²Φ/∂u²` symmetric) is similar to the symmetric
  `A = D^{1/2} W D^{1/2} − I`; `A` is positive definite exactly where the
  Hessian `D⁻¹ − W` of the energy `Σ G(u) − Φ(u)` is not.

The equilibrium is stable if and only if the largest eigenvalue of `A` is
negative. `lanczos_steps` steps of Lanczos (with full reorthogonalisation) give
Ritz values that lie inside `A`'s spectrum, so a Ritz value above the noise
floor `√ε · max|Ritz|` *proves* an unstable direction: the check has no false
alarms beyond rounding. It can miss a saddle whose unstable curvature is tiny
next to the largest curvature, which Lanczos does not resolve in a few steps.
A maximum (the failure of root finders on an energy unbounded below) is found
in the first step.

Caveat: the primitive form's symmetrisation assumes `σ` acts elementwise and is
non-decreasing; models that subclass `AbstractEquilibriumModel` directly are not
checked.
"""

import jax
import jax.numpy as jnp
import jax.random as jr
from jax.flatten_util import ravel_pytree

from .._model import AbstractEnergyModel, AbstractPrimitiveModel, holomorphic_grad


def _symmetric_operator(model, u, x):
    """`(flat u, v ↦ A v, Ritz vector ↦ state direction)` on the flattened state;
    the operator is `None` if the model form is unknown."""
    flat, unravel = ravel_pytree(u)
    if isinstance(model, AbstractEnergyModel):
        grad = lambda w: ravel_pytree(  # noqa: E731
            holomorphic_grad(lambda s: model.energy(s, x), unravel(w))
        )[0]

        def apply(v):
            return -jax.jvp(grad, (flat,), (v,))[1]

        return flat, apply, unravel
    if isinstance(model, AbstractPrimitiveModel):
        pre = lambda w: ravel_pytree(  # noqa: E731
            holomorphic_grad(lambda s: model.primitive(s, x), unravel(w))
        )[0]
        a = pre(flat)
        activation = lambda b: ravel_pytree(model.activation(unravel(b)))[0]  # noqa: E731
        slope = jax.jvp(activation, (a,), (jnp.ones_like(a),))[1]
        root = jnp.sqrt(jnp.maximum(slope, 0))

        def apply(v):
            return root * jax.jvp(pre, (flat,), (root * v,))[1] - v

        def to_state(z):
            # If A z = λ z, then J (D^{1/2} z) = λ D^{1/2} z.
            v = root * z
            return unravel(v / jnp.maximum(jnp.linalg.norm(v), jnp.finfo(v.dtype).tiny))

        return flat, apply, to_state
    return flat, None, unravel


def unstable_direction(model, u, x, *, lanczos_steps: int = 24):
    """`(unstable, direction)` for the real equilibrium `u` of `model` at input `x`
    (one example, no nudging): whether `lanczos_steps` Lanczos steps prove it
    unstable, and the Ritz vector of the most unstable direction, mapped back to
    the state's coordinates (a PyTree shaped like `u`, unit 2-norm)."""
    u = jax.tree_util.tree_map(jnp.real, u)
    flat, apply, to_state = _symmetric_operator(model, u, x)
    if apply is None or flat.size == 0:
        return jnp.array(False), jax.tree_util.tree_map(jnp.zeros_like, u)
    flat = jax.lax.stop_gradient(flat)
    n = flat.size
    k = min(lanczos_steps, n)
    dtype = flat.dtype
    tiny = jnp.finfo(dtype).tiny ** 0.5
    q0 = jr.normal(jr.key(0), (n,), dtype)
    q0 = q0 / jnp.linalg.norm(q0)

    def step(carry, j):
        basis, q, q_prev, b_prev = carry
        w = apply(q) - b_prev * q_prev
        alpha = jnp.vdot(q, w)
        w = w - alpha * q
        # Full reorthogonalisation against the basis so far (k is small).
        w = w - basis.T @ (basis @ w)
        b = jnp.linalg.norm(w)
        q_next = jnp.where(b > tiny, w / jnp.maximum(b, tiny), 0.0)
        basis = basis.at[j + 1].set(q_next, mode="drop")
        return (basis, q_next, q, b), (alpha, b)

    basis = jnp.zeros((k, n), dtype).at[0].set(q0)
    (basis, *_), (alphas, betas) = jax.lax.scan(
        step, (basis, q0, jnp.zeros_like(q0), jnp.zeros((), dtype)), jnp.arange(k)
    )
    top, spread, vector = _top_eigenpair(alphas, betas[:-1])
    floor = jnp.sqrt(jnp.finfo(dtype).eps) * spread
    unstable = jnp.isfinite(top) & (top > floor)
    direction = to_state(basis.T @ vector)
    return unstable, direction


def _top_eigenpair(diagonal, off, squarings: int = 40):
    """`(λ_max, max|λ|, v)` of the symmetric tridiagonal matrix `T` with
    `diagonal` and `off`-diagonal, `v` a unit eigenvector of `λ_max`, from
    matrix products only. (LAPACK's batched `eigh` on CPU blocks in XLA's thread
    pool and can deadlock when several CPU devices run at once.)

    With Gershgorin bounds `g_lo < λ < g_hi`, `T − g_lo I` and `g_hi I − T` are
    positive semi-definite with dominant eigenvectors those of `λ_max` and
    `λ_min`. Each is raised to the power `2^squarings` by repeated squaring
    (normalised), which leaves the dominant eigenvector's projector up to a
    factor `(λ_2 / λ_1)^(2^squarings)`; its largest column is the eigenvector,
    and the eigenvalue its Rayleigh quotient (accurate to rounding, as the
    quotient's error is quadratic in the vector's)."""
    dtype = diagonal.dtype
    t = jnp.diag(diagonal) + jnp.diag(off, 1) + jnp.diag(off, -1)
    radius = jnp.sum(jnp.abs(t), axis=1) - jnp.abs(diagonal)
    lo, hi = jnp.min(diagonal - radius), jnp.max(diagonal + radius)
    # A margin keeps both shifted matrices nonzero (T = cI, or a 1 × 1 T).
    margin = 1e-3 * (hi - lo) + jnp.finfo(dtype).eps * (jnp.abs(lo) + jnp.abs(hi))
    margin = jnp.maximum(margin, jnp.finfo(dtype).tiny ** 0.5)
    lo, hi = lo - margin, hi + margin
    eye = jnp.eye(diagonal.size, dtype=dtype)
    shifted = jnp.stack([t - lo * eye, hi * eye - t])

    def square(_, m):
        m = m @ m
        scale = jnp.max(jnp.abs(m), axis=(1, 2), keepdims=True)
        return m / jnp.maximum(scale, jnp.finfo(dtype).tiny)

    powers = jax.lax.fori_loop(0, squarings, square, shifted)
    norms = jnp.linalg.norm(powers, axis=1)  # (2, k): each column's norm
    best = jnp.argmax(norms, axis=1)
    vectors = jnp.take_along_axis(powers, best[:, None, None], axis=2)[..., 0]
    vectors = (
        vectors
        / jnp.maximum(norms[jnp.arange(2), best], jnp.finfo(dtype).tiny)[:, None]
    )
    top, bottom = jnp.einsum("ji,ik,jk->j", vectors, t, vectors)
    return top, jnp.maximum(jnp.abs(top), jnp.abs(bottom)), vectors[0]
