"""The sketch-rnn encoder used as a classifier (report section 3.3.2).

A bidirectional LSTM of 256 units per direction over stroke-5 input; the final
states of both directions concatenated (512) feed dense logits.

Against the reference report's code (LogCreative/quickdraw-classifier,
models/sketchrnn.py, data from stroke_loader.py), what differs and why:
  * Which state: the report classifies ``out[-1]``, the BiLSTM's output at
    the last padded step of sequences padded to the longest drawing with
    (0, 0, 0, 0, 1) rows and no packing: its forward half has run over every
    padding row, its backward half has seen only that one padding row. Ours
    masks the padding: the forward state at each drawing's last point and the
    backward state after the whole drawing, so both halves carry the drawing.
  * Input scaling: the report drops drawings of <= 10 or > 1000 points and
    divides offsets by their standard deviation over the data set (sketch-rnn's
    normalisation); ours reads the records' stroke-5 as
    `quickdraw_tf.pipelines.data` makes it.
  * Initialisation: PyTorch's uniform +-1/sqrt(256) for every LSTM weight and
    both biases there; Keras' Glorot / orthogonal / forget-bias 1 here unless
    ``init="torch"``.
  * No batch norm in either.
"""

import keras
from keras import layers

from quickdraw_tf.models import common
from quickdraw_tf.models import fused_lstm

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
  return layers.Bidirectional(fused_lstm.LSTM(units), name=name)(stroke5, mask=mask)


def build(num_classes):
  """keras.Model: {ink [b, t, 5], ink_length [b]} -> logits float32 [b, classes]."""
  ink, ink_length = common.ink_inputs(5)
  features = encoder(ink, ink_length)
  return keras.Model({"ink": ink, "ink_length": ink_length}, common.logits(features, num_classes), name="bilstm")
