"""holoode: exact gradients for energy-based networks by holomorphic equilibrium
propagation, in JAX."""

from . import data as data, nn as nn
from ._activations import (
    hard_tanh as hard_tanh,
    identity as identity,
    shifted_sigmoid as shifted_sigmoid,
    softplus as softplus,
)
from ._circle import (
    circle_points as circle_points,
    harmonic_weights as harmonic_weights,
)
from ._costs import (
    AbstractCost as AbstractCost,
    CrossEntropy as CrossEntropy,
    SquaredError as SquaredError,
)
from ._equilibrium import (
    AbstractEquilibriumSolver as AbstractEquilibriumSolver,
    AndersonAcceleration as AndersonAcceleration,
    FixedPointIteration as FixedPointIteration,
    RootFind as RootFind,
    SteadyStateODE as SteadyStateODE,
)
from ._equilibrium.batched import (
    initial_states as initial_states,
    solve_batch as solve_batch,
    solve_free as solve_free,
    solve_points as solve_points,
)
from ._gradient import gradient as gradient
from ._holomorphy import (
    check_holomorphic as check_holomorphic,
    NotHolomorphicError as NotHolomorphicError,
)
from ._learning import (
    AbstractLearningRule as AbstractLearningRule,
    BackpropThroughTime as BackpropThroughTime,
    ClassicEP as ClassicEP,
    ContinuousHEP as ContinuousHEP,
    HolomorphicEP as HolomorphicEP,
    ImplicitDifferentiation as ImplicitDifferentiation,
)
from ._model import (
    AbstractEnergyModel as AbstractEnergyModel,
    AbstractEquilibriumModel as AbstractEquilibriumModel,
    AbstractPrimitiveModel as AbstractPrimitiveModel,
    learning_signal as learning_signal,
    parameters as parameters,
)
from ._noise import NeuronNoise as NeuronNoise
from ._online import online_plasticity as online_plasticity
from ._pooling import softmax_pool as softmax_pool
from ._relaxation import relaxation_time as relaxation_time
from ._solution import Equilibrium as Equilibrium, Info as Info, RESULTS as RESULTS
from ._stability import (
    beta_grid as beta_grid,
    plot_stability_map as plot_stability_map,
    safe_beta as safe_beta,
    stability_map as stability_map,
    StabilityMap as StabilityMap,
)
from ._training import (
    CheckpointError as CheckpointError,
    load_config as load_config,
    plot_run as plot_run,
    PRESETS as PRESETS,
    train as train,
    TrainConfig as TrainConfig,
    TrainingStopped as TrainingStopped,
    TrainResult as TrainResult,
)


__version__ = "0.1.0"
