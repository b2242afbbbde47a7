"""Products of real weights with complex states as real products.

Holomorphic EP evaluates the network at complex states while its weights stay
real. XLA promotes such a product to a complex one, which costs four real
products (or three, for convolutions) and, on CPU, runs slower still; the
product of a real matrix with a complex vector is two real products. Both
helpers are exactly the bilinear (so holomorphic) complex product, and
differentiate as one.
"""

import jax
import jax.numpy as jnp
from jaxtyping import Array


def complex_matmul(w: Array, v: Array) -> Array:
    """`w @ v`; for real `w` and complex `v` as `w @ Re v + i w @ Im v`."""
    if not jnp.iscomplexobj(v) or jnp.iscomplexobj(w):
        return w @ v
    rdtype = jnp.finfo(jnp.result_type(w.dtype, v.dtype)).dtype
    w = w.astype(rdtype)
    return jax.lax.complex(w @ v.real.astype(rdtype), w @ v.imag.astype(rdtype))


def _real_conv(lhs: Array, rhs: Array, padding: int) -> Array:
    return jax.lax.conv_general_dilated(
        lhs,
        rhs,
        window_strides=(1, 1),
        padding=((padding, padding), (padding, padding)),
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
    )


def complex_conv(v: Array, kernel: Array, padding: int) -> Array:
    """The convolution of one image `v` `(C, H, W)` with `kernel` `(O, C, k, k)`,
    either or both complex, as a single real convolution.

    XLA lowers a complex convolution to three real ones (Gauss's trick), and each
    adds to compile time, which dominates on small networks. Here the real and
    imaginary parts of the image go along the batch axis and those of the kernel
    along the output channels, so one real convolution yields all four cross
    terms. The result is exactly the (bilinear, so holomorphic) complex
    convolution; a real kernel with a complex image, the case of the nudged
    phases, costs one convolution of batch 2.
    """
    rdtype = jnp.finfo(jnp.result_type(v.dtype, kernel.dtype)).dtype
    if not jnp.iscomplexobj(v) and not jnp.iscomplexobj(kernel):
        return _real_conv(v[None].astype(rdtype), kernel.astype(rdtype), padding)[0]
    lhs = jnp.stack([jnp.real(v), jnp.imag(v)]) if jnp.iscomplexobj(v) else v[None]
    lhs = lhs.astype(rdtype)
    if not jnp.iscomplexobj(kernel):
        out = _real_conv(lhs, kernel.astype(rdtype), padding)
        return jax.lax.complex(out[0], out[1])
    o = kernel.shape[0]
    rhs = jnp.concatenate([jnp.real(kernel), jnp.imag(kernel)]).astype(rdtype)
    out = _real_conv(lhs, rhs, padding)
    if not jnp.iscomplexobj(v):
        return jax.lax.complex(out[0, :o], out[0, o:])
    real = out[0, :o] - out[1, o:]
    imag = out[0, o:] + out[1, :o]
    return jax.lax.complex(real, imag)
