"""Data: the embedded digits, the TFDS path on a locally built data set, batching
(determinism, resume, masks), the crop/flip augmentation and input validation."""

import os
import sys

import numpy as np
import pytest

import holoode.data as hd


try:
    import tensorflow_datasets as tfds
except ImportError:  # the `data` extra is part of the `test` extra
    tfds = None
needs_tfds = pytest.mark.skipif(tfds is None, reason='pip install "holoode[data]"')


def _indexed_source(n, shape=(2, 3, 1), num_classes=5):
    """Images whose every pixel equals the example's index, so that a batch tells
    which examples it holds."""
    images = np.broadcast_to(
        np.arange(n, dtype=np.float32)[:, None, None, None], (n, *shape)
    )
    labels = np.arange(n) % num_classes
    return hd.from_arrays(images, labels, num_classes=num_classes)


def _ids(batch):
    return batch.x[batch.mask, 0, 0, 0].astype(int)


# ---------------------------------------------------------------- embedded digits


def test_digits_is_the_fixed_sklearn_split():
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split

    raw = load_digits()
    parts = train_test_split(
        raw.images, raw.target, test_size=0.2, random_state=0, stratify=raw.target
    )
    expected = {"train": (parts[0], parts[2]), "test": (parts[1], parts[3])}
    for split, (images, labels) in expected.items():
        source = hd.load("digits", split)
        x, y = source.get(np.arange(len(source)))
        assert (source.name, source.split, source.num_classes) == ("digits", split, 10)
        assert source.image_shape == (8, 8, 1) and x.dtype == np.float32
        assert y.dtype == np.int32
        np.testing.assert_array_equal(x[..., 0], (images / 16).astype(np.float32))
        np.testing.assert_array_equal(y, labels)
    assert len(hd.load("digits", "train")) == 1437
    assert len(hd.load("digits", "test")) == 360
    with pytest.raises(ValueError, match="'train' and 'test'"):
        hd.load("digits", "validation")


# ---------------------------------------------------------------- TFDS, offline


@pytest.fixture(scope="module")
def tfds_dir(tmp_path_factory):
    data_dir = tmp_path_factory.mktemp("tfds")
    folder = hd.build_digits_tfds(data_dir)
    assert any(f.endswith(".array_record-00000-of-00001") for f in os.listdir(folder))
    return data_dir


@needs_tfds
def test_tfds_source_reads_back_the_digits(tfds_dir):
    for split in ("train", "test"):
        source = hd.load("holoode_digits", split, data_dir=tfds_dir)
        reference = hd.load("digits", split)
        assert isinstance(source, hd.TFDSSource)
        assert len(source) == len(reference) and source.num_classes == 10
        assert source.image_shape == (8, 8, 1)
        # Random access in any order, including repeats.
        idx = np.random.default_rng(0).integers(0, len(source), 100)
        for a, b in zip(source.get(idx), reference.get(idx)):
            assert a.dtype == b.dtype
            np.testing.assert_array_equal(a, b)
    # The same loader over both gives the same batches.
    tf_loader = hd.Loader(source, 64, seed=3, augment=True, drop_remainder=False)
    np_loader = hd.Loader(reference, 64, seed=3, augment=True, drop_remainder=False)
    for a, b in zip(tf_loader.epoch(1), np_loader.epoch(1), strict=True):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)


@needs_tfds
def test_tfds_split_errors(tfds_dir):
    with pytest.raises(ValueError, match=r"splits \['test', 'train'\]"):
        hd.load("holoode_digits", "validation", data_dir=tfds_dir)
    both = hd.load("holoode_digits", "train+test", data_dir=tfds_dir)
    assert len(both) == 1437 + 360
    head = hd.load("holoode_digits", "train[:10]", data_dir=tfds_dir)
    np.testing.assert_array_equal(
        head.get(np.arange(10))[1], hd.load("digits", "train").get(np.arange(10))[1]
    )


@needs_tfds
def test_missing_dataset_says_how_to_obtain_it(tmp_path):
    with pytest.raises(hd.DatasetNotFoundError) as info:
        hd.load("mnist", "train", data_dir=tmp_path)
    assert isinstance(info.value, FileNotFoundError)
    message = str(info.value)
    assert "tfds build mnist --data_dir DIR --file_format array_record" in message
    assert "pip install tensorflow tensorflow-datasets" in message
    assert str(tmp_path) in message

    with pytest.raises(hd.DatasetNotFoundError) as info:
        hd.load("imagenet32", "test", data_dir=tmp_path)
    message = str(info.value)
    for needed in (
        "Imagenet32_train_npz.zip",
        "Imagenet32_val_npz.zip",
        os.path.join(str(tmp_path), "downloads", "manual"),
        f"tfds build imagenet_resized/32x32 --data_dir {tmp_path}",
    ):
        assert needed in message

    with pytest.raises(hd.DatasetNotFoundError, match="no_such_set.*catalog"):
        hd.load("no_such_set", "train", data_dir=tmp_path)


@needs_tfds
def test_missing_tensorflow_datasets_package(monkeypatch, tmp_path):
    monkeypatch.setitem(sys.modules, "tensorflow_datasets", None)
    with pytest.raises(ImportError, match=r'pip install "holoode\[data\]"'):
        hd.load("mnist", "train", data_dir=tmp_path)
    assert len(hd.load("digits", "train")) == 1437


@needs_tfds
def test_tfds_normalisation_and_nan_rejection():
    features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Image(shape=(1, 2, 3), dtype=np.uint8),
            "label": tfds.features.ClassLabel(num_classes=10),
        }
    )
    image = np.array([[[0, 0, 0], [255, 255, 255]]], np.uint8)
    records = [{"image": image, "label": 7}]
    source = hd.TFDSSource("cifar10", "train", "cifar10", records, features, None)
    x, y = source.get(np.array([0]))
    mean = np.array([0.4914, 0.4822, 0.4465])
    std = 1.5 * np.array([0.2023, 0.1994, 0.2010])
    np.testing.assert_allclose(x[0, 0, 0], -mean / std, rtol=1e-6)
    np.testing.assert_allclose(x[0, 0, 1], (1 - mean) / std, rtol=1e-6)
    np.testing.assert_allclose(source.fill, -mean / std, rtol=1e-6)
    assert y.tolist() == [7] and y.dtype == np.int32

    float_features = tfds.features.FeaturesDict(
        {
            "image": tfds.features.Tensor(shape=(2, 2, 1), dtype=np.float32),
            "label": tfds.features.ClassLabel(num_classes=2),
        }
    )
    bad = np.zeros((2, 2, 1), np.float32)
    bad[1, 0, 0] = np.nan
    records = [{"image": np.zeros_like(bad), "label": 0}, {"image": bad, "label": 1}]
    source = hd.TFDSSource("floats", "train", "floats", records, float_features, None)
    np.testing.assert_array_equal(source.get(np.array([0]))[0], 0.0)
    with pytest.raises(ValueError, match="1 of 2 images.*first at index 1"):
        source.get(np.array([0, 1]))


# ---------------------------------------------------------------- from_arrays


def test_from_arrays_validates():
    images = np.random.default_rng(0).random((10, 4, 4))
    source = hd.from_arrays(images, np.arange(10) % 3)
    assert source.image_shape == (4, 4, 1) and source.num_classes == 3
    np.testing.assert_array_equal(
        source.get(np.array([2]))[0][0, ..., 0], images[2].astype(np.float32)
    )

    bad = images.copy()
    bad[3, 1, 1] = np.nan
    bad[7, 0, 2] = np.inf
    with pytest.raises(ValueError, match="2 of 10 images.*first at index 3"):
        hd.from_arrays(bad, np.zeros(10, int))
    with pytest.raises(ValueError, match=r"\[0, num_classes=3\).*labels\[4\] = 3"):
        hd.from_arrays(images, [0, 1, 2, 0, 3, 0, 1, 2, 0, 1], num_classes=3)
    with pytest.raises(ValueError, match=r"labels\[0\] = -1"):
        hd.from_arrays(images, -np.ones(10, int))
    with pytest.raises(ValueError, match=r"shape \(10,\)"):
        hd.from_arrays(images, np.zeros(9, int))
    with pytest.raises(ValueError, match="integer class labels"):
        hd.from_arrays(images, np.full(10, 0.5))
    with pytest.raises(ValueError, match=r"\(N, H, W, C\)"):
        hd.from_arrays(images.reshape(10, 16), np.zeros(10, int))
    with pytest.raises(IndexError, match=r"\[0, 10\)"):
        source.get(np.array([10]))


# ---------------------------------------------------------------- Loader


def test_loader_epochs_are_permutations_and_deterministic():
    source = _indexed_source(103)
    loader = hd.Loader(source, 10, seed=5)
    assert len(loader) == 10
    epoch0 = list(loader.epoch(0))
    ids = np.concatenate([_ids(b) for b in epoch0])
    assert len(ids) == 100 and len(set(ids)) == 100  # 3 dropped, none repeated
    assert all(b.mask.all() and b.x.shape == (10, 2, 3, 1) for b in epoch0)
    for b in epoch0:  # labels travel with their images
        np.testing.assert_array_equal(b.y, _ids(b) % 5)
    again = list(hd.Loader(source, 10, seed=5).epoch(0))
    assert all(np.array_equal(a.x, b.x) for a, b in zip(epoch0, again))
    other_epoch = np.concatenate([_ids(b) for b in loader.epoch(1)])
    other_seed = np.concatenate(
        [_ids(b) for b in hd.Loader(source, 10, seed=6).epoch(0)]
    )
    assert not np.array_equal(ids, other_epoch)
    assert not np.array_equal(ids, other_seed)
    unshuffled = hd.Loader(source, 10, shuffle=False)
    np.testing.assert_array_equal(_ids(next(unshuffled.epoch(4))), np.arange(10))


def test_loader_resume_reproduces_the_uninterrupted_run():
    source = hd.load("digits", "train")
    loader = hd.Loader(source, 32, seed=11, augment=True)
    full = list(loader.epoch(2))
    resumed = list(hd.Loader(source, 32, seed=11, augment=True).epoch(2, start=17))
    assert len(resumed) == len(full) - 17
    for a, b in zip(full[17:], resumed, strict=True):
        for u, v in zip(a, b):
            np.testing.assert_array_equal(u, v)
    assert list(loader.epoch(2, start=len(loader))) == []
    with pytest.raises(ValueError, match="start must be"):
        next(loader.epoch(0, start=len(loader) + 1))


def test_evaluation_batches_cover_every_example_once():
    source = _indexed_source(23)
    for shuffle in (False, True):
        loader = hd.Loader(source, 5, shuffle=shuffle, drop_remainder=False)
        batches = list(loader.epoch(0))
        assert len(loader) == len(batches) == 5
        assert all(
            b.x.shape == (5, 2, 3, 1) and b.y.shape == b.mask.shape == (5,)
            for b in batches
        )
        assert all(
            b.mask.dtype == np.bool_ and b.x.dtype == np.float32 for b in batches
        )
        ids = np.concatenate([_ids(b) for b in batches])
        np.testing.assert_array_equal(np.sort(ids), np.arange(23))
        assert batches[-1].mask.tolist() == [True, True, True, False, False]
        assert not batches[-1].x[~batches[-1].mask].any()
    with pytest.raises(ValueError, match="drop_remainder=False"):
        hd.Loader(source, 24)
    assert len(hd.Loader(source, 24, drop_remainder=False)) == 1


# ---------------------------------------------------------------- augmentation


def test_crop_flip_on_a_hand_made_image():
    image = np.arange(1.0, 10.0).reshape(1, 3, 3, 1)
    two = np.concatenate([image, 10 * image], axis=-1)  # two channels
    fill = np.array([-1.0, -2.0])
    same = hd.crop_flip(two, np.array([[1, 1]]), [False], padding=1, fill=fill)
    np.testing.assert_array_equal(same, two)
    # Window at the top-left corner: the image moves down-right by one pixel.
    shifted = hd.crop_flip(two, np.array([[0, 0]]), [False], padding=1, fill=fill)
    expected = np.empty_like(two)
    expected[...] = fill
    expected[:, 1:, 1:] = two[:, :2, :2]
    np.testing.assert_array_equal(shifted, expected)
    # Bottom-right window, mirrored.
    out = hd.crop_flip(image, np.array([[2, 2]]), [True], padding=1)
    np.testing.assert_array_equal(
        out[0, ..., 0], [[0.0, 6.0, 5.0], [0.0, 9.0, 8.0], [0.0, 0.0, 0.0]]
    )
    with pytest.raises(ValueError, match=r"\[0, 2\]"):
        hd.crop_flip(image, np.array([[3, 0]]), [False], padding=1)


def test_random_crop_flip_draws_every_crop_and_both_flips():
    images = np.random.default_rng(0).random((400, 6, 6, 1))
    out = hd.random_crop_flip(images, np.random.default_rng(1), padding=1)
    seen = set()
    for original, augmented in zip(images, out):
        matches = [
            (i, j, f)
            for i in range(3)
            for j in range(3)
            for f in (False, True)
            if np.array_equal(
                hd.crop_flip(original[None], np.array([[i, j]]), [f], padding=1)[0],
                augmented,
            )
        ]
        assert len(matches) == 1
        seen.add(matches[0])
    assert len(seen) == 18
