"""ImageNet: the lazily decoded imagenet2012 data set (mocked tfds, and a tiny real array_record data dir
written with tfds' own imagenet2012 builder), its errors, the ImageNet ResNets and training on the lazy arrays.

Everything computed runs at 32x32 or smaller; model shapes, counts and 224x224 MACs come from `jax.eval_shape`.
"""

import io
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath
from PIL import Image

from pannjax.data import ConfigError, CorruptDataError, DataNotFoundError, load_dataset
from pannjax.data.imagenet import IMAGENET_STATS, normalise, resize_center_crop
from pannjax.models import build_model
from pannjax.nn import bound_layers
from pannjax.runner import run_train
from test_models import FOUR_BIT, IMAGES, SIGN_REVEALING, check_one_sgd_step, param_count
from test_train import compose_train

SMALL = dict(image_size=32, resize=36)
MEAN, STD = (np.asarray(v, np.float32) for v in IMAGENET_STATS)


# ---------------------------------------------------------------- data through mocked tfds

def test_mocked_imagenet_is_a_lazy_normalised_dataset(mock_imagenet, tmp_path):
    import tensorflow_datasets as tfds

    ds = load_dataset("imagenet2012", data_dir=tmp_path, **SMALL)
    assert ds.name == "imagenet2012" and ds.num_classes == 1000 and ds.image_shape == (32, 32, 3)
    images, labels = ds.train_images, ds.train_labels
    assert images.shape == (16, 32, 32, 3) and images.ndim == 4 and len(images) == 16 and images.dtype == np.float32
    assert labels.shape == (16,) and labels.ndim == 1 and labels.dtype == np.int32
    x, y = np.asarray(images), np.asarray(labels)
    assert x.dtype == np.float32 and y.dtype == np.int32 and y.min() >= 0 and y.max() <= 999
    assert np.all(x >= -MEAN / STD - 1e-6) and np.all(x <= (1 - MEAN) / STD + 1e-6)
    assert x.min() < -1.5 and x.max() > 1.5  # random uint8 pixels span most of the range

    # example i is the mock's example i, resized and center-cropped
    raw = tfds.data_source("imagenet2012", split="train")[5]
    np.testing.assert_array_equal(images[5], normalise(resize_center_crop(raw["image"], 36, 32)[None])[0])
    assert labels[5] == raw["label"]

    idx = np.array([5, 0, -1, 5])
    np.testing.assert_array_equal(images[idx], x[idx])
    np.testing.assert_array_equal(labels[idx], y[idx])
    np.testing.assert_array_equal(images[2:7], x[2:7])
    np.testing.assert_array_equal(images[::5], x[::5])
    np.testing.assert_array_equal(labels[[3, 4]], y[[3, 4]])
    assert images[3].shape == (32, 32, 3) and int(labels[np.int64(3)]) == y[3]
    assert images[4:4].shape == (0, 32, 32, 3)
    assert not images[:2].flags.writeable  # batches are shared through the reader's cache
    with pytest.raises(IndexError):
        images[np.array([16])]
    with pytest.raises(TypeError, match="index array"):
        images[np.array([0.5])]

    again = load_dataset("imagenet2012", data_dir=tmp_path, **SMALL)  # deterministic
    np.testing.assert_array_equal(np.asarray(again.test_images), np.asarray(ds.test_images))
    np.testing.assert_array_equal(np.asarray(again.test_labels), np.asarray(ds.test_labels))


def test_mocked_imagenet_batches_and_augmentation(mock_imagenet, tmp_path):
    ds = load_dataset("imagenet2012", data_dir=tmp_path, pad=4, workers=3, **SMALL)
    test = list(ds.batches("test", 6))
    assert [len(b["label"]) for b in test] == [6, 6, 4]
    np.testing.assert_array_equal(np.concatenate([b["image"] for b in test]), np.asarray(ds.test_images))
    np.testing.assert_array_equal(np.concatenate([b["label"] for b in test]), np.asarray(ds.test_labels))
    epoch = [b["label"] for b in ds.batches("train", 4, epoch=1)]
    assert len(epoch) == ds.steps_per_epoch(4) == 4
    assert sorted(np.concatenate(epoch)) == sorted(np.asarray(ds.train_labels))
    out = jax.jit(ds.augment)(jax.random.key(0), jnp.asarray(test[0]["image"]))
    assert out.shape == (6, 32, 32, 3)
    assert load_dataset("imagenet2012", data_dir=tmp_path, augment=False, **SMALL).augment is None


def test_resize_center_crop_follows_torchvision():
    """Resize(20) + CenterCrop(16) of a 40x80 horizontal ramp: scaled by 1/2 to 20x40, window from (2, 12)."""
    ramp = np.broadcast_to((3 * np.arange(80, dtype=np.uint8))[None, :, None], (40, 80, 3)).copy()
    out = resize_center_crop(ramp, 20, 16)
    assert out.shape == (16, 16, 3) and out.dtype == np.uint8
    # new column j averages old columns 2j and 2j + 1: 3 (2j + 1/2); the crop starts at j = 12
    np.testing.assert_allclose(out[8, :, 0], 3 * (2 * (12 + np.arange(16)) + 0.5), atol=1.5)
    np.testing.assert_array_equal(resize_center_crop(ramp.transpose(1, 0, 2).copy(), 20, 16), out.transpose(1, 0, 2))
    assert resize_center_crop(np.zeros((30, 47, 3), np.uint8), 20, 16).shape == (16, 16, 3)


# ---------------------------------------------------------------- errors and a real tfds data dir

def test_missing_imagenet_names_the_manual_preparation(tmp_path):
    with pytest.raises(DataNotFoundError, match="imagenet2012 not found") as e:
        load_dataset("imagenet2012", data_dir=tmp_path / "empty")
    message = str(e.value)
    assert "\n" not in message and isinstance(e.value, ConfigError)
    for part in (f"{tmp_path / 'empty'}/downloads/manual", "ILSVRC2012_img_train.tar", "ILSVRC2012_img_val.tar",
                 'download_and_prepare(file_format="array_record")'):
        assert part in message, part


@pytest.mark.parametrize("options, key", [(dict(image_size=300), "data.image_size"), (dict(pad=-1), "data.pad"),
                                          (dict(workers=0), "data.workers"), (dict(size=3), "data.size")])
def test_bad_imagenet_options_are_config_errors(tmp_path, options, key):
    with pytest.raises(ConfigError, match=key):
        load_dataset("imagenet2012", data_dir=tmp_path, **options)


def _write_fake_imagenet(root, examples):
    """`examples[split]` = [(rgb, label, (h, w))] written by tfds' own imagenet2012 builder (same name, version
    and features) as flat-colour JPEGs, in array_record format; no TensorFlow needed."""
    from tensorflow_datasets.datasets.imagenet2012 import imagenet2012_dataset_builder as official

    def jpeg(rgb, shape):
        buffer = io.BytesIO()
        Image.fromarray(np.full((*shape, 3), rgb, np.uint8)).save(buffer, format="jpeg", quality=95)
        return buffer.getvalue()

    class FromExamples(official.Builder, skip_registration=True):
        name = "imagenet2012"
        code_path = epath.Path(official.__file__)  # see pannjax/data/prepare.py
        pkg_dir_path = code_path.parent  # README/CITATIONS of the official builder

        def _split_generators(self, dl_manager):
            return {split: self._generate_examples(split) for split in examples}

        def _generate_examples(self, split):
            for i, (rgb, label, shape) in enumerate(examples[split]):
                yield f"{split}_{i}", {"image": jpeg(rgb, shape), "label": label, "file_name": f"{split}_{i}.JPEG"}

    FromExamples(data_dir=str(root), file_format="array_record").download_and_prepare()
    return root / "imagenet2012" / str(FromExamples.VERSION)


def test_real_array_record_data_dir_round_trips_then_truncation_is_corrupt(tmp_path):
    colours = {97 * i: (40 * i, 200 - 30 * i, 128) for i in range(6)}  # label -> flat colour
    examples = {"train": [(rgb, label, (30 + 3 * i, 50 - 4 * i)) for i, (label, rgb) in enumerate(colours.items())],
                "validation": [(rgb, label, (36, 36)) for label, rgb in list(colours.items())[:3]]}
    target = _write_fake_imagenet(tmp_path, examples)
    ds = load_dataset("imagenet2012", data_dir=tmp_path, image_size=16, resize=20)
    assert len(ds.train_images) == 6 and len(ds.test_labels) == 3
    for split, tfds_split in (("train", "train"), ("test", "validation")):
        images, labels = (np.asarray(a) for a in ds.split(split))
        assert sorted(labels) == sorted(label for _, label, _ in examples[tfds_split])
        expected = (np.asarray([colours[label] for label in labels], np.float32)[:, None, None] / 255 - MEAN) / STD
        np.testing.assert_allclose(images, np.broadcast_to(expected, images.shape), atol=3 / 255 / 0.224)

    shard = next(target.glob("imagenet2012-validation.array_record-*"))
    shard.write_bytes(shard.read_bytes()[: shard.stat().st_size // 2])
    with pytest.raises(CorruptDataError, match="validation split.*unreadable.*prepare it again") as e:
        load_dataset("imagenet2012", data_dir=tmp_path, image_size=16, resize=20)
    assert "\n" not in str(e.value)


# ---------------------------------------------------------------- models

TORCHVISION_PARAMS = {18: 11_689_512, 34: 21_797_672, 50: 25_557_032, 101: 44_549_160, 152: 60_192_808}


@pytest.mark.parametrize("depth", sorted(TORCHVISION_PARAMS))
def test_parameter_counts_match_torchvision(depth):
    model = build_model("resnet_imagenet", depth=depth, num_classes=1000)
    shapes = jax.eval_shape(model.init, jax.random.key(0), IMAGES)  # parameters do not depend on the image size
    assert param_count(shapes["params"]) == TORCHVISION_PARAMS[depth]
    assert jax.eval_shape(model.apply, shapes, IMAGES).shape == (2, 1000)


@pytest.mark.parametrize("name, n_layers, gmacs", [("resnet18_imagenet", 21, 1.814), ("resnet50_imagenet", 54, 4.089)])
def test_layers_macs_and_signed_inputs_at_224(name, n_layers, gmacs):
    """Layer paths, only the stem signed, and multiply-adds at 224x224 (torchvision: 1.81 and 4.09 GFLOPS,
    the bottleneck striding its 3x3 conv)."""
    depth = int(name.removeprefix("resnet").removesuffix("_imagenet"))
    model = build_model("resnet_imagenet", depth=depth, policy=SIGN_REVEALING)
    image = jax.ShapeDtypeStruct((1, 224, 224, 3), jnp.float32)
    records = bound_layers(model, jax.eval_shape(model.init, jax.random.key(0), image), image)
    assert len(records) == n_layers and records[0].path == "stem" and records[-1].path == "head"
    assert records[0].output_shape == (1, 112, 112, 64) and records[1].input_shape == (1, 56, 56, 64)
    assert records[-1].input_shape == (1, 512 if depth == 18 else 2048)
    assert {r.path for r in records if r.quantizer_x.signed} == {"stem"}
    macs = sum(math.prod(r.output_shape[1:]) * math.prod(r.kernel_shape[:-1]) for r in records)
    assert round(macs / 1e9, 3) == gmacs


@pytest.mark.parametrize("options", [dict(depth=20), dict(depth=0), dict(width=0)])
def test_invalid_imagenet_resnet_is_a_config_error(options):
    with pytest.raises(ConfigError, match="model.depth" if "depth" in options else "model.width"):
        build_model("resnet_imagenet", **options)


@pytest.mark.parametrize("options", [dict(depth=18), dict(depth=50, width=8)])
def test_one_sgd_step_with_4bit_uniform_quantizers(options):
    check_one_sgd_step(build_model("resnet_imagenet", num_classes=10, policy=FOUR_BIT, **options), descent=False)


def test_one_sgd_step_of_the_float_resnet18_lowers_the_loss():
    check_one_sgd_step(build_model("resnet_imagenet", num_classes=10, depth=18))


# ---------------------------------------------------------------- training on the lazy arrays

def test_training_loop_runs_on_mocked_imagenet(mock_imagenet, tmp_path):
    """experiments/train.py's path with the ImageNet configs (tiny ResNet-18, 32x32 crops) for one epoch."""
    cfg = compose_train("data=imagenet2012", "data.image_size=32", "data.resize=36", "data.pad=4",
                        f"data.data_dir={tmp_path}/tfds", "model=resnet18_imagenet", "model.width=4",
                        "trainer=imagenet", "trainer.epochs=1", "trainer.batch_size=4", "trainer.eval_batch_size=6",
                        "trainer.progress=false", "trainer.checkpoint=false", "trainer.tensorboard=false")
    results = run_train(cfg, tmp_path / "run")
    assert results["steps"] == 4 and results["epochs"] == 1 and results["data"] == "imagenet2012"
    # 16 mocked validation images: a whole count of them; four steps from a random init leave the
    # training cross-entropy near ln(1000) = 6.91 (a NaN or a broken loss fails both); the test loss, with
    # batch statistics four steps old, is finite and above it
    assert results["test_accuracy"] * 16 == pytest.approx(round(results["test_accuracy"] * 16), abs=1e-9)
    assert 5.5 < results["train_loss"] < 8.5 and 5.5 < results["test_loss"] < 1e3
    assert results["macs"] > 0 and results["params"] == param_count(
        jax.eval_shape(build_model("resnet_imagenet", width=4).init, jax.random.key(0), IMAGES)["params"])
