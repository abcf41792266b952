"""The model zoo: builds, padding invariance, mixed precision, and learning on real drawings."""

import json
import os

import keras
import numpy as np
import pytest
import tensorflow as tf

from quickdraw_tf import data
from quickdraw_tf import ink
from quickdraw_tf import make_records
from quickdraw_tf import models
from quickdraw_tf.models import vgg19

# Small image sizes keep the CPU suite fast; the defaults are exercised by the registry listing.
TEST_IMAGE_SIZE = {"sketchanet": 64, "alexnet": 64, "resnet18": 28, "fusion": 64, "vgg19": 32}


@pytest.fixture(scope="module")
def records_dir(data_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("records")
  inputs = [os.path.join(data_dir, "strokes", "simplified_lamnguyen", f"{w}.ndjson")
            for w in ("cat", "bicycle", "fish", "rainbow", "snowflake")]
  make_records.convert(inputs, str(out), workers=1, progress=False, eval_fraction=0, test_fraction=0)
  return str(out)


def test_unknown_model_lists_the_valid_ones():
  with pytest.raises(ValueError, match="rnn, bilstm, sketchanet, alexnet, resnet18, fusion, vgg19"):
    models.get("lenet")


@pytest.mark.parametrize("name", list(models.MODELS))
def test_a_few_steps_on_real_drawings_lower_the_loss(records_dir, name):
  keras.utils.set_random_seed(1)
  spec = models.get(name)
  size = TEST_IMAGE_SIZE.get(name)
  batch = next(iter(data.make_dataset(records_dir, "train", spec, 32, deterministic=True, image_size=size,
                                      bucket=False)))
  model = models.build(name, 5, image_size=size)
  logits = model(batch[0], training=False)
  assert logits.shape == (32, 5) and logits.dtype == tf.float32
  model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  before = model.evaluate(*batch, verbose=0)
  model.fit(tf.data.Dataset.from_tensors(batch).repeat(8), epochs=1, verbose=0)
  after = model.evaluate(*batch, verbose=0)
  assert after < before, (name, before, after)


def _real_ink(data_dir, count=3):
  with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", "owl.ndjson")) as f:
    return [ink.encode(ink.strokes_to_points(json.loads(line)["drawing"]))[0] for line in f][:count]


@pytest.mark.parametrize("name", ["rnn", "bilstm"])
def test_padding_does_not_change_logits(data_dir, name):
  keras.utils.set_random_seed(2)
  model = models.build(name, 7)
  spec = models.get(name)
  drawings = _real_ink(data_dir)
  steps = max(len(d) for d in drawings) + 23
  padded = np.zeros((len(drawings), steps, 3), np.float32)
  for i, d in enumerate(drawings):
    padded[i, :len(d)] = d
  lengths = np.array([len(d) for d in drawings], np.int32)
  batch_logits = model(data.model_inputs(spec, padded, lengths), training=False).numpy()
  for i, d in enumerate(drawings):
    alone = model(data.model_inputs(spec, d[None], lengths[i:i + 1]), training=False).numpy()
    np.testing.assert_allclose(batch_logits[i], alone[0], atol=1e-5)


@pytest.mark.parametrize("name", list(models.MODELS))
def test_mixed_precision_keeps_float32_logits_under_a_strategy(name):
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
      model = models.build(name, 4, image_size=TEST_IMAGE_SIZE.get(name))
    assert model.get_layer("logits").compute_dtype == "float32"
    inputs = {k: tf.zeros([2] + [d or 9 for d in v.shape[1:]], v.dtype) for k, v in model.input.items()}
    if "ink_length" in inputs:
      inputs["ink_length"] = tf.constant([9, 4])
    assert model(inputs, training=False).dtype == tf.float32
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_rnn_ablation_variants_build():
  relu_pool = models.build("rnn", 3, activation="relu", pooling=4)
  assert relu_pool.get_layer("conv1").activation.__name__ == "relu"
  assert relu_pool.get_layer("pool3") is not None
  assert models.build("rnn", 3).get_layer("conv2").activation.__name__ == "linear"


def test_vgg19_stages_freeze_and_unfreeze():
  model = models.build("vgg19", 3, image_size=32)
  vgg19.set_trainable(model, "head")
  assert not model.get_layer(vgg19.BACKBONE).trainable
  assert {w.name for w in model.trainable_weights} >= {"kernel", "bias"}  # The head.
  head_only = len(model.trainable_weights)
  vgg19.set_trainable(model, "finetune")
  backbone = model.get_layer(vgg19.BACKBONE)
  assert [l.name for l in backbone.layers if l.trainable and l.weights] == [
      "block5_conv1", "block5_conv2", "block5_conv3", "block5_conv4"]
  assert len(model.trainable_weights) == head_only + 8


def test_vgg19_loads_weights_from_a_local_file(tmp_path):
  source = keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3))
  path = str(tmp_path / "vgg19_notop.weights.h5")
  source.save_weights(path)
  model = models.build("vgg19", 3, image_size=32, weights_path=path)
  np.testing.assert_array_equal(model.get_layer(vgg19.BACKBONE).get_layer("block1_conv1").kernel.numpy(),
                                source.get_layer("block1_conv1").kernel.numpy())
