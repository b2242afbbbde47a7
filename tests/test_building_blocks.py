"""Activations and softmax pooling: holomorphic, and equal to their real
counterparts on the real axis where they should be."""

import functools

import jax
import jax.numpy as jnp
import jax.random as jr
import numpy as np
import pytest

from holoode import (
    hard_tanh,
    identity,
    shifted_sigmoid,
    softmax_pool as eager_softmax_pool,
    softplus,
)


# Jitted, so that each test compiles one program rather than many small ops.
softmax_pool = jax.jit(eager_softmax_pool, static_argnums=(1, 2, 3))


@functools.partial(jax.jit, static_argnums=(0, 3))  # one program, not many ops
def cauchy_riemann_and_values(f, z, v, h=1e-5):
    """Two independent checks that `f` is holomorphic at the points `z`:

    - Cauchy–Riemann on JAX's derivative: `J(iv) = i J(v)`.
    - the *values*: central differences of `f` along `v` and along `iv` agree
      with `J(v)` and `J(iv)`; this also catches a formula whose value is not
      holomorphic while its traced derivative is (e.g. a wrong stop_gradient).

    Returns the worst relative mismatch of each.
    """
    _, jv = jax.jvp(f, (z,), (v,))
    _, jiv = jax.jvp(f, (z,), (1j * v,))
    scale = jnp.max(jnp.abs(jv)) + 1e-30
    cr = jnp.max(jnp.abs(jiv - 1j * jv)) / scale
    fd_real = (f(z + h * v) - f(z - h * v)) / (2 * h)
    fd_imag = (f(z + 1j * h * v) - f(z - 1j * h * v)) / (2 * h)
    fd = jnp.maximum(jnp.max(jnp.abs(fd_real - jv)), jnp.max(jnp.abs(fd_imag - jiv)))
    return cr, fd / scale


def random_complex(key, shape, imag_scale):
    kr, ki = jr.split(key)
    re = jr.uniform(kr, shape, jnp.float64, -3.0, 3.0)
    im = jr.uniform(ki, shape, jnp.float64, -imag_scale, imag_scale)
    return re + 1j * im


# (activation, half-width of the strip where it is holomorphic near the real axis)
ACTIVATIONS = [
    (shifted_sigmoid, jnp.pi / 4),
    (identity, 10.0),
    (hard_tanh, jnp.pi / 4),
    (functools.partial(hard_tanh, sharpness=10.0), jnp.pi / 10),
    (softplus, jnp.pi),
]


@pytest.mark.parametrize("f,strip", ACTIVATIONS)
def test_activations_are_holomorphic(f, strip):
    z = random_complex(jr.key(0), (64,), 0.9 * strip)
    v = jr.normal(jr.key(1), (64,), jnp.float64).astype(jnp.complex128)
    cr, fd = cauchy_riemann_and_values(f, z, v)
    assert float(cr) < 1e-12, cr
    # Central differences with h = 1e-5: truncation ~h² f''' and round-off ~eps/h.
    assert float(fd) < 1e-7, fd


@pytest.mark.parametrize("f,strip", ACTIVATIONS)
def test_activations_are_real_on_the_real_axis(f, strip):
    x = jnp.linspace(-5.0, 5.0, 101)
    out, out_c = jax.jit(lambda a: (f(a), f(a.astype(jnp.complex128))))(x)
    assert out.dtype == jnp.float64
    np.testing.assert_allclose(out_c.imag, 0.0, atol=1e-15)
    np.testing.assert_allclose(out_c.real, out, rtol=1e-14, atol=1e-15)


def test_hard_tanh_approximates_clip_within_log2_over_k():
    x = jnp.linspace(-4.0, 4.0, 8001)
    clip = jnp.clip(x, -1.0, 1.0)
    corner = jnp.argmin(jnp.abs(x - 1))
    d = jnp.min(jnp.abs(jnp.stack([x - 1, x + 1])), axis=0)

    @jax.jit
    def evaluate(k):
        h = hard_tanh(x, sharpness=k)
        slope = jax.vmap(jax.grad(lambda z: hard_tanh(z, k)))(x)
        return h, hard_tanh(-x, k), slope

    for k in [2.0, 4.0, 10.0, 50.0]:
        h, h_neg, slope = evaluate(k)
        error = jnp.abs(h - clip)
        # Everywhere: at most log(2)/k, reached at the corners ±1.
        assert float(jnp.max(error)) <= np.log(2) / k + 1e-12
        # At the corner: (log 2 − softplus(−2k))/k exactly.
        expected = (np.log(2) - np.log1p(np.exp(-2 * k))) / k
        np.testing.assert_allclose(error[corner], expected, rtol=1e-12)
        # At distance d from the corners: below e^{−kd}/k.
        # (+ round-off: the two softplus terms are ~k|z|, so ~eps·|z|.)
        assert bool(jnp.all(error <= jnp.exp(-k * d) / k + 1e-14))
        # Increasing (its derivative is positive), odd, within [−1, 1] (up to
        # round-off in the saturated tails).
        assert bool(jnp.all(slope >= -1e-15))
        assert bool(jnp.all(slope[jnp.abs(x) < 1.5] > 0))
        np.testing.assert_allclose(h_neg, -h, atol=1e-15)
        assert bool(jnp.all(jnp.abs(h) <= 1 + 1e-15))


def test_hard_tanh_singularities_sit_where_documented():
    k = 4.0
    f = functools.partial(hard_tanh, sharpness=k)
    fprime = jax.jit(jax.vmap(jax.grad(f, holomorphic=True)))
    # The derivative σ(k(z+1)) − σ(k(z−1)) has simple poles at ±1 + iπ/k: it
    # grows like 1/(k·distance) as z approaches them.
    dist = jnp.array([1e-2, 1e-4, 1e-2, 1e-4])
    corners = jnp.array([1.0, 1.0, -1.0, -1.0])
    near = fprime(corners + 1j * (jnp.pi / k - dist))
    np.testing.assert_allclose(jnp.abs(near) * k * dist, 1.0, rtol=2e-2)

    @functools.partial(jax.jit, static_argnums=1)
    def first_coefficient(centre, radius, n=256):
        phi = 2 * jnp.pi * jnp.arange(n) / n
        values = f(centre + radius * jnp.exp(1j * phi))
        return jnp.mean(values * jnp.exp(-1j * phi)) / radius

    # A circle inside the strip reproduces the derivative; one around the branch
    # point at 1 + iπ/k does not.
    centre = jnp.asarray(1.0 + 0.5j, jnp.complex128)
    d_true = fprime(centre[None])[0]
    assert abs(first_coefficient(centre, 0.2) - d_true) < 1e-10 * abs(d_true)
    assert abs(first_coefficient(centre, 0.6) - d_true) > 1e-2 * abs(d_true)


def test_softplus_is_stable_and_matches_the_real_one():
    x = jnp.array([-1000.0, -30.0, -1.0, 0.0, 1.0, 30.0, 1000.0])
    np.testing.assert_allclose(softplus(x), jax.nn.softplus(x), rtol=1e-14)
    z = x.astype(jnp.complex128) + 0.5j
    assert bool(jnp.all(jnp.isfinite(softplus(z))))
    grad = jax.vmap(jax.grad(softplus, holomorphic=True))(z)
    np.testing.assert_allclose(grad, 1 / (1 + jnp.exp(-z)), rtol=1e-12)


def max_pool(x, w):
    c, h, ww = x.shape
    x = x[:, : h // w * w, : ww // w * w]
    return x.reshape(c, h // w, w, ww // w, w).max(axis=(2, 4))


def avg_pool(x, w):
    c, h, ww = x.shape
    x = x[:, : h // w * w, : ww // w * w]
    return x.reshape(c, h // w, w, ww // w, w).mean(axis=(2, 4))


def loop_reference(x, window, stride, temperature):
    """Softmax pooling written the obvious way, one window at a time."""
    x = np.asarray(x)
    c, h, w = x.shape
    ho, wo = (h - window) // stride + 1, (w - window) // stride + 1
    out = np.zeros((c, ho, wo), x.dtype)
    for ch in range(c):
        for i in range(ho):
            for j in range(wo):
                p = x[
                    ch,
                    i * stride : i * stride + window,
                    j * stride : j * stride + window,
                ]
                e = np.exp(p / temperature)
                out[ch, i, j] = np.sum(p * e) / np.sum(e)
    return out


@pytest.mark.parametrize("window,stride", [(2, 2), (3, 1), (2, 3)])
def test_softmax_pool_matches_a_loop(window, stride):
    x = jr.normal(jr.key(0), (2, 7, 8), jnp.float64)
    z = x + 0.3j * jr.normal(jr.key(1), x.shape, jnp.float64)
    for a in (x, z):
        np.testing.assert_allclose(
            softmax_pool(a, window, stride, 0.7),
            loop_reference(a, window, stride, 0.7),
            rtol=1e-12,
        )


@pytest.mark.parametrize("window,stride", [(2, 2), (3, 1)])
def test_softmax_pool_is_holomorphic(window, stride):
    x = random_complex(jr.key(2), (2, 6, 6), 0.3)
    v = jr.normal(jr.key(3), x.shape, jnp.float64).astype(jnp.complex128)
    f = functools.partial(eager_softmax_pool, window=window, stride=stride)
    cr, fd = cauchy_riemann_and_values(f, x, v)
    assert float(cr) < 1e-12, cr
    assert float(fd) < 1e-7, fd


def test_softmax_pool_limits_on_real_inputs():
    x = jr.normal(jr.key(4), (3, 6, 6), jnp.float64)
    for t in [1e-1, 1e-2, 1e-3]:
        out = softmax_pool(x, 2, temperature=t)
        gap = max_pool(x, 2) - out
        # Between the mean and the max, at most T·log(window²) below the max.
        assert bool(jnp.all(gap >= -1e-14))
        assert float(jnp.max(gap)) <= t * np.log(4) + 1e-14
        assert bool(jnp.all(out >= avg_pool(x, 2) - 1e-14))
    np.testing.assert_allclose(
        softmax_pool(x, 2, temperature=1e-4), max_pool(x, 2), atol=1e-4
    )
    # As T → ∞ the weights flatten: P = mean + O(variance / T).
    np.testing.assert_allclose(
        softmax_pool(x, 2, temperature=1e6), avg_pool(x, 2), atol=1e-5
    )
    assert softmax_pool(x, 2).dtype == jnp.float64
    assert softmax_pool(x, 2).shape == (3, 3, 3)
    assert softmax_pool(x[:, :5, :5], 2).shape == (
        3,
        2,
        2,
    )  # 'VALID': remainder dropped


def test_softmax_pool_pole_sits_where_documented():
    # A 2×2 window holding a, b, a, b: its partition sum 2e^{a/T} + 2e^{b/T}
    # vanishes at b − a = iπT. Approaching it, |P| ≈ πT²/ε.
    t, a = 0.5, 0.3
    for eps in [1e-3, 1e-5]:
        b = a + 1j * (jnp.pi * t - eps)
        x = jnp.array([[[a, b], [a, b]]], jnp.complex128)
        pooled = softmax_pool(x, 2, 2, t)[0, 0, 0]
        np.testing.assert_allclose(abs(pooled), np.pi * t**2 / eps, rtol=1e-2)
    # Within a spread of imaginary parts below πT it stays bounded (|P| ≤ max|x|
    # is not guaranteed off the real axis, but no pole is near).
    x = jnp.array([[[a, a + 0.9j * jnp.pi * t], [a, a]]], jnp.complex128)
    assert float(jnp.abs(softmax_pool(x, 2, 2, t)).max()) < 10


@pytest.mark.parametrize(
    "args,match",
    [
        ((jnp.zeros((6, 6)), 2), "channel-first"),
        ((jnp.zeros((1, 3, 3)), 4), "does not fit"),
        ((jnp.zeros((1, 4, 4)), 2, 0), "does not fit"),
        ((jnp.zeros((1, 4, 4)), 2, 2, 0.0), "temperature"),
    ],
)
def test_softmax_pool_rejects_bad_arguments(args, match):
    with pytest.raises(ValueError, match=match):
        eager_softmax_pool(*args)
