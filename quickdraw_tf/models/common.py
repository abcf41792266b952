"""Pieces every model shares: inputs, sequence masks, the float32 logits head."""

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
  return (size - kernel) // stride + 1 if padding == "valid" else -(-size // stride)
