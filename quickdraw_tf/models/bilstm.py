"""The sketch-rnn encoder used as a classifier (report section 3.3.2).

A bidirectional LSTM of 256 units per direction over stroke-5 input; the final
states of both directions concatenated (512) feed dense logits.
"""

import keras
from keras import layers

from quickdraw_tf.models import common

UNITS = 256
STROKE5_PADDING = (0.0, 0.0, 0.0, 0.0, 1.0)


def encoder(stroke5, ink_length, name="bilstm", units=UNITS):
  """stroke-5 ``[b, t, 5]`` and int ``[b]`` lengths -> features float ``[b, 512]``.

  The final states of both directions, concatenated. Padding rows are
  stroke-5's end-of-drawing ``(0, 0, 0, 0, 1)``; the right-padded mask and
  the LSTM's default arguments let it run on the cuDNN kernel on GPU.
  """
  stroke5, lengths = common.recurrent_padding(stroke5, ink_length, STROKE5_PADDING)
  mask = common.time_mask(stroke5, lengths)
  return layers.Bidirectional(layers.LSTM(units), name=name)(stroke5, mask=mask)


def build(num_classes, **unused):
  """keras.Model: {ink [b, t, 5], ink_length [b]} -> logits float32 [b, classes]."""
  ink, ink_length = common.ink_inputs(5)
  features = encoder(ink, ink_length)
  return keras.Model({"ink": ink, "ink_length": ink_length}, common.logits(features, num_classes), name="bilstm")
