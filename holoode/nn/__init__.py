"""Ready-made networks."""

from ._convnet import HopfieldConvNet as HopfieldConvNet
from ._mlp import HopfieldMLP as HopfieldMLP
