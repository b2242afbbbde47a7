from ._checkpoint import CheckpointError as CheckpointError
from ._config import (
    load_config as load_config,
    PRESETS as PRESETS,
    TrainConfig as TrainConfig,
)
from ._faults import TrainingStopped as TrainingStopped
from ._loop import train as train, TrainResult as TrainResult
from ._plot import plot_run as plot_run
