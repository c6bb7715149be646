"""pannjax.data: digits, batching, JAX augmentation, CIFAR through tfds (mocked, and prepared from a
small fake archive in the official layout), errors for missing or corrupt data, the registry."""

import gzip
import io
import json
import pickle
import runpy
import subprocess
import sys
import tarfile
from pathlib import Path

import jax
import numpy as np
import pytest

from pannjax.data import (ConfigError, CorruptDataError, DataNotFoundError, Dataset, crop_and_flip, load_dataset,
                          register_dataset)
from pannjax.data.cifar import CIFAR_STATS, normalise, read_split
from pannjax.data.prepare import _FromArrays, check, prepare

ROOT = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------- digits and batching

def test_digits_shapes_classes_and_normalisation():
    ds = load_dataset("digits")
    assert ds.name == "digits" and ds.num_classes == 10 and ds.augment is None
    assert ds.train_images.shape == (1437, 8, 8, 1) and ds.test_images.shape == (360, 8, 8, 1)
    assert ds.train_images.dtype == np.float32 and ds.train_labels.dtype == np.int32
    assert abs(float(ds.train_images.mean())) < 1e-5 and abs(float(ds.train_images.std()) - 1) < 1e-5
    assert set(np.unique(ds.train_labels)) == set(range(10)) == set(np.unique(ds.test_labels))


def test_digits_split_is_fixed_and_stratified():
    a, b = load_dataset("digits"), load_dataset("digits")
    np.testing.assert_array_equal(a.test_images, b.test_images)
    np.testing.assert_array_equal(a.train_labels, b.train_labels)
    all_counts = np.bincount(np.concatenate([a.train_labels, a.test_labels]), minlength=10)
    test_counts = np.bincount(a.test_labels, minlength=10)
    assert np.all(np.abs(test_counts - 0.2 * all_counts) <= 1)  # each class split 80/20


def test_digits_shift_option():
    ds = load_dataset("digits", shift=1)
    x = jax.numpy.asarray(ds.train_images[:32])
    out = ds.augment(jax.random.key(0), x)
    assert out.shape == x.shape and not np.array_equal(np.asarray(out), ds.train_images[:32])
    with pytest.raises(ConfigError, match="data.shift"):
        load_dataset("digits", shift=-1)


def test_batches_are_deterministic_per_seed_and_epoch():
    ds = load_dataset("digits")
    labels = lambda **kw: np.concatenate([b["label"] for b in ds.batches("train", 100, **kw)])  # noqa: E731
    np.testing.assert_array_equal(labels(seed=1, epoch=2), labels(seed=1, epoch=2))
    assert not np.array_equal(labels(seed=1, epoch=2), labels(seed=1, epoch=3))
    assert not np.array_equal(labels(seed=1, epoch=2), labels(seed=2, epoch=2))
    assert len(labels(seed=0, epoch=0)) == 1400  # incomplete last training batch dropped


def test_test_batches_cover_every_example_once_in_order():
    ds = load_dataset("digits")
    batches = list(ds.batches("test", 100))
    assert [len(b["label"]) for b in batches] == [100, 100, 100, 60]
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in batches]), ds.test_images)


# ---------------------------------------------------------------- augmentation

def _asymmetric_batch(n=64, size=8):
    rng = np.random.default_rng(0)
    return jax.numpy.asarray(rng.uniform(1, 2, (n, size, size, 3)).astype(np.float32))  # no zeros inside


def test_augment_is_jittable_and_deterministic():
    x = _asymmetric_batch()
    aug = jax.jit(crop_and_flip(pad=2))
    a, b, c = aug(jax.random.key(1), x), aug(jax.random.key(1), x), aug(jax.random.key(2), x)
    assert a.shape == x.shape and a.dtype == x.dtype
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_flips_happen_about_half_the_time():
    x = _asymmetric_batch(256)
    out = np.asarray(crop_and_flip(pad=0, flip=True)(jax.random.key(0), x))
    flipped = np.all(out == np.asarray(x)[:, :, ::-1], axis=(1, 2, 3))
    kept = np.all(out == np.asarray(x), axis=(1, 2, 3))
    assert np.all(flipped ^ kept) and 80 < flipped.sum() < 176


def test_crops_are_zero_padded_translations():
    pad, x = 2, _asymmetric_batch(64)
    out = np.asarray(crop_and_flip(pad=pad, flip=False)(jax.random.key(0), x))
    padded = np.pad(np.asarray(x), ((0, 0), (pad, pad), (pad, pad), (0, 0)))
    offsets = []
    for i in range(len(out)):
        matches = [(dy, dx) for dy in range(2 * pad + 1) for dx in range(2 * pad + 1)
                   if np.array_equal(out[i], padded[i, dy:dy + 8, dx:dx + 8])]
        assert len(matches) == 1
        offsets.append(matches[0])
    assert len(set(offsets)) > 10  # 25 possible offsets, drawn independently per image


# ---------------------------------------------------------------- CIFAR through tfds

@pytest.mark.parametrize("name,classes", [("cifar10", 10), ("cifar100", 100)])
def test_cifar_from_mocked_tfds(mock_cifar, tmp_path, name, classes):
    ds = load_dataset(name, data_dir=tmp_path)
    assert isinstance(ds, Dataset) and ds.name == name and ds.num_classes == classes
    assert ds.train_images.shape == (12, 32, 32, 3) and ds.test_images.shape == (12, 32, 32, 3)
    assert ds.train_images.dtype == np.float32 and ds.train_labels.dtype == np.int32
    assert ds.train_labels.min() >= 0 and ds.train_labels.max() < classes
    out = jax.jit(ds.augment)(jax.random.key(0), ds.train_images)
    assert out.shape == ds.train_images.shape


@pytest.mark.parametrize("name", ["cifar10", "cifar100"])
def test_missing_cifar_names_the_fix(tmp_path, name):
    with pytest.raises(DataNotFoundError, match="scripts/prepare_data.py") as e:
        load_dataset(name, data_dir=tmp_path / "empty")
    assert "\n" not in str(e.value) and "file_format=array_record" in str(e.value)
    assert isinstance(e.value, ConfigError)


def _fake_archive(path: Path, name: str, kind: str, n: int = 3) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """A small archive in the official layout (n records per file); returns per split (images, labels)."""
    rng = np.random.default_rng(0)
    classes, coarse = (10, 0) if name == "cifar10" else (100, 20)
    if kind == "binary":
        top = "cifar-10-batches-bin" if name == "cifar10" else "cifar-100-binary"
        files = ({"train": [f"data_batch_{i}.bin" for i in range(1, 6)], "test": ["test_batch.bin"]}
                 if name == "cifar10" else {"train": ["train.bin"], "test": ["test.bin"]})
    else:
        top = "cifar-10-batches-py" if name == "cifar10" else "cifar-100-python"
        files = ({"train": [f"data_batch_{i}" for i in range(1, 6)], "test": ["test_batch"]}
                 if name == "cifar10" else {"train": ["train"], "test": ["test"]})
    expected, members = {}, {}
    for split, names in files.items():
        images, labels = [], []
        for f in names:
            fine = rng.integers(0, classes, n, dtype=np.uint8)
            pixels = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
            if kind == "binary":
                label_bytes = [fine[:, None]] if not coarse else [fine[:, None] // 5, fine[:, None]]
                members[f"{top}/{f}"] = np.concatenate([*label_bytes, pixels], axis=1).tobytes()
            else:
                batch = {b"data": pixels, b"batch_label": b"fake"}
                if coarse:
                    batch.update({b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist()})
                else:
                    batch[b"labels"] = fine.tolist()
                members[f"{top}/{f}"] = pickle.dumps(batch, protocol=2)
            images.append(pixels.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1))
            labels.append(fine)
        expected[split] = (np.concatenate(images), np.concatenate(labels).astype(np.int32))
    label_names = {"label": [f"class{i}" for i in range(classes)], "coarse_label": [f"super{i}" for i in range(20)]}
    if kind == "binary":
        name_files = {"batches.meta.txt": "label"} if not coarse else {
            "fine_label_names.txt": "label", "coarse_label_names.txt": "coarse_label"}
        for f, key in name_files.items():
            members[f"{top}/{f}"] = ("\n".join(label_names[key]) + "\n\n").encode()
    else:
        encoded = {key: [s.encode() for s in names] for key, names in label_names.items()}
        meta = ({b"fine_label_names": encoded["label"], b"coarse_label_names": encoded["coarse_label"]} if coarse
                else {b"label_names": encoded["label"]})
        members[f"{top}/{'meta' if coarse else 'batches.meta'}"] = pickle.dumps(meta, protocol=2)
    with tarfile.open(path, "w:gz") as tar:
        for member, data in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return expected


def _sorted_rows(images: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """Examples as byte rows (pixels then label) in a canonical order: tfds stores them shuffled."""
    rows = np.concatenate([images.reshape(len(images), -1), labels[:, None].astype(np.uint8)], axis=1)
    return rows[np.lexsort(rows.T[::-1])]


@pytest.mark.parametrize("name,kind", [("cifar10", "binary"), ("cifar100", "binary"), ("cifar10", "python"),
                                       ("cifar100", "python")])
def test_prepare_from_fake_official_archive_round_trips(tmp_path, name, kind):
    expected = _fake_archive(tmp_path / "archive.tar.gz", name, kind)
    prepare(name, tmp_path / "archive.tar.gz", tmp_path / "tfds")
    for split in ("train", "test"):
        images, labels = read_split(name, split, tmp_path / "tfds")
        np.testing.assert_array_equal(_sorted_rows(images, labels), _sorted_rows(*expected[split]))
    ds = load_dataset(name, data_dir=tmp_path / "tfds", augment=False)
    assert ds.augment is None and ds.train_images.shape == (15 if name == "cifar10" else 3, 32, 32, 3)
    test_uint8 = read_split(name, "test", tmp_path / "tfds")[0]
    np.testing.assert_array_equal(ds.test_images, normalise(name, test_uint8))
    mean, std = (np.array(v) for v in CIFAR_STATS[name])
    np.testing.assert_allclose(ds.test_images, (test_uint8 / 255 - mean) / std, atol=1e-5)
    with pytest.raises(ConfigError, match="--overwrite"):
        prepare(name, tmp_path / "archive.tar.gz", tmp_path / "tfds")


def test_prepare_removes_what_an_interrupted_prepare_left(tmp_path, monkeypatch):
    """A killed prepare leaves tfds' `incomplete.*` dir (as big as the data set); the next prepare removes
    it, a failing one cleans up after itself, and prepared data is never touched."""
    _fake_archive(tmp_path / "archive.tar.gz", "cifar10", "binary", n=2)
    leftover = tmp_path / "tfds" / "cifar10" / "incomplete.K1LLED_3.0.2"
    (leftover / "shards").mkdir(parents=True)
    (leftover / "shards" / "cifar10-train.array_record-00000-of-00001").write_bytes(b"\0" * 1000)
    target = prepare("cifar10", tmp_path / "archive.tar.gz", tmp_path / "tfds")
    assert sorted(p.name for p in (tmp_path / "tfds" / "cifar10").iterdir()) == [target.name]
    leftover.mkdir()

    def fails_midway(self, split):  # a fault while the examples are being written
        raise OSError("disk full")
        yield

    monkeypatch.setattr(_FromArrays, "_generate_examples", fails_midway)
    with pytest.raises(Exception, match="disk full"):
        prepare("cifar10", tmp_path / "archive.tar.gz", tmp_path / "other")
    assert not list((tmp_path / "other").glob("cifar10/incomplete.*"))
    with pytest.raises(Exception, match="disk full"):
        prepare("cifar10", tmp_path / "archive.tar.gz", tmp_path / "tfds", overwrite=True)
    assert sorted(p.name for p in (tmp_path / "tfds" / "cifar10").iterdir()) == [target.name]
    monkeypatch.undo()
    assert check("cifar10", tmp_path / "tfds") == {"train": 10, "test": 2}


def test_prepare_cli_then_check(tmp_path, capsys):
    _fake_archive(tmp_path / "cifar-10-binary.tar.gz", "cifar10", "binary", n=2)
    made = subprocess.run([sys.executable, str(ROOT / "scripts" / "prepare_data.py"), "cifar10", "--archive",
                           str(tmp_path / "cifar-10-binary.tar.gz"), "--data-dir", str(tmp_path / "tfds")],
                          capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert made.returncode == 0, made.stderr[-2000:]
    assert "10 train, 2 test" in made.stdout
    main = runpy.run_path(str(ROOT / "scripts" / "prepare_data.py"))["main"]
    assert main(["cifar10", "--check", "--data-dir", str(tmp_path / "tfds")]) == 0
    assert "ok, 10 train and 2 test" in capsys.readouterr().out
    assert main(["cifar10", "--check", "--data-dir", str(tmp_path / "nothing")]) == 2
    errors = capsys.readouterr().err.splitlines()
    assert len(errors) == 1 and errors[0].startswith("error:") and "prepare_data.py" in errors[0]


def test_truncated_archives_give_one_line_errors(tmp_path):
    _fake_archive(tmp_path / "good.tar.gz", "cifar10", "binary")
    data = (tmp_path / "good.tar.gz").read_bytes()
    (tmp_path / "cut.tar.gz").write_bytes(data[: len(data) // 2])
    with pytest.raises(CorruptDataError, match="truncated or corrupt") as e:
        prepare("cifar10", tmp_path / "cut.tar.gz", tmp_path / "tfds")
    assert "\n" not in str(e.value)
    # a whole tar whose record file stops mid-record
    with tarfile.open(tmp_path / "good.tar.gz") as tar:
        members = {m.name: tar.extractfile(m).read() for m in tar.getmembers()}
    members["cifar-10-batches-bin/test_batch.bin"] = members["cifar-10-batches-bin/test_batch.bin"][:-100]
    with tarfile.open(tmp_path / "short.tar.gz", "w:gz") as tar:
        for member, blob in members.items():
            info = tarfile.TarInfo(member)
            info.size = len(blob)
            tar.addfile(info, io.BytesIO(blob))
    with pytest.raises(CorruptDataError, match="test_batch.bin"):
        prepare("cifar10", tmp_path / "short.tar.gz", tmp_path / "tfds")
    with pytest.raises(DataNotFoundError, match="does not exist"):
        prepare("cifar10", tmp_path / "absent.tar.gz", tmp_path / "tfds")
    (tmp_path / "wrong.tar.gz").write_bytes(gzip.compress(b"not a tar"))
    with pytest.raises(CorruptDataError):
        prepare("cifar10", tmp_path / "wrong.tar.gz", tmp_path / "tfds")


def test_corrupt_or_tfrecord_data_dir_gives_one_line_error(tmp_path):
    _fake_archive(tmp_path / "a.tar.gz", "cifar10", "binary", n=20)
    target = prepare("cifar10", tmp_path / "a.tar.gz", tmp_path / "tfds")
    info = json.loads((target / "dataset_info.json").read_text())
    (target / "dataset_info.json").write_text(json.dumps({**info, "fileFormat": "tfrecord"}))
    with pytest.raises(DataNotFoundError, match="stored as tfrecord.*prepare_data.py") as e:
        load_dataset("cifar10", data_dir=tmp_path / "tfds")
    assert "\n" not in str(e.value)
    (target / "dataset_info.json").write_text(json.dumps(info))
    shard = next(target.glob("cifar10-train.array_record-*"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(CorruptDataError, match="--overwrite") as e:
        load_dataset("cifar10", data_dir=tmp_path / "tfds")
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- registry and synthetic data

def test_unknown_name_and_option_are_config_errors():
    with pytest.raises(ConfigError, match="cifar10, cifar100, digits, imagenet2012, synthetic"):
        load_dataset("mnist")
    with pytest.raises(ConfigError, match="data.name=None"):
        load_dataset(None)
    with pytest.raises(ConfigError, match="data.dir.*valid: data_dir, augment"):
        load_dataset("cifar10", dir="/tmp")


def test_synthetic_only_by_name():
    ds = load_dataset("synthetic", image_shape=[8, 8, 3], num_classes=4, num_train=20, num_test=6)
    assert ds.name == "synthetic" and ds.train_images.shape == (20, 8, 8, 3) and ds.test_labels.shape == (6,)
    assert ds.train_labels.max() < 4 and ds.augment is None
    with pytest.raises(ConfigError, match="image_shape"):
        load_dataset("synthetic", image_shape=[8, 8])


def test_register_dataset():
    def tiny(n: int = 4) -> Dataset:
        x, y = np.zeros((n, 2, 2, 1), np.float32), np.zeros((n,), np.int32)
        return Dataset("tiny", 2, x, y, x, y)

    register_dataset("tiny_test_source", tiny)
    assert load_dataset("tiny_test_source", n=3).train_images.shape == (3, 2, 2, 1)
    with pytest.raises(ConfigError, match="already registered"):
        register_dataset("tiny_test_source", tiny)
    with pytest.raises(ConfigError, match="valid: n"):
        load_dataset("tiny_test_source", m=3)
