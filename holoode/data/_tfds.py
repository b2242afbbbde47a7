"""TensorFlow Datasets sources, read from ArrayRecord files without TensorFlow."""

import os

import numpy as np

from ._sources import check_finite, Source


class DatasetNotFoundError(FileNotFoundError):
    """A data set is not prepared where [`holoode.data.load`][] looks for it; the
    message says how to obtain it."""


# Per data set: (TFDS name, pixel scale, per-channel mean, per-channel std). The
# mean/std are those of the paper's code (Laborieux & Zenke 2022,
# `utils/data.py` of `holomorphic_eqprop`): the usual CIFAR-10 statistics
# mean (0.4914, 0.4822, 0.4465), std (0.2023, 0.1994, 0.2010) for both CIFAR
# sets and torchvision's ImageNet statistics mean (0.485, 0.456, 0.406), std
# (0.229, 0.224, 0.225) for ImageNet32, each std multiplied by 1.5.
_CIFAR = ((0.4914, 0.4822, 0.4465), tuple(1.5 * s for s in (0.2023, 0.1994, 0.2010)))
_IMAGENET = ((0.485, 0.456, 0.406), tuple(1.5 * s for s in (0.229, 0.224, 0.225)))
_KNOWN = {
    "mnist": ("mnist", 1 / 255, None, None),
    "fashion_mnist": ("fashion_mnist", 1 / 255, None, None),
    "cifar10": ("cifar10", 1 / 255, *_CIFAR),
    "cifar100": ("cifar100", 1 / 255, *_CIFAR),
    "imagenet32": ("imagenet_resized/32x32", 1 / 255, *_IMAGENET),
    "imagenet_resized/32x32": ("imagenet_resized/32x32", 1 / 255, *_IMAGENET),
    # The digits written by `build_digits_tfds` keep their 0..16 grey levels.
    "holoode_digits": ("holoode_digits", 1 / 16, None, None),
}
_IMAGENET_NAMES = ("imagenet32", "imagenet_resized/32x32")


def _import_tfds():
    try:
        import tensorflow_datasets as tfds
    except ImportError as e:
        raise ImportError(
            "Loading TensorFlow Datasets data sets needs the `tensorflow-datasets` "
            'and `array-record` packages: `pip install "holoode[data]"`. The '
            "embedded `holoode.data.load('digits', split)` needs neither."
        ) from e
    return tfds


def _how_to_obtain(name: str, tfds_name: str, data_dir: str) -> str:
    build = f"tfds build {tfds_name} --data_dir {data_dir} --file_format array_record"
    if name in _IMAGENET_NAMES:
        return (
            f"ImageNet 32×32 ('{tfds_name}') is not prepared under {data_dir}. It "
            "cannot be downloaded automatically. Download `Imagenet32_train_npz.zip`"
            " and `Imagenet32_val_npz.zip` (image-net.org → Download → "
            "'Downsampled ImageNet 32x32', needs an ImageNet account), put both "
            f"zip files in {os.path.join(data_dir, 'downloads', 'manual')}/, then "
            "run, once, on a machine with TensorFlow "
            f"(`pip install tensorflow tensorflow-datasets`):\n    {build}\n"
            "and pass `data_dir=` that folder (or copy it here)."
        )
    return (
        f"TFDS data set '{tfds_name}' is not prepared under {data_dir}. On a "
        "machine with internet access run, once:\n"
        "    pip install tensorflow tensorflow-datasets\n"
        f"    tfds build {tfds_name} --data_dir DIR --file_format array_record\n"
        f"then copy DIR/{tfds_name.split(':')[0]} to "
        f"{os.path.join(data_dir, tfds_name.split(':')[0])} on this machine "
        "(or pass `data_dir=DIR`). Training reads the ArrayRecord files without "
        "TensorFlow."
    )


class TFDSSource(Source):
    """A split of a prepared TFDS image classification data set, read lazily
    (random access over ArrayRecord files via `tfds.data_source`).

    Images are decoded on demand and normalised as
    `(pixel · scale − mean) / std` per channel:

    - `mnist`, `fashion_mnist`: scale 1/255, no mean/std (values in `[0, 1]`);
    - `cifar10`, `cifar100`: scale 1/255, mean `(0.4914, 0.4822, 0.4465)`,
      std `1.5 × (0.2023, 0.1994, 0.2010)`;
    - `imagenet32`: scale 1/255, mean `(0.485, 0.456, 0.406)`,
      std `1.5 × (0.229, 0.224, 0.225)`;
    - `holoode_digits` (see [`holoode.data.build_digits_tfds`][]): scale 1/16;
    - any other name: scale 1/255 for integer images, no mean/std.

    The CIFAR and ImageNet constants are those of the paper's code (Laborieux &
    Zenke, 2022): the commonly quoted CIFAR-10 statistics (used for CIFAR-100
    too) and torchvision's ImageNet statistics, with the standard deviations
    enlarged 1.5× so that inputs stay in a range the bounded activations handle.
    Images stored as floats are used as stored (scale 1).

    `fill` is the normalised value of a black pixel, per channel: what the
    padding of the CIFAR augmentation uses, as in the paper (pad, then
    normalise).
    """

    def __init__(self, name, split, tfds_name, data_source, features, supervised):
        image_key, label_key = supervised or ("image", "label")
        if image_key not in features or label_key not in features:
            raise ValueError(
                f"TFDS data set '{tfds_name}' has features {sorted(features)}; "
                "holoode.data needs an image classification set with "
                "`image` and `label` features (or supervised keys)."
            )
        image, label = features[image_key], features[label_key]
        shape = tuple(image.shape)
        if len(shape) != 3 or None in shape:
            raise ValueError(
                f"TFDS data set '{tfds_name}' has images of shape {shape}; "
                "holoode.data needs a fixed (H, W, C) shape."
            )
        num_classes = getattr(label, "num_classes", None)
        if not num_classes:
            raise ValueError(
                f"TFDS data set '{tfds_name}' has no ClassLabel `{label_key}` "
                "feature, so the number of classes is unknown."
            )
        self.name, self.split = name, split
        self.image_shape, self.num_classes = shape, int(num_classes)
        self._source = data_source
        self._keys = (image_key, label_key)
        integer = np.issubdtype(np.dtype(image.np_dtype), np.integer)
        _, scale, mean, std = _KNOWN.get(name, (None, 1 / 255, None, None))
        self._scale = np.float32(scale if integer else 1.0)
        channels = shape[-1]
        self._mean = np.zeros(channels, np.float32) if mean is None else mean
        self._std = np.ones(channels, np.float32) if std is None else std
        self._mean = np.broadcast_to(np.asarray(self._mean, np.float32), channels)
        self._std = np.broadcast_to(np.asarray(self._std, np.float32), channels)
        self.fill = -self._mean / self._std

    def __len__(self) -> int:
        return len(self._source)

    def get(self, indices):
        indices = self._check_indices(indices)
        image_key, label_key = self._keys
        if len(indices) == 0:
            return (
                np.zeros((0, *self.image_shape), np.float32),
                np.zeros(0, np.int32),
            )
        keys = indices.tolist()
        getitems = getattr(self._source, "__getitems__", None)
        records = getitems(keys) if getitems else [self._source[k] for k in keys]
        images = np.stack([r[image_key] for r in records]).astype(np.float32)
        labels = np.array([r[label_key] for r in records], np.int32)
        images = (images * self._scale - self._mean) / self._std
        check_finite(images, f"{self.name!r}/{self.split!r}")
        return images.astype(np.float32, copy=False), labels


def load_tfds(name: str, split: str, *, data_dir=None) -> Source:
    """`holoode.data.load` for TFDS names (see its docstring)."""
    tfds = _import_tfds()
    from tensorflow_datasets.core import registered

    tfds_name = _KNOWN[name][0] if name in _KNOWN else name
    if name in _IMAGENET_NAMES and split == "test":
        split = "validation"
    data_dir = None if data_dir is None else os.fspath(data_dir)
    shown_dir = data_dir or os.path.expanduser(tfds.core.constants.DATA_DIR)
    try:
        builder = tfds.builder(tfds_name, data_dir=data_dir)
    except registered.DatasetNotFoundError as e:
        raise DatasetNotFoundError(
            f"No data set named {name!r} is registered in TensorFlow Datasets or "
            f"prepared under {shown_dir}. Known names: "
            f"{', '.join(('digits',) + tuple(k for k in _KNOWN if '/' not in k))}, "
            "or any TFDS catalogue name "
            "(https://www.tensorflow.org/datasets/catalog); check the spelling "
            "and `data_dir=`."
        ) from e
    if not builder.is_prepared():
        raise DatasetNotFoundError(_how_to_obtain(name, tfds_name, shown_dir))
    splits = sorted(builder.info.splits)
    # A TFDS split string may slice and add splits: "train[:90%]+test".
    if any(part.split("[")[0].strip() not in splits for part in split.split("+")):
        raise ValueError(f"Data set {name!r} has splits {splits}, got split={split!r}.")
    try:
        source = tfds.data_source(
            tfds_name, split=split, data_dir=data_dir, download=False
        )
    except NotImplementedError as e:
        raise DatasetNotFoundError(
            f"'{tfds_name}' under {builder.data_dir} is stored as "
            f"{builder.info.file_format.value}, which has no random access. "
            "Rebuild it with `--file_format array_record`:\n    "
            f"tfds build {tfds_name} --data_dir DIR --file_format array_record"
        ) from e
    return TFDSSource(
        name,
        split,
        tfds_name,
        source,
        builder.info.features,
        builder.info.supervised_keys,
    )


def build_digits_tfds(data_dir) -> str:
    """Write the embedded 8×8 digits as a local TFDS data set, `holoode_digits`.

    The result is a real prepared TFDS data set (ArrayRecord files, PNG-encoded
    `(8, 8, 1)` uint8 images with grey levels 0..16, a 10-class `label`), with the
    same `train`/`test` split and order as `holoode.data.load("digits", ...)`.
    It is written without TensorFlow, and read back with
    `holoode.data.load("holoode_digits", split, data_dir=data_dir)`, whose
    values then equal the embedded digits exactly. Use it to try the TFDS code
    path offline.

    **Arguments:**

    - `data_dir`: the TFDS data directory to write into.

    **Returns:**

    The folder of the prepared data set.
    """
    _import_tfds()
    from ._digits_tfds import HoloodeDigits

    builder = HoloodeDigits(data_dir=os.fspath(data_dir), file_format="array_record")
    builder.download_and_prepare()
    return os.fspath(builder.data_dir)
