"""The paper's networks: Hopfield MLPs of any depth and the VGG-style convnet.

For each, holomorphic EP = implicit differentiation = central finite differences
of the loss, in float64; the convnet's feedback is the transposed convolution;
bad input shapes are refused with a message naming the layer."""

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
import jax.tree_util as jtu
import numpy as np
import pytest

import holoode as ho
from holoode import softmax_pool
from holoode.nn import HopfieldConvNet, HopfieldMLP

from .helpers import (
    data,
    EXACT,
    flat,
    mlp,
    perturb,
    random_direction,
    reference,
    rel_error,
    TIGHT,
)


def convnet(**kwargs):
    options = dict(key=jr.key(0), dtype=jnp.float64, gain=1.5)
    options.update(kwargs)
    return HopfieldConvNet((1, 6, 6), (2, 3), 3, **options)


def images(batch=3, seed=1):
    kx, ky = jr.split(jr.key(seed))
    x = jr.uniform(kx, (batch, 1, 6, 6), jnp.float64)
    return x, jr.randint(ky, (batch,), 0, 3)


def mlp_problem(depth):
    sizes = (4,) + (5,) * depth + (3,)
    model = HopfieldMLP(sizes, key=jr.key(depth), gain=1.5, dtype=jnp.float64)
    kx, ky = jr.split(jr.key(10 + depth))
    x = jr.uniform(kx, (3, 4), jnp.float64)
    return model, x, jr.randint(ky, (3,), 0, 3)


# The paper's synchronous update converges on these small networks and compiles
# about twice as fast as Newton; its stopping test bounds the step, so the
# equilibria are accurate to ~1e-13.
FIXED_POINT = ho.FixedPointIteration(rtol=1e-14, atol=1e-14, max_steps=100_000)

# name: (problem, solver). Depth 2 is the MLP of tests/helpers.py with Newton, so
# that in a full run its programs and `reference` are shared with other tests.
PROBLEMS = {
    "mlp-depth1": (lambda: mlp_problem(1), FIXED_POINT),
    "mlp-depth2": (lambda: (mlp(), *data()), TIGHT),
    "mlp-depth3": (lambda: mlp_problem(3), FIXED_POINT),
    "mlp-depth4": (lambda: mlp_problem(4), FIXED_POINT),
    "convnet": (lambda: (convnet(), *images()), FIXED_POINT),
}


# Depths 1 and 2 in the quick run; the deeper MLPs and the convnet are slow.
FAST_PROBLEMS = ("mlp-depth1", "mlp-depth2")


@pytest.mark.parametrize(
    "name",
    [
        pytest.param(n, marks=[] if n in FAST_PROBLEMS else [pytest.mark.slow])
        for n in PROBLEMS
    ],
)
def test_hep_equals_implicit_equals_finite_differences(name):
    problem, solver = PROBLEMS[name]
    model, x, y = problem()
    cost = ho.CrossEntropy()
    if solver is TIGHT:
        exact = reference(model, x, y, cost)
    else:
        exact, _ = ho.gradient(EXACT, model, x, y, cost=cost, solver=solver)
    # hEP at |β| = 0.05 with N = 12: the aliasing error (|β|/R)^N is below 1e-10
    # for these networks (R ≳ 0.3); the equilibria are solved to ~1e-13, so the
    # remaining error is that, amplified by 1/|β| (~1e-12).
    hep, info = ho.gradient(
        ho.HolomorphicEP(0.05, 12), model, x, y, cost=cost, solver=solver
    )
    assert info.result == ho.RESULTS.successful
    assert rel_error(hep, exact) < 1e-8, rel_error(hep, exact)

    def loss(m):
        return ho.gradient(EXACT, m, x, y, cost=cost, solver=solver)[1].loss

    # Central differences of the loss along unit random directions, step
    # h = 1e-4: truncation h² L'''/6 ~ 1e-9 and solver error ~1e-13/h = 1e-9, so
    # an absolute 1e-8 plus 1e-6 of the gradient norm is safe, and any wrong
    # term (of the size of the gradient) is caught.
    h = 1e-4
    g = flat(exact)
    for seed in range(2):
        direction = random_direction(model, jr.key(100 + seed))
        norm = jnp.linalg.norm(flat(direction))
        direction = jtu.tree_map(lambda d: d / norm, direction)
        fd = loss(perturb(model, direction, h)) - loss(perturb(model, direction, -h))
        fd = fd / (2 * h)
        predicted = jnp.dot(g, flat(direction))
        assert abs(predicted - fd) < 1e-8 + 1e-6 * jnp.linalg.norm(g), (predicted, fd)


def test_mlp_depths_have_the_expected_layers():
    for depth in (1, 2, 3, 4):
        model, x, _ = mlp_problem(depth)
        state = model.init_state(x[0])
        assert [u.shape for u in state] == [(5,)] * depth
        assert model.sizes == (4,) + (5,) * depth + (3,)


@pytest.mark.slow
def test_convnet_is_holomorphic():
    x, y = images(1)
    # The primitive and the activation (the readout and cost are the MLP's,
    # checked elsewhere), on 8 random circles per parameter and the state.
    ho.check_holomorphic(convnet(), x[0], num_circles=8)


def transposed_conv(model, l, g):
    """`conv_{l+1}ᵀ g` written out with `jax.lax.conv_transpose`: a stride-1
    convolution with padding p and kernel k has as transpose the convolution with
    the flipped, channel-swapped kernel and padding k − 1 − p."""
    kernel = model.kernels[l]
    k, p = kernel.shape[-1], model.paddings[l]
    return jax.lax.conv_transpose(
        g[None],
        kernel,
        strides=(1, 1),
        padding=((k - 1 - p, k - 1 - p),) * 2,
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        transpose_kernel=True,
    )[0]


@pytest.mark.parametrize("pool,padding", [(False, 0), (True, 1)])
def test_feedback_is_the_transposed_convolution(pool, padding):
    model = HopfieldConvNet(
        (2, 10, 10),
        (3, 2),
        4,
        key=jr.key(3),
        padding=padding,
        pool=(True, pool),
        dtype=jnp.float64,
    )
    x = jr.uniform(jr.key(4), (2, 10, 10), jnp.float64)
    u = [
        jr.normal(k, s, jnp.float64)
        for k, s in zip(jr.split(jr.key(5), 2), model.state_shapes)
    ]

    @jax.jit  # one program instead of many small eager ones
    def both(u, x):
        grad = jax.grad(model.primitive)(u, x)
        # Layer 1: bottom-up P(conv_1(x)) plus top-down conv_2ᵀ(J_Pᵀ u_2).
        pre = model.conv(1, u[0])
        if pool:
            _, pool_vjp = jax.vjp(lambda a: softmax_pool(a, 2, 2, 1.0), pre)
            g = pool_vjp(u[1])[0]
        else:
            g = u[1]
        expected = model.feedforward(0, x) + transposed_conv(model, 1, g)
        return grad, expected, model.feedforward(1, u[0])

    grad, expected, top = both(u, x)
    np.testing.assert_allclose(grad[0], expected, rtol=1e-12, atol=1e-12)
    # The top layer only receives its bottom-up input.
    np.testing.assert_allclose(grad[1], top, rtol=1e-12)


def test_convnet_shapes_and_initialisation():
    # The paper's CIFAR network: 32 → 16 → 8 → 4 → (4 − 2 = 2) → 1 pixels.
    shape = eqx.filter_eval_shape(
        lambda: HopfieldConvNet(
            (3, 32, 32), (128, 256, 512, 512), 10, padding=(1, 1, 1, 0), key=jr.key(0)
        )
    )
    assert shape.state_shapes == (
        (128, 16, 16),
        (256, 8, 8),
        (512, 4, 4),
        (512, 1, 1),
    )
    assert shape.readout_weight.shape == (10, 512)
    assert [k.shape for k in shape.kernels][1] == (256, 128, 3, 3)
    # PyTorch's default: uniform in ±1/√fan_in.
    model = convnet(gain=1.0)
    for kernel, bias in zip(model.kernels, model.biases):
        bound = 1 / np.sqrt(np.prod(kernel.shape[1:]))
        assert float(jnp.max(jnp.abs(kernel))) <= bound
        assert float(jnp.max(jnp.abs(kernel))) > 0.7 * bound
        assert float(jnp.max(jnp.abs(bias))) <= bound
    assert model.readout_weight.shape == (3, 3)
    assert float(jnp.max(jnp.abs(model.readout_weight))) <= 1 / np.sqrt(3)


@pytest.mark.parametrize(
    "bad,match",
    [
        (jnp.zeros((2, 6, 6)), r"layer 0 .*has 2 channels, conv_1 takes 1"),
        (jnp.zeros((6, 6, 1)), r"layer 0 .*channel-first"),
        (jnp.zeros((36,)), r"layer 0 .*x.reshape\(1, 6, 6\)"),
        (jnp.zeros((1, 5, 5)), r"layer 0 .*\(1, 6, 6\)"),
    ],
)
def test_convnet_refuses_bad_inputs_naming_the_layer(bad, match):
    model = convnet()
    with pytest.raises(ValueError, match=match):
        model.init_state(bad)
    with pytest.raises(ValueError, match=match):
        ho.gradient(
            ho.ImplicitDifferentiation(),
            model,
            bad[None].astype(jnp.float64),
            jnp.zeros((1,), jnp.int32),
            cost=ho.CrossEntropy(),
        )


def test_convnet_refuses_bad_states_and_layouts():
    model = convnet()
    x = jnp.zeros((1, 6, 6), jnp.float64)
    u = model.init_state(x)
    with pytest.raises(ValueError, match=r"layer 2 \(output of conv_2\)"):
        model.primitive([u[0], jnp.zeros((3, 2, 2))], x)
    with pytest.raises(ValueError, match="2 layers"):
        model.readout(u[:1], x)
    with pytest.raises(ValueError, match=r"layer 2 \(conv_2\) leaves no pixels"):
        HopfieldConvNet((1, 4, 4), (2, 2), 3, padding=0, key=jr.key(0))
    with pytest.raises(ValueError, match="one entry per conv layer"):
        HopfieldConvNet((1, 6, 6), (2, 2), 3, pool=(True,), key=jr.key(0))


def test_mlp_refuses_bad_inputs_naming_the_layer():
    model, x, _ = mlp_problem(3)
    with pytest.raises(ValueError, match=r"layer 0 expects an input of shape \(4,\)"):
        model.init_state(jnp.zeros((5,)))


def test_real_weights_times_complex_states_is_the_complex_product():
    # Real weights and a complex state are multiplied as two real products; the
    # value and the holomorphic derivatives (∂/∂v = w, ∂/∂w = v) must be those of
    # the complex product itself.
    from holoode.nn._complex import complex_matmul

    w = jr.normal(jr.key(0), (3, 4))
    v = jr.normal(jr.key(1), (4,)) + 1j * jr.normal(jr.key(2), (4,))
    ct = jr.normal(jr.key(3), (3,)) + 1j * jr.normal(jr.key(4), (3,))
    np.testing.assert_allclose(complex_matmul(w, v), w @ v, rtol=1e-6)
    _, vjp = jax.vjp(complex_matmul, w.astype(v.dtype), v)
    _, vjp_ref = jax.vjp(jnp.matmul, w.astype(v.dtype), v)
    for got, want in zip(vjp(ct), vjp_ref(ct)):
        np.testing.assert_allclose(got, want, rtol=1e-6)
    _, vjp_v = jax.vjp(lambda v: complex_matmul(w, v), v)
    _, vjp_v_ref = jax.vjp(lambda v: w.astype(v.dtype) @ v, v)
    np.testing.assert_allclose(vjp_v(ct)[0], vjp_v_ref(ct)[0], rtol=1e-6)
