"""Small data sets as numpy arrays: scikit-learn's 8x8 digits (offline), MNIST / Fashion-MNIST, and the adding
problem for recurrent networks (generated).

Images are float32 NHWC in [0, 1], labels int32; sequences are float32 (N, T, features) with float32 targets.
``load_digits`` needs no network: the data ship inside scikit-learn. ``load_mnist`` reads the four standard IDX
files (gzip-compressed or not) from a cache directory and, when they are missing and ``download=True``, fetches
them from a mirror and checks each file's SHA-256 before it is moved into place. Digests are checked at download
time only; files already in the cache are trusted, but their IDX headers and lengths are always validated.
"""

from __future__ import annotations

import gzip
import hashlib
import http.client
import os
import struct
import tempfile
import urllib.request
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import numpy as np

__all__ = ["Dataset", "adding_problem", "load_digits", "load_mnist", "recall_task"]

# Injectable for tests: they replace it with a fake so that no test touches the network.
_urlopen = urllib.request.urlopen
_TIMEOUT_S = 60.0
_CHUNK_BYTES = 1 << 16
_ENV_VAR = "TAMING_GRADIENTS_DATA"

_IMAGES_MAGIC = 0x00000803  # unsigned bytes, 3 dimensions (count, rows, cols)
_LABELS_MAGIC = 0x00000801  # unsigned bytes, 1 dimension (count)
_SIDE = 28
_FILES = {
    "train_images": "train-images-idx3-ubyte.gz",
    "train_labels": "train-labels-idx1-ubyte.gz",
    "test_images": "t10k-images-idx3-ubyte.gz",
    "test_labels": "t10k-labels-idx1-ubyte.gz",
}


class _Source(NamedTuple):
    mirrors: tuple[str, ...]  # base URLs, tried in order; each ends with "/"
    sha256: dict[str, str]  # file name -> SHA-256 of the .gz file


# SHA-256 digests as listed in tensorflow/datasets (tensorflow_datasets/url_checksums/mnist.txt and
# fashion_mnist.txt), the same values other public loaders (e.g. Flux's FashionMNIST) pin.
# Mirrors: PyTorch's S3 copy (torchvision) and Google's CVDF copy (TFDS) for MNIST; Zalando's own S3
# site (torchvision, TFDS) and GitHub repository for Fashion-MNIST.
_SOURCES: dict[str, _Source] = {
    "mnist": _Source(
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        sha256={
            "train-images-idx3-ubyte.gz": "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609",
            "train-labels-idx1-ubyte.gz": "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c",
            "t10k-images-idx3-ubyte.gz": "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6",
            "t10k-labels-idx1-ubyte.gz": "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6",
        },
    ),
    "fashion": _Source(
        mirrors=(
            "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/",
            "https://github.com/zalandoresearch/fashion-mnist/raw/master/data/fashion/",
        ),
        sha256={
            "train-images-idx3-ubyte.gz": "3aede38d61863908ad78613f6a32ed271626dd12800ba2636569512369268a84",
            "train-labels-idx1-ubyte.gz": "a04f17134ac03560a47e3764e11b92fc97de4d1bfaf8ba1a3aa29af54cc90845",
            "t10k-images-idx3-ubyte.gz": "346e55b948d973a97e58d2351dde16a484bd415d4595297633bb08f03db6a073",
            "t10k-labels-idx1-ubyte.gz": "67da17c76eaffca5446c3361aaab5c3cd6d1c2608764d35dfb1850b086bf8dd5",
        },
    ),
}


@dataclass(frozen=True, eq=False)
class Dataset:
    """A train/test split. Inputs float32: images NHWC in [0, 1], or sequences (N, T, features). Targets: int32
    labels in [0, num_classes) (the loss is softmax cross-entropy), or float32 values (the loss is the mean squared
    error, and `num_classes` is the number of outputs, 1)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    num_classes: int

    @property
    def image_shape(self) -> tuple[int, ...]:
        """Shape of one input: (H, W, C) for an image, (T, features) for a sequence; what `ModelConfig.build` takes."""
        return tuple(int(n) for n in self.x_train.shape[1:])

    @property
    def regression(self) -> bool:
        """Float targets (mean squared error) rather than integer labels (cross-entropy)."""
        return np.issubdtype(np.asarray(self.y_train).dtype, np.floating)


def adding_problem(length: int, n_train: int = 2000, n_test: int = 500, seed: int = 0) -> Dataset:
    """The adding problem (Hochreiter & Schmidhuber 1997), in the form of Le, Jaitly & Hinton (2015): a sequence of
    `length` steps, each (a number uniform in [0, 1], a marker); exactly two markers are 1, one in the first half
    and one in the second; the target is the sum of the two marked numbers. Predicting 1 whatever the input scores
    a mean squared error of 1/6 (the variance of the sum of two uniforms); remembering only the second marked
    number, then adding 1/2, scores 1/12; below 1/12, the first marked number has been carried across the gap."""
    if not isinstance(length, int) or length < 2:
        raise ValueError(f"length must be an integer >= 2, got {length!r}")
    for name, value in [("n_train", n_train), ("n_test", n_test)]:
        if not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    if seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    values = rng.uniform(0, 1, (n, length)).astype(np.float32)
    half = length // 2
    first, second = rng.integers(0, half, n), rng.integers(half, length, n)
    markers = np.zeros((n, length), np.float32)
    markers[np.arange(n), first] = markers[np.arange(n), second] = 1
    x = np.stack([values, markers], axis=-1)
    y = (values[np.arange(n), first] + values[np.arange(n), second]).astype(np.float32)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=1)


def recall_task(pairs: int = 4, keys: int = 8, values: int = 8, n_train: int = 4000, n_test: int = 500, seed: int = 0):
    """Associative recall: `pairs` (key, value) tokens, then one of the keys again; the answer is its value.

    A sequence reads k1 v1 k2 v2 ... kn vn q, one-hot over `keys + values` symbols (keys are 0 .. keys - 1, values
    the rest; the keys of a sequence are distinct). Every position is labelled with the answer (the encoder sees
    the whole sequence). One attention layer cannot solve it: a value's position must first learn which key stood
    before it, and only then can the query find it, so it needs two layers (an induction-head circuit, Olsson et
    al. 2022). Generated, no download.
    """
    for name, value, least in [
        ("pairs", pairs, 1),
        ("values", values, 2),
        ("n_train", n_train, 1),
        ("n_test", n_test, 1),
    ]:
        if not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an integer >= {least}, got {value!r}")
    if not isinstance(keys, int) or keys < pairs:
        raise ValueError(f"keys must be an integer >= pairs ({pairs}), got {keys!r}")
    if seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    rng = np.random.default_rng(seed)
    n = n_train + n_test
    k = np.argsort(rng.random((n, keys)), axis=1)[:, :pairs]  # distinct keys per sequence
    v = keys + rng.integers(0, values, (n, pairs))
    asked = rng.integers(0, pairs, n)
    tokens = np.concatenate([np.stack([k, v], axis=2).reshape(n, 2 * pairs), k[np.arange(n), asked, None]], axis=1)
    x = np.eye(keys + values, dtype=np.float32)[tokens]
    y = np.repeat(v[np.arange(n), asked][:, None], 2 * pairs + 1, axis=1).astype(np.int32)
    return Dataset(x[:n_train], y[:n_train], x[n_train:], y[n_train:], num_classes=keys + values)


def load_digits(seed: int = 0, test_fraction: float = 0.2) -> Dataset:
    """scikit-learn's 1,797 8x8 digits, split at random (seeded) into train and test; no download."""
    if not 0.0 < test_fraction < 1.0:
        raise ValueError(f"test_fraction must be in the open interval (0, 1), got {test_fraction!r}")
    if seed < 0:
        raise ValueError(f"seed must be an integer >= 0, got {seed!r}")
    from sklearn.datasets import load_digits as sklearn_digits  # deferred: scikit-learn imports slowly

    digits = sklearn_digits()
    images = (digits.images.astype(np.float32) / np.float32(16.0))[..., None]
    labels = digits.target.astype(np.int32)
    n = len(labels)
    n_test = min(max(round(n * test_fraction), 1), n - 1)
    order = np.random.default_rng(seed).permutation(n)
    test, train = order[:n_test], order[n_test:]
    return Dataset(images[train], labels[train], images[test], labels[test], num_classes=10)


def load_mnist(root: str | os.PathLike | None = None, kind: str = "mnist", download: bool = True) -> Dataset:
    """MNIST or Fashion-MNIST (kind "mnist" / "fashion"): 60,000 train and 10,000 test 28x28 images.

    The cache directory is ``root`` if given, else ``$TAMING_GRADIENTS_DATA/<kind>``, else
    ``~/.cache/taming-gradients/<kind>``. Missing files are downloaded when ``download`` is true.
    """
    if kind not in _SOURCES:
        raise ValueError(f"kind must be one of {sorted(_SOURCES)}, got {kind!r}")
    directory = _cache_dir(root, kind)
    missing = [name for name in _FILES.values() if _find(directory, name) is None]
    if missing:
        _fetch(directory, kind, missing, download)
    x_train = _read_images(_find(directory, _FILES["train_images"]))
    y_train = _read_labels(_find(directory, _FILES["train_labels"]), len(x_train))
    x_test = _read_images(_find(directory, _FILES["test_images"]))
    y_test = _read_labels(_find(directory, _FILES["test_labels"]), len(x_test))
    return Dataset(x_train, y_train, x_test, y_test, num_classes=10)


def _cache_dir(root: str | os.PathLike | None, kind: str) -> Path:
    """The directory holding (or about to hold) the four IDX files of ``kind``."""
    if root is not None:
        return Path(root).expanduser()
    if os.environ.get(_ENV_VAR):
        return Path(os.environ[_ENV_VAR]).expanduser() / kind
    return Path("~/.cache/taming-gradients").expanduser() / kind


def _find(directory: Path, gz_name: str) -> Path | None:
    """The file ``gz_name`` in ``directory``, or its uncompressed twin (no ".gz"), or None."""
    for path in (directory / gz_name, directory / gz_name.removesuffix(".gz")):
        if path.is_file():
            return path
    return None


def _fetch(directory: Path, kind: str, missing: list[str], download: bool) -> None:
    """Download the ``missing`` files into ``directory``; FileNotFoundError if that is off or fails."""
    hint = (
        f"Place the four files {', '.join(_FILES.values())} (gzip-compressed or not) in {directory}, "
        "or call load_mnist(..., download=True) on a machine with network access."
    )
    if not download:
        raise FileNotFoundError(f"{kind} files missing from {directory}: {', '.join(missing)}. {hint}")
    source = _SOURCES[kind]
    for name in missing:
        errors = []
        for mirror in source.mirrors:
            try:
                _download(mirror + name, directory / name, source.sha256[name])
                break
            except (OSError, http.client.HTTPException) as error:  # URLError is an OSError
                errors.append(f"{mirror + name}: {error!r}")
        else:
            raise FileNotFoundError(
                f"could not download {name} into {directory} ({'; '.join(errors)}). "
                f"Still missing: {', '.join(n for n in missing if _find(directory, n) is None)}. {hint}"
            )


def _download(url: str, dest: str | os.PathLike, expected_digest: str) -> None:
    """Stream ``url`` to a temporary file beside ``dest``, check its SHA-256, then rename it atomically."""
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)
    tmp = tempfile.NamedTemporaryFile(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part", delete=False)
    tmp_path = Path(tmp.name)
    try:
        digest = hashlib.sha256()
        with tmp, _urlopen(url, timeout=_TIMEOUT_S) as response:
            while chunk := response.read(_CHUNK_BYTES):
                digest.update(chunk)
                tmp.write(chunk)
        if digest.hexdigest() != expected_digest.lower():
            raise ValueError(
                f"SHA-256 mismatch for {dest.name} from {url}: expected {expected_digest}, "
                f"got {digest.hexdigest()}; the file was discarded"
            )
        os.replace(tmp_path, dest)
    finally:
        tmp_path.unlink(missing_ok=True)  # a no-op after a successful os.replace


def _read_idx(path: Path, magic: int) -> tuple[tuple[int, ...], np.ndarray]:
    """Dimensions and flat uint8 payload of an IDX file (gzip or raw); ValueError naming it if corrupt."""
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as error:
            raise ValueError(f"{path.name}: corrupt gzip data ({error})") from error
    ndim = magic & 0xFF
    header_bytes = 4 * (1 + ndim)
    if len(raw) < header_bytes:
        raise ValueError(f"{path.name}: too short for an IDX header ({len(raw)} bytes)")
    (found,) = struct.unpack(">I", raw[:4])
    if found != magic:
        raise ValueError(f"{path.name}: bad IDX magic number 0x{found:08x}, expected 0x{magic:08x}")
    dims = struct.unpack(f">{ndim}I", raw[4:header_bytes])
    expected = header_bytes + int(np.prod(dims, dtype=np.int64))
    if len(raw) != expected:
        raise ValueError(f"{path.name}: {len(raw)} bytes, but its header {dims} implies {expected}")
    return dims, np.frombuffer(raw, dtype=np.uint8, offset=header_bytes)


def _read_images(path: Path) -> np.ndarray:
    """Images of an IDX3 file as float32 (N, 28, 28, 1) in [0, 1]."""
    (count, rows, cols), pixels = _read_idx(path, _IMAGES_MAGIC)
    if (rows, cols) != (_SIDE, _SIDE):
        raise ValueError(f"{path.name}: images are {rows}x{cols}, expected {_SIDE}x{_SIDE}")
    return (pixels.astype(np.float32) / np.float32(255.0)).reshape(count, rows, cols, 1)


def _read_labels(path: Path, count: int) -> np.ndarray:
    """Labels of an IDX1 file as int32, checked against the image count and the 10 classes."""
    (found,), labels = _read_idx(path, _LABELS_MAGIC)
    if found != count:
        raise ValueError(f"{path.name}: {found} labels for {count} images")
    if found and labels.max() > 9:
        raise ValueError(f"{path.name}: label {labels.max()} outside 0..9")
    return labels.astype(np.int32)
