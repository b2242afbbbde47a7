from .anderson import AndersonAcceleration as AndersonAcceleration
from .base import AbstractEquilibriumSolver as AbstractEquilibriumSolver
from .fixed_point import FixedPointIteration as FixedPointIteration
from .ode import SteadyStateODE as SteadyStateODE
from .root_find import RootFind as RootFind
