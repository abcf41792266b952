"""fused_lstm.LSTM: Keras' LSTM with a faster CPU training step, and Keras' results."""

import keras
from keras import layers
import numpy as np
import pytest
import tensorflow as tf

from quickdraw_tf import models
from quickdraw_tf.models import common
from quickdraw_tf.models import fused_lstm

CLASSES = 5


def _stacked(lstm_class, sequences):
  """Masked BiLSTMs as our models stack them: sequence outputs (rnn) or last states (bilstm)."""
  ink = keras.Input((None, 3))
  mask = keras.Input((None,), dtype="bool")
  x = ink
  if sequences:
    x = layers.Bidirectional(lstm_class(6, return_sequences=True))(x, mask=mask)
  x = layers.Bidirectional(lstm_class(7, return_sequences=sequences))(x, mask=mask)
  if sequences:
    x = keras.ops.sum(x, axis=1)
  return keras.Model([ink, mask], layers.Dense(CLASSES)(x))


def _batch(steps=9):
  rng = np.random.default_rng(0)
  lengths = np.array([steps, 1, 4, steps - 1, 2])  # Full, one step, and in between: right-padded masks.
  ink = rng.normal(size=(len(lengths), steps, 3)).astype("float32")
  return [ink, np.arange(steps)[None] < lengths[:, None]], lengths % CLASSES


def _loss_and_gradients(model, inputs, labels):
  with tf.GradientTape() as tape:
    logits = model(inputs, training=True)
    loss = keras.ops.mean(keras.losses.sparse_categorical_crossentropy(labels, logits, from_logits=True))
  return logits, loss, tape.gradient(loss, model.trainable_variables)


def _runs_fused(function):
  """Whether a traced tf.function runs `fused_lstm.masked_lstm` (its ops are under the "fused_lstm" scope)."""
  return any("fused_lstm/" in op.name for op in function.get_concrete_function().graph.get_operations())


@pytest.mark.parametrize("sequences", [False, True])
def test_training_step_matches_keras_lstm(sequences):
  keras.utils.set_random_seed(1)
  reference = _stacked(layers.LSTM, sequences)
  fused = _stacked(fused_lstm.LSTM, sequences)
  fused.set_weights(reference.get_weights())
  inputs, labels = _batch()
  ref_logits, ref_loss, ref_grads = _loss_and_gradients(reference, inputs, labels)
  logits, loss, grads = _loss_and_gradients(fused, inputs, labels)
  np.testing.assert_allclose(logits, ref_logits, atol=1e-5)
  np.testing.assert_allclose(loss, ref_loss, rtol=1e-6)
  for grad, ref_grad, variable in zip(grads, ref_grads, reference.trainable_variables):
    np.testing.assert_allclose(grad, ref_grad, atol=1e-6, err_msg=variable.path)
  assert _runs_fused(tf.function(lambda: fused(inputs, training=True)))


def test_an_empty_batch_trains_as_with_keras_lstm():
  keras.utils.set_random_seed(1)
  model = _stacked(fused_lstm.LSTM, sequences=True)
  (ink, mask), labels = _batch()
  logits, _, grads = _loss_and_gradients(model, [ink[:0], mask[:0]], labels[:0])
  assert logits.shape == (0, CLASSES)
  assert all(np.all(np.isfinite(g)) for g in grads)


def test_inference_runs_keras_own_loop_and_xla_and_bfloat16_train_alike():
  keras.utils.set_random_seed(1)
  model = _stacked(fused_lstm.LSTM, sequences=False)
  inputs, labels = _batch()
  assert not _runs_fused(tf.function(lambda: model(inputs, training=False)))  # Exports see Keras' graph.
  expected = model(inputs, training=True)
  np.testing.assert_allclose(tf.function(lambda: model(inputs, training=True), jit_compile=True)(), expected,
                             atol=1e-5)
  keras.mixed_precision.set_global_policy("mixed_bfloat16")
  try:
    reference, fused = _stacked(layers.LSTM, sequences=False), _stacked(fused_lstm.LSTM, sequences=False)
    fused.set_weights(reference.get_weights())
    _, ref_loss, _ = _loss_and_gradients(reference, inputs, labels)
    _, loss, grads = _loss_and_gradients(fused, inputs, labels)
    np.testing.assert_allclose(float(loss), float(ref_loss), rtol=2e-2)  # bfloat16's 8 bits of mantissa.
    assert all(np.all(np.isfinite(tf.cast(g, tf.float32))) for g in grads)
  finally:
    keras.mixed_precision.set_global_policy("float32")


def test_recurrent_models_use_it_and_read_keras_lstm_checkpoints(tmp_path, monkeypatch):
  for name in ("rnn", "bilstm", "fusion"):
    lstms = [l for l in common.leaf_layers(models.build(name, CLASSES, image_size=64)) if isinstance(l, layers.LSTM)]
    assert lstms and all(isinstance(l, fused_lstm.LSTM) for l in lstms), name
  # Same class name, same weight paths: runs saved before it (plain keras LSTMs) load.
  with monkeypatch.context() as patch:
    patch.setattr(fused_lstm, "LSTM", layers.LSTM)
    before = models.build("bilstm", CLASSES)
  before.save_weights(tmp_path / "before.weights.h5")
  after = models.build("bilstm", CLASSES)
  after.load_weights(tmp_path / "before.weights.h5")
  for old, new in zip(before.weights, after.weights):
    np.testing.assert_array_equal(old, new)


@pytest.mark.parametrize("dtype", ["float32", "bfloat16", "float16"])  # float16: no BatchMatMulV3 CPU kernel.
def test_eigen_matmul_is_matmul(dtype):
  rng = np.random.default_rng(0)
  a, b = (tf.constant(rng.normal(size=shape), dtype) for shape in ((5, 3), (3, 4)))
  tall = tf.constant(rng.normal(size=(5, 4)), dtype)
  assert fused_lstm.eigen_matmul(a, b).dtype == dtype
  np.testing.assert_allclose(fused_lstm.eigen_matmul(a, b), tf.matmul(a, b), rtol=1e-6)
  np.testing.assert_allclose(fused_lstm.eigen_matmul(a, tall, transpose_a=True),
                             tf.matmul(a, tall, transpose_a=True), rtol=1e-6)
  assert fused_lstm.eigen_matmul(tf.zeros([0, 3], dtype), b).shape == (0, 4)  # An empty batch.
