"""Google's QuickDraw tutorial classifier: conv1d stack -> 3 BiLSTM -> sum over time.

As tensorflow/models tutorials/rnn/quickdraw/train_model.py with its defaults
(cell_type "lstm"): filters 48, 64, 96 of widths 5, 5, 3, linear activation,
no pooling, stride 1, 'same' padding; optional batch norm (off by default;
TF 1's tf.layers.batch_normalization defaults, momentum 0.99 and epsilon
1e-3, which are Keras' too); dropout 0.3 before every conv but the first;
three bidirectional LSTM layers of 128 units, each layer's outputs dropped
out at 0.3 (the tutorial's DropoutWrapper(output_keep_prob=0.7) on every
cell; Dropout layers, not LSTM(dropout=...), keep the LSTMs on cuDNN);
outputs summed over the valid time steps; dense logits. configs/rnn.cfg has
its optimiser: Adam 1e-4, clipping 9, batch 8, a constant rate.

Differences from the tutorial, and why: its LSTMCell draws the recurrent
weights Glorot-uniform with the input weights (Keras: orthogonal); a masked
Keras LSTM runs on cuDNN on GPU where its tf.nn.dynamic_rnn does not. ``activation`` and ``pooling`` reproduce the
tutorial notes' ablation (linear 75%, ReLU 73%, ReLU + pooling 70%).
"""

import keras
from keras import layers
from keras import ops

from quickdraw_tf.models import common
from quickdraw_tf.models import fused_lstm

FILTERS = (48, 64, 96)
WIDTHS = (5, 5, 3)
LSTM_UNITS = 128
LSTM_LAYERS = 3


def build(num_classes, activation="linear", pooling=0, batch_norm=False, dropout=0.3):
  """Builds the model.

  Args:
    num_classes: int.
    activation: of the convolutions, "linear" (tutorial) or "relu".
    pooling: 0, or the size and stride of a max-pool after each conv (the
      ablation's 4). Padding invariance holds without pooling.
    batch_norm: normalise each conv's input.
    dropout: before every conv but the first and after every BiLSTM layer.

  Returns:
    keras.Model: {ink [b, t, 3], ink_length [b]} -> logits float32 [b, classes].
  """
  ink, ink_length = common.ink_inputs(3)
  # Zero padding, lengths >= 1: masks the cuDNN LSTM kernel accepts.
  x, lengths = common.recurrent_padding(ink, ink_length, (0.0, 0.0, 0.0))
  for i, (filters, width) in enumerate(zip(FILTERS, WIDTHS)):
    if batch_norm:
      x = layers.BatchNormalization(name=f"conv{i + 1}_bn", **common.KERAS_BATCH_NORM)(x)
    if i > 0 and dropout:
      x = layers.Dropout(dropout, name=f"conv{i + 1}_dropout")(x)
    x = common.zero_padding(x, common.time_mask(x, lengths))
    x = layers.Conv1D(filters, width, padding="same", activation=activation, name=f"conv{i + 1}")(x)
    if pooling:
      x = layers.MaxPooling1D(pooling, pooling, padding="same", name=f"pool{i + 1}")(x)
      lengths = (lengths + pooling - 1) // pooling
  # A right-padded mask and the LSTM's default arguments (tanh, sigmoid, bias,
  # no recurrent dropout, no unrolling): the cuDNN kernel on GPU.
  mask = common.time_mask(x, lengths)
  for i in range(LSTM_LAYERS):
    x = layers.Bidirectional(fused_lstm.LSTM(LSTM_UNITS, return_sequences=True), name=f"lstm{i + 1}")(x, mask=mask)
    if dropout:
      x = layers.Dropout(dropout, name=f"lstm{i + 1}_dropout")(x)
  # The tutorial sums the BiLSTM outputs over time: only over real steps.
  x = ops.sum(common.zero_padding(x, mask), axis=1)
  return keras.Model({"ink": ink, "ink_length": ink_length}, common.logits(x, num_classes), name="rnn")
