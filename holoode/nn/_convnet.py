"""A VGG-style convolutional Hopfield network in the primitive form."""

from collections.abc import Callable, Sequence

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.random as jr
from jaxtyping import Array, Float, PRNGKeyArray

from .._activations import hard_tanh
from .._model import AbstractPrimitiveModel
from .._pooling import pooled_size, softmax_pool
from ._complex import complex_conv, complex_matmul


def _per_layer(value, n: int, name: str) -> tuple:
    if isinstance(value, (list, tuple)):
        if len(value) != n:
            raise ValueError(
                f"HopfieldConvNet({name}=...) needs one entry per conv layer ({n}), "
                f"got {len(value)}: {value!r}."
            )
        return tuple(value)
    return (value,) * n


class HopfieldConvNet(AbstractPrimitiveModel):
    """A convolutional Hopfield network with softmax pooling and a linear readout.

    The state is one channel-first feature map per conv layer,
    `u = (u_1, ..., u_L)` with `u_l` of shape `(C_l, H_l, W_l)`; the input
    `u_0 = x` `(C_0, H_0, W_0)` is clamped. The primitive is

        Φ(u, x) = Σ_{l=1..L} u_l · P_l(conv_l(u_{l−1}) + b_l),

    (`·` summed over all entries), where `conv_l` is a stride-1 convolution with
    square kernels and zero padding and `P_l` is `holoode.softmax_pool` (or the
    identity for layers without pooling). The prediction is the logits
    `W vec(u_L) + c`, which enter the dynamics through the cost. The fixed points
    are

        u_l = σ(P_l(conv_l(u_{l−1}) + b_l) + conv_{l+1}ᵀ(J_{P_{l+1}}ᵀ u_{l+1})),

    where the top-down term, a transposed convolution of the layer above pulled
    back through its pooling, is computed by differentiating `Φ` (JAX's transpose
    of `conv_general_dilated` *is* the transposed convolution). This is the
    architecture of Laborieux et al. (2021, "Scaling Equilibrium Propagation to
    Deep ConvNets") with max pooling replaced by softmax pooling, as in Laborieux &
    Zenke (2022).

    Their CIFAR-10/100 and ImageNet 32×32 network has four 3×3 conv layers of
    128-256-512-512 channels, each followed by 2×2 pooling, the last one without
    padding (32 → 16 → 8 → 4 → 1 pixels), and a 512 → classes readout:

    ```python
    net = HopfieldConvNet((3, 32, 32), (128, 256, 512, 512), 10,
                          padding=(1, 1, 1, 0), key=jr.key(0))
    ```

    Initialisation: every weight and bias uniform in `±gain/√fan_in`
    (`fan_in = C_{l−1} k²` for a conv layer, the feature count for the readout):
    PyTorch's default for `Conv2d` and `Linear`, which the paper's code used.

    **Arguments:**

    - `input_shape`: `(C, H, W)` of one input image (channel first).
    - `channels`: output channels of each conv layer.
    - `num_classes`: number of logits (10, 100, 1000, ...).
    - `key`: a PRNG key.
    - `kernel_size`: side of the square kernels (default 3).
    - `padding`: zero padding per side, one int for all layers or one per layer
      (default `kernel_size // 2`, which keeps the size).
    - `pool`: whether each layer is pooled (a bool for all layers or one per layer).
    - `pool_window`: side and stride of the pooling windows (default 2).
    - `temperature`: of the softmax pooling (default 1.0, the paper's value).
    - `activation`: a holomorphic elementwise function (default
      `holoode.hard_tanh`, the paper's choice for convnets).
    - `gain`: scale of the initial weights.
    - `dtype`: parameter dtype.
    """

    kernels: list[Float[Array, "out in k k"]]
    biases: list[Float[Array, " out"]]
    readout_weight: Float[Array, "classes features"]
    readout_bias: Float[Array, " classes"]
    input_shape: tuple[int, int, int] = eqx.field(static=True)
    paddings: tuple[int, ...] = eqx.field(static=True)
    pools: tuple[bool, ...] = eqx.field(static=True)
    pool_window: int = eqx.field(static=True)
    temperature: float = eqx.field(static=True)
    sigma: Callable = hard_tanh  # σ, applied to every unit by `activation`

    def __init__(
        self,
        input_shape: Sequence[int],
        channels: Sequence[int],
        num_classes: int,
        *,
        key: PRNGKeyArray,
        kernel_size: int = 3,
        padding: int | Sequence[int] | None = None,
        pool: bool | Sequence[bool] = True,
        pool_window: int = 2,
        temperature: float = 1.0,
        activation: Callable = hard_tanh,
        gain: float = 1.0,
        dtype=jnp.float32,
    ):
        input_shape = tuple(int(s) for s in input_shape)
        channels = tuple(int(c) for c in channels)
        if len(input_shape) != 3 or min(input_shape) < 1:
            raise ValueError(
                "HopfieldConvNet(input_shape=...) must be a channel-first image shape "
                f"(C, H, W) with positive entries, got {input_shape}."
            )
        if not channels or min(channels) < 1 or num_classes < 1:
            raise ValueError(
                "HopfieldConvNet needs at least one conv layer with positive channel "
                f"counts and num_classes ≥ 1, got channels={channels}, "
                f"num_classes={num_classes}."
            )
        if kernel_size < 1 or pool_window < 1 or not temperature > 0:
            raise ValueError(
                "HopfieldConvNet needs kernel_size ≥ 1, pool_window ≥ 1 and "
                f"temperature > 0, got {kernel_size}, {pool_window}, {temperature}."
            )
        n = len(channels)
        padding = kernel_size // 2 if padding is None else padding
        self.paddings = tuple(int(p) for p in _per_layer(padding, n, "padding"))
        self.pools = tuple(bool(p) for p in _per_layer(pool, n, "pool"))
        self.input_shape = input_shape
        self.pool_window = int(pool_window)
        self.temperature = float(temperature)
        self.sigma = activation

        keys = jr.split(key, 2 * n + 2)
        self.kernels, self.biases = [], []
        c_in, h, w = input_shape
        for l, c_out in enumerate(channels):
            h, w = (s + 2 * self.paddings[l] - kernel_size + 1 for s in (h, w))
            if self.pools[l] and min(h, w) >= self.pool_window:
                h, w = (
                    pooled_size(s, self.pool_window, self.pool_window) for s in (h, w)
                )
            elif self.pools[l]:
                h = w = 0
            if min(h, w) < 1:
                raise ValueError(
                    f"HopfieldConvNet layer {l + 1} (conv_{l + 1}) leaves no pixels "
                    "for "
                    f"the input shape {input_shape}: use more padding, a smaller "
                    "kernel, or `pool=False` for some layers."
                )
            bound = gain / (c_in * kernel_size**2) ** 0.5
            shape = (c_out, c_in, kernel_size, kernel_size)
            self.kernels.append(jr.uniform(keys[2 * l], shape, dtype, -bound, bound))
            self.biases.append(
                jr.uniform(keys[2 * l + 1], (c_out,), dtype, -bound, bound)
            )
            c_in = c_out
        features = c_in * h * w
        bound = gain / features**0.5
        self.readout_weight = jr.uniform(
            keys[-2], (num_classes, features), dtype, -bound, bound
        )
        self.readout_bias = jr.uniform(keys[-1], (num_classes,), dtype, -bound, bound)

    @property
    def state_shapes(self) -> tuple[tuple[int, int, int], ...]:
        """The shape `(C_l, H_l, W_l)` of each layer's state."""
        shapes = []
        _, h, w = self.input_shape
        for l, kernel in enumerate(self.kernels):
            k = kernel.shape[-1]
            h, w = (s + 2 * self.paddings[l] - k + 1 for s in (h, w))
            if self.pools[l]:
                h, w = (
                    pooled_size(s, self.pool_window, self.pool_window) for s in (h, w)
                )
            shapes.append((kernel.shape[0], h, w))
        return tuple(shapes)

    def _check_input(self, x):
        if x.shape == self.input_shape:
            return
        c, h, w = self.input_shape
        if x.ndim == 3 and x.shape[-1] == c and x.shape[0] != c:
            hint = "images are channel-first here: use `x.transpose(2, 0, 1)`."
        elif x.ndim == 3 and x.shape[0] != c:
            hint = f"it has {x.shape[0]} channels, conv_1 takes {c}."
        elif x.ndim == 1 and x.size == c * h * w:
            hint = f"reshape flat inputs with `x.reshape({c}, {h}, {w})`."
        else:
            hint = "build the network with `input_shape` matching the data."
        raise ValueError(
            f"HopfieldConvNet layer 0 (the input of conv_1) expects one image of shape "
            f"{self.input_shape} (channels, height, width), got {x.shape}; {hint}"
        )

    def _check_state(self, u):
        shapes = self.state_shapes
        if len(u) != len(shapes):
            raise ValueError(
                f"HopfieldConvNet expects a state with {len(shapes)} layers, got "
                f"{len(u)}; start from `model.init_state(x)`."
            )
        for l, (u_l, shape) in enumerate(zip(u, shapes)):
            if u_l.shape != shape:
                raise ValueError(
                    f"HopfieldConvNet layer {l + 1} (output of conv_{l + 1}) expects a "
                    f"state of shape {shape}, got {u_l.shape}; start from "
                    "`model.init_state(x)`."
                )

    def conv(self, l: int, v: Array) -> Array:
        """`conv_{l+1}(v) + b_{l+1}` before pooling (0-based `l`), for one image `v`
        `(C, H, W)`; real or complex."""
        kernel = self.kernels[l]
        dtype = jnp.result_type(v.dtype, kernel.dtype)
        out = complex_conv(v, kernel, self.paddings[l])
        return out + self.biases[l].astype(dtype)[:, None, None]

    def feedforward(self, l: int, v: Array) -> Array:
        """`P_{l+1}(conv_{l+1}(v) + b_{l+1})`: the bottom-up input of layer `l + 1`."""
        out = self.conv(l, v)
        if self.pools[l]:
            out = softmax_pool(
                out, self.pool_window, self.pool_window, self.temperature
            )
        return out

    def init_state(self, x):
        self._check_input(x)
        return [jnp.zeros(shape, x.dtype) for shape in self.state_shapes]

    def primitive(self, u, x):
        self._check_input(x)
        self._check_state(u)
        below = [x] + list(u[:-1])
        return sum(
            jnp.sum(u_l * self.feedforward(l, v))
            for l, (u_l, v) in enumerate(zip(u, below))
        )

    def activation(self, a):
        return jax.tree_util.tree_map(self.sigma, a)

    def readout(self, u, x):
        self._check_state(u)
        return complex_matmul(self.readout_weight, jnp.ravel(u[-1])) + self.readout_bias
