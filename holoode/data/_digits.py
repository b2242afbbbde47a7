"""The embedded default: scikit-learn's 8×8 handwritten digits."""

import functools

import numpy as np

from ._sources import ArraySource, check_finite, Source


@functools.lru_cache(maxsize=1)
def _digits_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    data = load_digits()
    x = (data.data / 16.0).astype(np.float32).reshape(-1, 8, 8, 1)
    y = data.target.astype(np.int32)
    x_train, x_test, y_train, y_test = train_test_split(
        x, y, test_size=0.2, random_state=0, stratify=y
    )
    check_finite(x_train, "digits/train")
    check_finite(x_test, "digits/test")
    for a in (x_train, x_test, y_train, y_test):
        a.flags.writeable = False
    return {"train": (x_train, y_train), "test": (x_test, y_test)}


def load_digits(split: str) -> Source:
    """scikit-learn's 8×8 digits (1,797 real handwritten digits, shipped with
    scikit-learn, so no download), images `(8, 8, 1)` scaled by `x/16` to
    `[0, 1]`, 10 classes.

    The split is fixed: `train_test_split(x, y, test_size=0.2, random_state=0,
    stratify=y)`, giving 1,437 training and 360 test examples.
    """
    if split not in ("train", "test"):
        raise ValueError(
            f"The digits data set has splits 'train' and 'test', got {split!r}."
        )
    x, y = _digits_split()[split]
    return ArraySource(x, y, 10, "digits", split)
