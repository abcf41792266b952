"""Pieces every model shares: inputs, sequence masks, batch norm, initialisation, the float32 logits head."""

import math

import keras
from keras import layers
from keras import ops


def ink_inputs(channels=3):
  """Symbolic ``ink`` float32 ``[batch, time, channels]`` and ``ink_length`` int32 ``[batch]``."""
  return (keras.Input((None, channels), dtype="float32", name="ink"),
          keras.Input((), dtype="int32", name="ink_length"))


def image_input(size):
  """Symbolic ``image`` float32 ``[batch, size, size, 1]`` in [0, 1]."""
  return keras.Input((size, size, 1), dtype="float32", name="image")


class TimeMask(layers.Layer):
  """bool ``[batch, time]``: True on the valid (unpadded) steps of a sequence.

  A layer because the time dimension is only known when it runs.
  """

  def call(self, sequence, lengths):
    return ops.arange(ops.shape(sequence)[1])[None, :] < ops.cast(lengths, "int32")[:, None]

  def compute_output_spec(self, sequence, lengths):
    return keras.KerasTensor(sequence.shape[:2], dtype="bool")


def time_mask(sequence, lengths):
  """bool ``[batch, time]``: True on the valid (unpadded) steps of ``sequence``."""
  return TimeMask()(sequence, lengths)


class RecurrentPadding(layers.Layer):
  """Readies a padded batch for masked LSTMs that can run on the cuDNN kernel.

  Keras 3 (TensorFlow backend) runs an LSTM on cuDNN with a mask only when the
  mask is strictly right-padded and no row is fully masked; a fully masked row
  fails a ``tf.Assert`` inside the graph rather than falling back. Masks from
  `time_mask` are right-padded by construction; this layer rules out empty
  rows (a one-point drawing has no tutorial ink): it sets every padded step
  to ``pad_value``, appends one such step (so that ``time >= 1``) and raises
  the lengths to at least 1, so an empty drawing reads one padding step.
  Padding-invariant: a row's result never depends on the batch's padding.

  Call args:
    sequence: float ``[batch, time, channels]``, padded.
    lengths: int ``[batch]`` valid steps per row (0 allowed).

  Returns:
    float ``[batch, time + 1, channels]`` and int32 ``[batch]`` lengths >= 1.
  """

  def __init__(self, pad_value, **kwargs):
    super().__init__(**kwargs)
    self.pad_value = tuple(float(v) for v in pad_value)

  def call(self, sequence, lengths):
    lengths = ops.cast(lengths, "int32")
    valid = ops.arange(ops.shape(sequence)[1])[None, :, None] < lengths[:, None, None]
    pad = ops.cast(ops.convert_to_tensor(self.pad_value), sequence.dtype)
    sequence = ops.where(valid, sequence, pad)
    extra = ops.broadcast_to(pad, (ops.shape(sequence)[0], 1, len(self.pad_value)))
    return ops.concatenate([sequence, extra], axis=1), ops.maximum(lengths, 1)

  def compute_output_spec(self, sequence, lengths):
    steps = None if sequence.shape[1] is None else sequence.shape[1] + 1
    return (keras.KerasTensor((sequence.shape[0], steps, sequence.shape[2]), dtype=sequence.dtype),
            keras.KerasTensor(lengths.shape, dtype="int32"))

  def get_config(self):
    return {**super().get_config(), "pad_value": self.pad_value}


def recurrent_padding(sequence, lengths, pad_value):
  """`RecurrentPadding`: ``(sequence [b, t + 1, c], lengths >= 1 [b])``."""
  return RecurrentPadding(pad_value)(sequence, lengths)


def zero_padding(sequence, mask):
  """Sets padded steps to 0 so that 'same' convolutions cannot leak them into valid ones."""
  return sequence * ops.cast(mask, sequence.dtype)[..., None]


def logits(features, num_classes):
  """The classifier; float32 even under a mixed-precision policy."""
  return layers.Dense(num_classes, dtype="float32", name="logits")(features)


def padding_that_fits(size, kernel, stride=1):
  """'valid' when the layer leaves at least one position, else 'same' (small inputs)."""
  return "valid" if (size - kernel) // stride + 1 >= 1 else "same"


def output_size(size, kernel, stride, padding):
  """int, the positions a conv or pool layer leaves of ``size`` ("valid" or "same" ``padding``)."""
  return (size - kernel) // stride + 1 if padding == "valid" else -(-size // stride)


# Batch norm as the framework a model's reference numbers came from trained it.
# PyTorch's momentum=0.1 weighs the new batch (running = 0.9 running + 0.1
# batch): Keras' momentum is the weight of the old value, so 0.9; eps 1e-5.
TORCH_BATCH_NORM = {"momentum": 0.9, "epsilon": 1e-5}
# Keras' defaults, also those of TF 1's tf.layers.batch_normalization.
KERAS_BATCH_NORM = {"momentum": 0.99, "epsilon": 1e-3}


def torch_batch_norm(name):
  """A BatchNormalization layer with PyTorch's defaults (`TORCH_BATCH_NORM`)."""
  return layers.BatchNormalization(name=name, **TORCH_BATCH_NORM)


INITS = ("keras", "torch")


def leaf_layers(model):
  """Every layer of a model, nested models and Bidirectional wrappers opened."""
  for layer in model.layers:
    if isinstance(layer, keras.Model):
      yield from leaf_layers(layer)
    elif isinstance(layer, layers.Bidirectional):
      yield from (layer.forward_layer, layer.backward_layer)
    else:
      yield layer


def _uniform(variable, bound):
  variable.assign(keras.random.uniform(variable.shape, -bound, bound, dtype=variable.dtype))


def torch_initialize(model):
  """Redraws the weights of ``model`` as PyTorch initialises the same layers.

  Convolutions and dense layers: kernel and bias uniform in +-1/sqrt(fan_in)
  (PyTorch's Kaiming-uniform with a = sqrt(5), and its bias rule), fan_in =
  input channels x kernel size; Keras draws kernels Glorot-uniform and zero
  biases. LSTMs: every weight uniform in +-1/sqrt(units), the bias the sum of
  PyTorch's two (b_ih + b_hh); Keras draws orthogonal recurrent kernels and a
  forget-gate bias of 1. Batch norm starts the same in both (1 and 0).
  Draws from Keras' global seed generator (`keras.utils.set_random_seed`).
  """
  for layer in leaf_layers(model):
    if isinstance(layer, (layers.Conv1D, layers.Conv2D, layers.Dense)):
      bound = 1 / math.sqrt(math.prod(layer.kernel.shape[:-1]))
      _uniform(layer.kernel, bound)
      if layer.use_bias:
        _uniform(layer.bias, bound)
    elif isinstance(layer, layers.LSTM):
      bound = 1 / math.sqrt(layer.cell.units)
      _uniform(layer.cell.kernel, bound)
      _uniform(layer.cell.recurrent_kernel, bound)
      bias = layer.cell.bias
      bias.assign(keras.random.uniform(bias.shape, -bound, bound, dtype=bias.dtype)
                  + keras.random.uniform(bias.shape, -bound, bound, dtype=bias.dtype))
