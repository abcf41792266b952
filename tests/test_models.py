"""The model zoo: builds, padding invariance, mixed precision, and learning on real drawings."""

import json
import logging
import os
import re

import keras
import numpy as np
import pytest
import tensorflow as tf

from quickdraw_tf import make_records
from quickdraw_tf import models
from quickdraw_tf.drawings import ink
from quickdraw_tf.models import __main__ as models_main
from quickdraw_tf.models import common
from quickdraw_tf.models import vgg19
from quickdraw_tf.pipelines import data
from quickdraw_tf.training import run_dir

# Small image sizes keep the CPU suite fast; the defaults are exercised by the registry listing.
CLASSIFIERS = [name for name, spec in models.MODELS.items() if not spec.trainer]  # sketch_rnn: test_sketch_rnn
TEST_IMAGE_SIZE = {"sketchanet": 64, "alexnet": 64, "resnet18": 28, "fusion": 64, "vgg19": 32}


@pytest.fixture(scope="module")
def records_dir(synthetic_files, tmp_path_factory):
  out = tmp_path_factory.mktemp("records")
  inputs = synthetic_files(["cat", "bicycle", "fish", "rainbow", "snowflake"])
  make_records.convert(inputs, str(out), workers=1, progress=False, eval_fraction=0, test_fraction=0)
  return str(out)


def test_unknown_model_lists_the_valid_ones():
  with pytest.raises(ValueError, match="rnn, bilstm, sketchanet, alexnet, resnet18, fusion, vgg19"):
    models.get("lenet")


@pytest.mark.parametrize("name", CLASSIFIERS)
def test_a_few_steps_on_real_drawings_lower_the_loss(records_dir, name):
  keras.utils.set_random_seed(1)
  spec = models.get(name)
  size = TEST_IMAGE_SIZE.get(name)
  batch = next(iter(data.make_dataset(records_dir, "train", spec, 16, deterministic=True, image_size=size,
                                      bucket=False)))
  model = models.build(name, 5, image_size=size)
  logits = model(batch[0], training=False)
  assert logits.shape == (16, 5) and logits.dtype == tf.float32
  loss = keras.losses.SparseCategoricalCrossentropy(from_logits=True)
  model.compile(keras.optimizers.Adam(1e-3), loss)
  # Batch norm's moving averages lag 5 steps behind: with batch norm, the loss
  # on the batch's own statistics (these models have no dropout).
  batch_stats = any(isinstance(l, keras.layers.BatchNormalization) for l in common.leaf_layers(model))
  before = float(loss(batch[1], model(batch[0], training=batch_stats)))
  model.fit(tf.data.Dataset.from_tensors(batch).repeat(5), epochs=1, verbose=0)
  after = float(loss(batch[1], model(batch[0], training=batch_stats)))
  assert after < before, (name, before, after)


def _real_ink(data_dir, count=3):
  with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", "owl.ndjson")) as f:
    return [ink.encode(ink.strokes_to_points(json.loads(line)["drawing"]))[0] for line in f][:count]


def _padded(drawings, extra=0):
  """list of ink ``[n, 3]`` -> 0-padded float32 ``[b, max n + extra, 3]`` and int32 lengths ``[b]``."""
  steps = max(len(d) for d in drawings) + extra
  padded = np.zeros((len(drawings), steps, 3), np.float32)
  for i, d in enumerate(drawings):
    padded[i, :len(d)] = d
  return padded, np.array([len(d) for d in drawings], np.int32)


@pytest.mark.parametrize("name, options", [("rnn", {}), ("rnn", {"batch_norm": True}), ("bilstm", {})])
def test_padding_does_not_change_logits(data_dir, name, options):
  """Real drawings and a one-point one (no ink at all), batched and padded vs alone and unpadded."""
  keras.utils.set_random_seed(2)
  model = models.build(name, 7, **options)
  spec = models.get(name)
  drawings = _real_ink(data_dir) + [np.zeros((0, 3), np.float32)]
  padded, lengths = _padded(drawings, extra=23)
  padded[:, lengths.max():] = 7.0  # Junk beyond every length: must be ignored too.
  batch_logits = model(data.model_inputs(spec, padded, lengths), training=False).numpy()
  for i, d in enumerate(drawings):
    alone = model(data.model_inputs(spec, d[None], lengths[i:i + 1]), training=False).numpy()
    np.testing.assert_allclose(batch_logits[i], alone[0], atol=1e-5)


@pytest.mark.parametrize("policy", ["mixed_float16", "mixed_bfloat16"])
@pytest.mark.parametrize("name", CLASSIFIERS)
def test_mixed_precision_keeps_float32_logits_under_a_strategy(name, policy):
  """Built in a strategy scope under a mixed policy: low-precision layers, float32 logits, a training step."""
  keras.mixed_precision.set_global_policy(policy)
  try:
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
      model = models.build(name, 4, image_size=TEST_IMAGE_SIZE.get(name))
      model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    assert model.get_layer("logits").compute_dtype == "float32"
    low = [l.name for l in common.leaf_layers(model) if l.weights and l.compute_dtype == policy[len("mixed_"):]]
    assert len(low) >= 2, low  # The convolutions / LSTMs compute in 16 bits.
    inputs = {k: tf.random.uniform([2] + [d or 9 for d in v.shape[1:]], dtype=v.dtype)
              for k, v in model.input.items() if k != "ink_length"}
    if "ink" in model.input:
      inputs["ink_length"] = tf.constant([9, 4])
    assert model(inputs, training=False).dtype == tf.float32
    loss = model.train_on_batch(inputs, tf.constant([0, 3]))
    assert np.isfinite(loss)
  finally:
    keras.mixed_precision.set_global_policy("float32")


@pytest.mark.parametrize("name, count", [("rnn", 6), ("bilstm", 2), ("fusion", 2)])
def test_lstms_would_take_the_cudnn_kernel_on_gpu(data_dir, monkeypatch, name, count):
  """Keras 3's own conditions for its cuDNN LSTM path, checked on CPU.

  keras/src/layers/rnn/lstm.py tries the cuDNN kernel when ``use_cudnn`` is
  "auto" or True and there is no recurrent dropout; the TensorFlow backend's
  ``lstm`` then needs ``cudnn_ok`` (tanh, sigmoid, bias, no unrolling, and a
  GPU) and a mask that is strictly right-padded with no fully masked row,
  which it asserts inside the graph (a failure there is an error, not a
  fallback). With the GPU check faked, every LSTM must reach the kernel with
  such a mask, for a padded batch holding a one-point drawing (no ink).
  """
  tf_rnn = pytest.importorskip("keras.src.backend.tensorflow.rnn")
  for attr in ("_do_lstm_arguments_support_cudnn", "_is_sequence_right_padded", "_has_fully_masked_sequence",
               "_is_gpu_available", "_cudnn_lstm"):
    if not hasattr(tf_rnn, attr):
      pytest.skip(f"this Keras has no keras.src.backend.tensorflow.rnn.{attr}")
  model = models.build(name, 4, image_size=TEST_IMAGE_SIZE.get(name))
  lstms = [l for l in common.leaf_layers(model) if isinstance(l, keras.layers.LSTM)]
  assert len(lstms) == count
  for lstm in lstms:
    cell = lstm.cell
    assert lstm.use_cudnn in ("auto", True) and not cell.recurrent_dropout, lstm.name
    assert tf_rnn._do_lstm_arguments_support_cudnn(cell.activation, cell.recurrent_activation, lstm.unroll,
                                                    cell.use_bias), lstm.name

  masks = []

  def cudnn_lstm(*args, **kwargs):
    mask = kwargs["mask"] if "mask" in kwargs else args[6]
    masks.append(mask is not None and bool(tf_rnn._is_sequence_right_padded(mask)) and
                 not bool(tf_rnn._has_fully_masked_sequence(mask)))
    raise NotImplementedError  # Back to the generic kernel, as without a GPU.

  monkeypatch.setattr(tf_rnn, "_is_gpu_available", lambda: True)
  monkeypatch.setattr(tf_rnn, "_cudnn_lstm", cudnn_lstm)
  ink, lengths = _padded(_real_ink(data_dir) + [np.zeros((0, 3), np.float32)], extra=5)
  spec = models.get(name)
  image_size = TEST_IMAGE_SIZE.get(name)
  inputs = data.model_inputs(spec, ink, lengths, image=np.zeros((len(lengths), image_size or 1, image_size or 1, 1)),
                             image_size=image_size)
  model(inputs, training=False)
  assert masks == [True] * count


def test_rnn_ablation_variants_build():
  relu_pool = models.build("rnn", 3, activation="relu", pooling=4)
  assert relu_pool.get_layer("conv1").activation.__name__ == "relu"
  assert relu_pool.get_layer("pool3") is not None
  assert models.build("rnn", 3).get_layer("conv2").activation.__name__ == "linear"


def test_registry_lists_every_model_at_its_default_size(capsys):
  """``python -m quickdraw_tf.models``: builds every model at its default input size."""
  models_main.main(17)
  lines = capsys.readouterr().out.splitlines()
  assert len(lines) == 1 + len(models.MODELS)
  for line, (name, spec) in zip(lines[1:], models.MODELS.items()):
    assert line.split()[0] == name
    if spec.uses_image:
      assert f"image (None, {spec.image_size}, {spec.image_size}, 1) float32" in line
    if spec.trainer:
      assert "strokes (None, 250, 5) float32" in line
    elif spec.uses_ink:
      assert f"ink (None, None, {spec.ink_channels}) float32" in line and "ink_length (None,) int32" in line
  assert {name: spec.image_size for name, spec in models.MODELS.items() if spec.uses_image} == {
      "sketchanet": 225, "alexnet": 225, "resnet18": 28, "fusion": 225, "vgg19": 64}


def test_resnet18_stem_is_imagenets_at_every_size_and_small_on_request():
  for size in (28, 224):
    model = models.build("resnet18", 3, image_size=size)
    assert model.get_layer("conv1").kernel_size == (7, 7) and model.get_layer("conv1").strides == (2, 2)
    assert model.get_layer("conv2_block1_conv1").input.shape[1] == -(-size // 4)  # After the stride and the pool.
  small = models.build("resnet18", 3, stem="small")
  assert small.get_layer("conv1").kernel_size == (3, 3) and small.get_layer("conv2_block1_conv1").input.shape[1] == 28


def test_a_resnet18_run_of_0_1_without_a_stem_restores_with_the_small_stem_it_was_trained_with(tmp_path):
  trained = models.build("resnet18", 3, stem="small")
  trained.save_weights(str(tmp_path / "final.weights.h5"))
  config = {"model": "resnet18", "classes": ["a", "b", "c"], "image_size": 28, "model_options": {},
            "version": "0.1.0"}
  (tmp_path / "config.json").write_text(json.dumps(config))
  restored, recorded = run_dir.restore(str(tmp_path))
  assert recorded["model_options"] == {"stem": "small"} and restored.get_layer("conv1").kernel_size == (3, 3)
  with pytest.raises(run_dir.IncompatibleRun, match=re.escape("model_options {'stem': 'small'} there, {} now")):
    run_dir.check_compatible(str(tmp_path), {**config, "model_options": {}, "version": "0.2.0"})
  for newer in ({**config, "version": "0.2.0"}, {**config, "image_size": 112}, {**config, "model": "alexnet"}):
    assert run_dir.as_recorded_now(newer) == newer


def test_vgg19_without_weights_says_so_and_starts_at_random(caplog):
  with caplog.at_level(logging.WARNING):
    models.build("vgg19", 3, image_size=32)
  assert "--vgg19_weights" in caplog.text and "random initialisation" in caplog.text


def test_vgg19_missing_weights_file_is_a_clear_error(tmp_path):
  with pytest.raises(FileNotFoundError, match="VGG19 weights file"):
    models.build("vgg19", 3, image_size=32, weights_path=str(tmp_path / "nope.h5"))


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


# (model, options, batch norm (momentum, epsilon) or None for none at all): the
# framework each model's reference numbers came from.
BATCH_NORMS = [
    ("resnet18", {}, (0.9, 1e-5)),  # The report's PyTorch code: momentum 0.1 of the batch, eps 1e-5.
    ("resnet18", {"stem": "imagenet"}, (0.9, 1e-5)),
    ("alexnet", {}, (0.9, 1e-5)),  # The report's batch-normalised variant, PyTorch.
    ("alexnet", {"variant": "2012"}, None),  # LRN, no batch norm.
    ("rnn", {"batch_norm": True}, (0.99, 1e-3)),  # The TF 1 tutorial: tf.layers.batch_normalization defaults.
    ("rnn", {}, None),
    ("bilstm", {}, None),
    ("sketchanet", {}, None),
    ("fusion", {}, None),
    ("vgg19", {}, None),
]


@pytest.mark.parametrize("name, options, expected", BATCH_NORMS)
def test_batch_norm_layers_carry_their_reference_frameworks_momentum_and_epsilon(name, options, expected):
  model = models.build(name, 3, image_size=TEST_IMAGE_SIZE.get(name), **options)
  norms = [l for l in common.leaf_layers(model) if isinstance(l, keras.layers.BatchNormalization)]
  if expected is None:
    assert not norms
  else:
    assert norms and {(l.momentum, l.epsilon) for l in norms} == {expected}


def test_alexnet_default_is_the_reports_batch_norm_variant():
  """At 225 px pool5 leaves 6x6x256 (the report's num_pool5_feats); no LRN, no dropout; FC without bias."""
  model = models.build("alexnet", 25)
  assert model.get_layer("flatten").output.shape[-1] == 6 * 6 * 256
  assert [model.get_layer(f"conv{i}").filters for i in range(1, 6)] == [64, 192, 384, 256, 256]
  assert not model.get_layer("fc6").use_bias and not model.get_layer("fc7").use_bias
  kinds = {type(l).__name__ for l in model.layers}
  assert "Dropout" not in kinds and "LocalResponseNormalization" not in kinds
  paper = models.build("alexnet", 25, variant="2012", image_size=64)
  assert paper.get_layer("conv1_lrn") is not None and paper.get_layer("fc7_dropout").rate == 0.5
  with pytest.raises(ValueError, match="report, 2012"):
    models.build("alexnet", 3, variant="1998")


def test_alexnet_small_inputs_pad_the_pools_that_would_leave_nothing():
  assert models.build("alexnet", 3, image_size=28).get_layer("flatten").output.shape[-1] == 256


@pytest.mark.parametrize("name", ["sketchanet", "bilstm", "alexnet"])
def test_torch_init_draws_weights_and_biases_within_one_over_root_fan_in(name):
  keras.utils.set_random_seed(3)
  model = models.build(name, 5, image_size=TEST_IMAGE_SIZE.get(name), init="torch")
  checked = 0
  for layer in common.leaf_layers(model):
    if isinstance(layer, (keras.layers.Conv2D, keras.layers.Dense)):
      bound = 1 / np.sqrt(np.prod(layer.kernel.shape[:-1]))
      weights = [layer.kernel.numpy()] + ([layer.bias.numpy()] if layer.use_bias else [])
    elif isinstance(layer, keras.layers.LSTM):
      bound = 1 / np.sqrt(layer.cell.units)
      weights = [layer.cell.kernel.numpy(), layer.cell.recurrent_kernel.numpy(), layer.cell.bias.numpy() / 2]
    else:
      continue
    for w in weights:
      assert np.abs(w).max() <= bound * (1 + 1e-6) and np.abs(w).max() > 0.5 * bound, (layer.name, bound)
    checked += 1
  assert checked >= 3
  keras_init = models.build(name, 5, image_size=TEST_IMAGE_SIZE.get(name))
  assert not keras_init.get_layer("logits").bias.numpy().any()  # Keras: zero biases.


def test_unknown_init_and_torch_init_over_pretrained_weights_are_errors(tmp_path):
  with pytest.raises(ValueError, match="keras, torch"):
    models.build("rnn", 3, init="jax")
  with pytest.raises(ValueError, match="weights_path"):
    models.build("vgg19", 3, image_size=32, init="torch", weights_path=str(tmp_path / "w.h5"))


def test_rnn_drops_out_every_bilstm_layers_outputs_as_the_tutorial():
  model = models.build("rnn", 3)
  assert [model.get_layer(f"lstm{i}_dropout").rate for i in (1, 2, 3)] == [0.3] * 3
  without = models.build("rnn", 3, dropout=0)
  assert not any(l.name.startswith("lstm") and l.name.endswith("dropout") for l in without.layers)


def test_resnet18_report_stem_is_a_bare_strided_convolution():
  model = models.build("resnet18", 3, image_size=64, stem="report")
  conv1 = model.get_layer("conv1")
  assert conv1.kernel_size == (7, 7) and conv1.strides == (2, 2) and conv1.use_bias
  assert model.get_layer("conv2_block1_conv1").input.shape[1] == 32  # No pooling after the stem.
