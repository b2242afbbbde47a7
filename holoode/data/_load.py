"""`load`: one entry point for the embedded digits and TensorFlow Datasets."""

from ._digits import load_digits
from ._sources import Source


DATASETS = ("digits", "mnist", "fashion_mnist", "cifar10", "cifar100", "imagenet32")


def load(name: str, split: str, *, data_dir=None) -> Source:
    """Open a data set split as a random-access [`holoode.data.Source`][].

    - `"digits"`: scikit-learn's 8×8 handwritten digits, shipped inside an
      installed package (no download, no TensorFlow Datasets needed); `x/16`
      scaled to `[0, 1]`; fixed stratified 80/20 split (`random_state=0`).
    - `"mnist"`, `"fashion_mnist"`, `"cifar10"`, `"cifar100"`, `"imagenet32"`
      (= TFDS `imagenet_resized/32x32`), or any other TFDS image
      classification name: read lazily from prepared ArrayRecord files with
      `tfds.data_source` (no TensorFlow needed at training time). See
      [`holoode.data.TFDSSource`][] for the normalisation of each.

    **Arguments:**

    - `name`: one of `holoode.data.DATASETS` or a TFDS name such as
      `"emnist/digits"`.
    - `split`: `"train"` or `"test"` (`"test"` reads ImageNet32's `validation`
      split); for raw TFDS names, any TFDS split string.
    - `data_dir`: where prepared TFDS data sets live (default: TFDS's own,
      `$TFDS_DATA_DIR` or `~/tensorflow_datasets`). Ignored for `"digits"`.

    **Returns:**

    A `Source`.

    **Raises:**

    - [`holoode.data.DatasetNotFoundError`][] if the data set is not prepared
      under `data_dir`; its message says how to obtain it.
    - `ImportError` if `tensorflow-datasets` is not installed
      (`pip install "holoode[data]"`).
    """
    if not isinstance(name, str) or not isinstance(split, str):
        raise TypeError(
            f"load(name, split) takes strings, got {name!r} and {split!r}; e.g. "
            "load('digits', 'train')."
        )
    if name == "digits":
        return load_digits(split)
    from ._tfds import load_tfds

    return load_tfds(name, split, data_dir=data_dir)
