"""Tests for helpers/data.py: the digits split, the IDX reader and the (faked) download path; no network."""

from __future__ import annotations

import gzip
import hashlib
import http.client
import io
import re
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest

from helpers import data

N_TRAIN, N_TEST = 5, 3
NAMES = list(data._FILES.values())


@pytest.fixture(autouse=True)
def no_network(monkeypatch):
    """Any real download attempt fails the test; tests that need one install their own fake."""

    def refuse(url, *args, **kwargs):
        raise AssertionError(f"test tried to open {url}")

    monkeypatch.setattr(data, "_urlopen", refuse)
    monkeypatch.delenv(data._ENV_VAR, raising=False)


# --- load_digits -------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits():
    return data.load_digits(seed=0)


def test_digits_shapes_dtypes_and_ranges(digits):
    assert digits.x_train.shape == (1797 - 359, 8, 8, 1) and digits.x_test.shape == (359, 8, 8, 1)
    assert digits.y_train.shape == (1797 - 359,) and digits.y_test.shape == (359,)
    assert digits.x_train.dtype == np.float32 and digits.x_test.dtype == np.float32
    assert digits.y_train.dtype == np.int32 and digits.y_test.dtype == np.int32
    assert digits.image_shape == (8, 8, 1) and digits.num_classes == 10
    images = np.concatenate([digits.x_train, digits.x_test])
    assert images.min() == 0.0 and images.max() == 1.0  # the raw pixels span 0..16
    labels = np.concatenate([digits.y_train, digits.y_test])
    assert set(np.unique(labels)) == set(range(10))


def test_digits_split_is_a_partition_of_all_samples(digits):
    from sklearn.datasets import load_digits

    raw = load_digits()
    expected = np.column_stack([raw.images.reshape(len(raw.images), -1) / 16.0, raw.target])
    got = np.column_stack(
        [
            np.concatenate([digits.x_train, digits.x_test]).reshape(1797, -1),
            np.concatenate([digits.y_train, digits.y_test]),
        ]
    )
    sort = lambda rows: rows[np.lexsort(rows.T[::-1])]
    np.testing.assert_allclose(sort(got), sort(expected), rtol=0, atol=1e-7)


def test_digits_same_seed_same_split_and_different_seed_differs(digits):
    again = data.load_digits(seed=0)
    for field in ("x_train", "y_train", "x_test", "y_test"):
        np.testing.assert_array_equal(getattr(again, field), getattr(digits, field))
    other = data.load_digits(seed=1)
    assert not np.array_equal(other.y_train, digits.y_train)
    assert not np.array_equal(other.x_test, digits.x_test)


def test_digits_test_fraction_sets_the_test_size():
    split = data.load_digits(test_fraction=0.5)
    assert len(split.y_test) == round(1797 * 0.5) and len(split.y_train) + len(split.y_test) == 1797


@pytest.mark.parametrize(
    ("kwargs", "name"),
    [
        ({"test_fraction": 0.0}, "test_fraction"),
        ({"test_fraction": 1.0}, "test_fraction"),
        ({"test_fraction": -0.1}, "test_fraction"),
        ({"test_fraction": float("nan")}, "test_fraction"),
        ({"seed": -1}, "seed"),
    ],
)
def test_digits_rejects_bad_arguments(kwargs, name):
    with pytest.raises(ValueError, match=name):
        data.load_digits(**kwargs)


def test_dataset_is_frozen(digits):
    with pytest.raises(AttributeError):
        digits.num_classes = 3


# --- IDX files -----------------------------------------------------------------------------------------


def idx_images(images: np.ndarray) -> bytes:
    return struct.pack(">IIII", 0x803, *images.shape) + images.astype(np.uint8).tobytes()


def idx_labels(labels: np.ndarray) -> bytes:
    return struct.pack(">II", 0x801, len(labels)) + labels.astype(np.uint8).tobytes()


def make_arrays(seed: int = 0) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(seed)
    train = rng.integers(0, 256, size=(N_TRAIN, 28, 28), dtype=np.uint8)
    train[0, 0, 0], train[0, 0, 1] = 0, 255  # the extremes must map to exactly 0 and 1
    return {
        "train_images": train,
        "train_labels": np.array([3, 1, 4, 1, 5]),
        "test_images": rng.integers(0, 256, size=(N_TEST, 28, 28), dtype=np.uint8),
        "test_labels": np.array([9, 2, 6]),
    }


def idx_bytes(arrays: dict[str, np.ndarray]) -> dict[str, bytes]:
    """File name -> gzip-compressed IDX bytes."""
    encode = lambda key: (idx_images if key.endswith("images") else idx_labels)(arrays[key])
    return {data._FILES[key]: gzip.compress(encode(key)) for key in data._FILES}


def write_files(directory: Path, arrays: dict[str, np.ndarray], compressed: bool = True) -> None:
    for name, payload in idx_bytes(arrays).items():
        if compressed:
            (directory / name).write_bytes(payload)
        else:
            (directory / name.removesuffix(".gz")).write_bytes(gzip.decompress(payload))


def assert_matches(dataset: data.Dataset, arrays: dict[str, np.ndarray]) -> None:
    for split in ("train", "test"):
        images = getattr(dataset, f"x_{split}")
        assert images.dtype == np.float32 and images.shape == (len(arrays[f"{split}_images"]), 28, 28, 1)
        np.testing.assert_array_equal(images[..., 0], arrays[f"{split}_images"] / np.float32(255))
        labels = getattr(dataset, f"y_{split}")
        assert labels.dtype == np.int32
        np.testing.assert_array_equal(labels, arrays[f"{split}_labels"])
    assert dataset.num_classes == 10 and dataset.image_shape == (28, 28, 1)


@pytest.mark.parametrize("compressed", [True, False])
def test_mnist_reads_idx_files(tmp_path, compressed):
    arrays = make_arrays()
    write_files(tmp_path, arrays, compressed)
    dataset = data.load_mnist(root=tmp_path, download=False)
    assert_matches(dataset, arrays)
    assert dataset.x_train[0, 0, 0, 0] == 0.0 and dataset.x_train[0, 0, 1, 0] == 1.0


def test_mnist_reads_files_under_the_env_var_directory(tmp_path, monkeypatch):
    arrays = make_arrays()
    (tmp_path / "mnist").mkdir()
    write_files(tmp_path / "mnist", arrays)
    monkeypatch.setenv(data._ENV_VAR, str(tmp_path))
    assert_matches(data.load_mnist(download=False), arrays)


def corrupt_bad_magic(payload: bytes) -> bytes:
    return struct.pack(">I", 0x802) + payload[4:]


def corrupt_truncated(payload: bytes) -> bytes:
    return payload[:-1]


def corrupt_trailing(payload: bytes) -> bytes:
    return payload + b"\x00"


def corrupt_header(payload: bytes) -> bytes:
    return payload[:6]


@pytest.mark.parametrize("name", ["train-images-idx3-ubyte", "t10k-labels-idx1-ubyte"])
@pytest.mark.parametrize("corrupt", [corrupt_bad_magic, corrupt_truncated, corrupt_trailing, corrupt_header])
def test_mnist_rejects_corrupt_idx_files(tmp_path, name, corrupt):
    write_files(tmp_path, make_arrays(), compressed=False)
    path = tmp_path / name
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(ValueError, match=name):
        data.load_mnist(root=tmp_path, download=False)


def test_mnist_rejects_truncated_gzip(tmp_path):
    write_files(tmp_path, make_arrays())
    path = tmp_path / "train-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.gz"):
        data.load_mnist(root=tmp_path, download=False)


def test_mnist_rejects_wrong_image_size_and_label_count(tmp_path):
    arrays = make_arrays()
    write_files(tmp_path, arrays, compressed=False)
    small = np.zeros((N_TRAIN, 27, 28), np.uint8)
    (tmp_path / "train-images-idx3-ubyte").write_bytes(idx_images(small))
    with pytest.raises(ValueError, match="train-images-idx3-ubyte"):
        data.load_mnist(root=tmp_path, download=False)
    write_files(tmp_path, arrays, compressed=False)
    (tmp_path / "t10k-labels-idx1-ubyte").write_bytes(idx_labels(np.array([1, 2])))
    with pytest.raises(ValueError, match="t10k-labels-idx1-ubyte"):
        data.load_mnist(root=tmp_path, download=False)


def test_mnist_missing_files_without_download(tmp_path):
    write_files(tmp_path, make_arrays())
    (tmp_path / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError) as info:
        data.load_mnist(root=tmp_path, download=False)  # the autouse fixture fails any download attempt
    message = str(info.value)
    assert str(tmp_path) in message and "t10k-labels-idx1-ubyte.gz" in message
    assert "missing" in message and "download=True" in message
    assert "train-images-idx3-ubyte.gz:" not in message  # only the absent file is listed as missing


# --- downloads (fake _urlopen, patched digest table) ---------------------------------------------------


class FakeServer:
    """Stands in for urllib.request.urlopen: serves bytes per URL, raises per URL, records every call."""

    def __init__(self, files: dict[str, bytes], fail: dict[str, BaseException] | None = None):
        self.files, self.fail, self.calls = files, fail or {}, []

    def __call__(self, url, timeout=None):
        self.calls.append(url)
        if url in self.fail:
            raise self.fail[url]
        return io.BytesIO(self.files[url])


class BreaksMidStream(io.BytesIO):
    """A response that delivers its first chunk, then fails as a dropped connection would."""

    def __init__(self, payload: bytes, error: BaseException):
        super().__init__(payload)
        self.error, self.reads = error, 0

    def read(self, size=-1):
        self.reads += 1
        if self.reads > 1:
            raise self.error
        return super().read(size)


def patch_source(monkeypatch, kind: str, payloads: dict[str, bytes], mirrors=("https://a.test/", "https://b.test/")):
    digests = {name: hashlib.sha256(payload).hexdigest() for name, payload in payloads.items()}
    monkeypatch.setitem(data._SOURCES, kind, data._Source(mirrors=mirrors, sha256=digests))
    return mirrors


def test_download_writes_verified_files_and_loads_them(tmp_path, monkeypatch):
    arrays = make_arrays()
    payloads = idx_bytes(arrays)
    (mirror, _) = patch_source(monkeypatch, "mnist", payloads)
    server = FakeServer({mirror + name: payload for name, payload in payloads.items()})
    monkeypatch.setattr(data, "_urlopen", server)
    root = tmp_path / "new" / "dir"
    assert_matches(data.load_mnist(root=root), arrays)
    assert sorted(server.calls) == sorted(mirror + name for name in NAMES)
    assert sorted(p.name for p in root.iterdir()) == sorted(NAMES)  # no temp files left over
    for name, payload in payloads.items():
        assert (root / name).read_bytes() == payload
    server.calls.clear()
    data.load_mnist(root=root)
    assert server.calls == []  # cached files are not fetched again


def test_download_only_fetches_missing_files(tmp_path, monkeypatch):
    arrays = make_arrays()
    payloads = idx_bytes(arrays)
    write_files(tmp_path, arrays)
    (tmp_path / "train-labels-idx1-ubyte.gz").unlink()
    (mirror, _) = patch_source(monkeypatch, "mnist", payloads)
    server = FakeServer({mirror + name: payload for name, payload in payloads.items()})
    monkeypatch.setattr(data, "_urlopen", server)
    assert_matches(data.load_mnist(root=tmp_path), arrays)
    assert server.calls == [mirror + "train-labels-idx1-ubyte.gz"]


def test_download_falls_back_to_the_next_mirror(tmp_path, monkeypatch):
    arrays = make_arrays()
    payloads = idx_bytes(arrays)
    first, second = patch_source(monkeypatch, "mnist", payloads)
    fail = {first + name: urllib.error.URLError("mirror down") for name in NAMES}
    server = FakeServer({second + name: payload for name, payload in payloads.items()}, fail)
    monkeypatch.setattr(data, "_urlopen", server)
    assert_matches(data.load_mnist(root=tmp_path), arrays)
    assert sorted(server.calls) == sorted([first + n for n in NAMES] + [second + n for n in NAMES])


def test_download_digest_mismatch_raises_and_leaves_no_file(tmp_path, monkeypatch):
    monkeypatch.setattr(data, "_urlopen", FakeServer({"https://x.test/f.gz": b"tampered" * 1000}))
    with pytest.raises(ValueError, match="SHA-256"):
        data._download("https://x.test/f.gz", tmp_path / "f.gz", hashlib.sha256(b"original").hexdigest())
    assert list(tmp_path.iterdir()) == []


def test_load_mnist_digest_mismatch_propagates(tmp_path, monkeypatch):
    payloads = idx_bytes(make_arrays())
    (mirror, _) = patch_source(monkeypatch, "mnist", payloads)
    tampered = {mirror + name: payload + b"x" for name, payload in payloads.items()}
    monkeypatch.setattr(data, "_urlopen", FakeServer(tampered))
    with pytest.raises(ValueError, match="SHA-256 mismatch"):
        data.load_mnist(root=tmp_path)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [ConnectionResetError("reset"), http.client.IncompleteRead(b"")])
def test_download_interrupted_mid_stream_leaves_no_partial_file(tmp_path, monkeypatch, error):
    payload = bytes(range(256)) * 64
    monkeypatch.setattr(data, "_CHUNK_BYTES", 1024)  # several reads, so the failure comes mid-stream
    response = BreaksMidStream(payload, error)
    monkeypatch.setattr(data, "_urlopen", lambda url, timeout=None: response)
    with pytest.raises(type(error)):
        data._download("https://x.test/f.gz", tmp_path / "f.gz", hashlib.sha256(payload).hexdigest())
    assert response.reads == 2  # the first chunk was written before the failure
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("error", [TimeoutError("stalled"), http.client.IncompleteRead(b"partial", 99)])
def test_load_mnist_interrupted_download_gives_file_not_found(tmp_path, monkeypatch, error):
    payloads = idx_bytes(make_arrays())
    patch_source(monkeypatch, "mnist", payloads)
    monkeypatch.setattr(data, "_CHUNK_BYTES", 16)
    monkeypatch.setattr(
        data, "_urlopen", lambda url, timeout=None: BreaksMidStream(payloads[url.rsplit("/", 1)[1]], error)
    )
    with pytest.raises(FileNotFoundError, match=type(error).__name__):
        data.load_mnist(root=tmp_path)
    assert list(tmp_path.iterdir()) == []


def test_offline_download_gives_file_not_found_naming_the_directory(tmp_path, monkeypatch):
    def offline(url, timeout=None):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr(data, "_urlopen", offline)
    with pytest.raises(FileNotFoundError) as info:
        data.load_mnist(root=tmp_path)
    message = str(info.value)
    assert str(tmp_path) in message and "download=True" in message
    assert all(name in message for name in NAMES)
    assert list(tmp_path.iterdir()) == []


# --- kinds ---------------------------------------------------------------------------------------------


def test_fashion_uses_its_own_cache_directory_and_mirrors(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for kind in ("mnist", "fashion"):
        with pytest.raises(FileNotFoundError, match=re.escape(str(tmp_path / ".cache" / "taming-gradients" / kind))):
            data.load_mnist(kind=kind, download=False)
    assert data._cache_dir(None, "fashion") != data._cache_dir(None, "mnist")
    monkeypatch.setenv(data._ENV_VAR, str(tmp_path / "env"))
    assert data._cache_dir(None, "fashion") == tmp_path / "env" / "fashion"
    assert data._cache_dir(tmp_path / "explicit", "fashion") == tmp_path / "explicit"

    arrays = make_arrays(seed=1)
    payloads = idx_bytes(arrays)
    (mirror,) = patch_source(monkeypatch, "fashion", payloads, mirrors=("https://fashion.test/",))
    server = FakeServer({mirror + name: payload for name, payload in payloads.items()})
    monkeypatch.setattr(data, "_urlopen", server)
    assert_matches(data.load_mnist(kind="fashion"), arrays)
    assert sorted(p.name for p in (tmp_path / "env" / "fashion").iterdir()) == sorted(NAMES)
    assert all(url.startswith("https://fashion.test/") for url in server.calls) and len(server.calls) == 4


def test_real_digest_tables_are_complete_and_distinct():
    for source in data._SOURCES.values():
        assert set(source.sha256) == set(NAMES) and source.mirrors
        assert all(len(d) == 64 and int(d, 16) >= 0 for d in source.sha256.values())
    assert data._SOURCES["mnist"].sha256 != data._SOURCES["fashion"].sha256
    assert set(data._SOURCES["mnist"].mirrors).isdisjoint(data._SOURCES["fashion"].mirrors)


@pytest.mark.parametrize("kind", ["MNIST", "kmnist", ""])
def test_unknown_kind_raises_naming_kind(tmp_path, kind):
    with pytest.raises(ValueError, match="kind"):
        data.load_mnist(root=tmp_path, kind=kind, download=False)
