"""Ready-made networks."""

from ._mlp import HopfieldMLP as HopfieldMLP
