from .base import AbstractLearningRule as AbstractLearningRule
from .bptt import BackpropThroughTime as BackpropThroughTime
from .classic import ClassicEP as ClassicEP
from .continuous import ContinuousHEP as ContinuousHEP
from .holomorphic import HolomorphicEP as HolomorphicEP
from .implicit import ImplicitDifferentiation as ImplicitDifferentiation
