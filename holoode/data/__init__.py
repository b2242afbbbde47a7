"""Data: the embedded digits, MNIST from the package index, TensorFlow Datasets
pipelines, batching."""

from ._augment import crop_flip as crop_flip, random_crop_flip as random_crop_flip
from ._load import DATASETS as DATASETS, load as load
from ._loader import Batch as Batch, Loader as Loader
from ._mnist import DataFetchError as DataFetchError, fetch as fetch
from ._sources import (
    ArraySource as ArraySource,
    from_arrays as from_arrays,
    Source as Source,
)
from ._tfds import (
    build_digits_tfds as build_digits_tfds,
    DatasetNotFoundError as DatasetNotFoundError,
    TFDSSource as TFDSSource,
)
