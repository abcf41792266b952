"""Keras' LSTM with a hand-written gradient for its CPU training step (1.1-1.5x faster).

On CPU, Keras runs an LSTM as a ``tf.while_loop`` of small ops, and its
gradient as another: every step of the backward loop multiplies by the
recurrent kernel transposed (a ``MatMul`` with ``transpose_b``, about 3x
slower here than the same product with the operand transposed beforehand) and
accumulates the weight gradients in small per-step products. `lstm_sequence`
gives the loop a hand-written gradient: the backward loop computes only each
step's gate gradients, against a recurrent kernel transposed once, and the
weight and input gradients are then one matrix product each over all steps.
(TensorFlow's fused ``BlockLSTM`` kernel, measured too, trained ``bilstm``
as fast and ``rnn`` slower, and has no bfloat16 or XLA kernel.)

`LSTM` is ``keras.layers.LSTM`` with the same weights and the same results to
float rounding, which takes that path only where it helps and holds:
  * training (inference, hence every export, SavedModel and TFLite file, runs
    Keras' own graph);
  * no GPU or TPU (Keras runs cuDNN there);
  * tanh / sigmoid, a bias, no input or recurrent dropout, statefulness or
    unrolling, and masked steps zeroed in sequence outputs;
  * the mask, if any, right-padded (a prefix of valid steps per row), as
    `common.time_mask` makes it.
Everywhere else it is Keras' LSTM. The class name stays ``LSTM`` so that
layer names, hence checkpoints, are those of ``keras.layers.LSTM``.

Two of its products, each step's ``h @ recurrent_kernel`` and the weight
gradients, run as `eigen_matmul`: with oneDNN on (the package's default),
oneDNN's MatMul ran them 1.4x and 1.5x slower than Eigen's on a 2-core AVX2
CPU, a quarter of ``bilstm``'s training step.
"""

import keras
from keras import layers
import tensorflow as tf


def has_accelerators():
  """Whether TensorFlow sees a GPU or TPU (logical devices)."""
  return bool(tf.config.list_logical_devices("GPU") or tf.config.list_logical_devices("TPU"))


def eigen_matmul(a, b, transpose_a=False):
  """``tf.matmul`` of rank-2 tensors; in float32 on Eigen's kernel even with oneDNN on.

  float32 runs as a batch of one through ``BatchMatMulV3``, which TensorFlow's
  oneDNN rewrite leaves alone (it takes MatMul and BatchMatMulV2), at the cost
  of two free reshapes. Other dtypes stay ``tf.matmul``: BatchMatMulV3 has no
  float16 CPU kernel, and on CPUs with AVX512-BF16 oneDNN's is bfloat16's fast
  kernel. Same results and gradient as ``tf.matmul``.
  """
  if a.dtype != tf.float32:
    return tf.matmul(a, b, transpose_a=transpose_a)
  return tf.raw_ops.BatchMatMulV3(x=a[None], y=b[None], adj_x=transpose_a, Tout=a.dtype)[0]


@keras.saving.register_keras_serializable(package="quickdraw_tf")
class LSTM(layers.LSTM):
  """``keras.layers.LSTM`` with `lstm_sequence`'s gradient in training on CPU (see the module docstring)."""

  def fusable(self):
    """Whether a training call runs `masked_lstm`: its conditions, then no accelerator."""
    cell = self.cell
    plain = (cell.activation is keras.activations.tanh and cell.recurrent_activation is keras.activations.sigmoid
             and cell.use_bias and not (cell.dropout or cell.recurrent_dropout or self.stateful or self.unroll)
             and (self.zero_output_for_mask or not self.return_sequences))
    return plain and not has_accelerators()

  def inner_loop(self, sequences, initial_state, mask, training=False):
    if isinstance(mask, (list, tuple)):
      mask = mask[0]
    if not (training and self.fusable()):
      return super().inner_loop(sequences, initial_state, mask, training=training)
    with tf.name_scope("fused_lstm"):
      return masked_lstm(sequences, initial_state, mask, self.cell, self.go_backwards, self.return_sequences)


def masked_lstm(sequences, initial_state, mask, cell, go_backwards, return_sequences):
  """Keras' masked LSTM loop (``inner_loop``) through `lstm_sequence`.

  Args:
    sequences: float ``[batch, time, features]``.
    initial_state: ``[h, c]``, float ``[batch, units]`` each.
    mask: bool ``[batch, time]``, right-padded, or None.
    cell: the ``keras.layers.LSTMCell`` holding the weights.
    go_backwards: read each row's valid steps last to first (as Keras, whose
      sequence outputs then run in reversed time).
    return_sequences: whether to build the outputs of every step.

  Returns:
    Keras' ``inner_loop`` triple: last output ``[batch, units]``, outputs
    ``[batch, time, units]`` (``[batch, 1, units]`` unless return_sequences),
    final states ``[h, c]``: each row's at its last valid step.
  """
  batch, steps = tf.shape(sequences)[0], tf.shape(sequences)[1]
  lengths = tf.fill([batch], steps) if mask is None else tf.reduce_sum(tf.cast(mask, tf.int32), axis=1)
  inputs = tf.transpose(sequences, [1, 0, 2])  # Time-major.
  if go_backwards:  # Valid steps reversed, padding kept last: the loop runs them first.
    inputs = tf.reverse_sequence(inputs, lengths, seq_axis=0, batch_axis=1)
  h0, c0 = initial_state
  outputs, cell_states = lstm_sequence(inputs, h0, c0, tf.convert_to_tensor(cell.kernel),
                                       tf.convert_to_tensor(cell.recurrent_kernel), tf.convert_to_tensor(cell.bias))
  last = tf.stack([tf.maximum(lengths - 1, 0), tf.range(batch)], axis=1)
  started = (lengths > 0)[:, None]  # An all-masked row keeps its initial state, as in Keras.
  h_last = tf.where(started, tf.gather_nd(outputs, last), h0)
  c_last = tf.where(started, tf.gather_nd(cell_states, last), c0)
  if not return_sequences:
    return h_last, h_last[:, None], [h_last, c_last]
  if go_backwards:
    outputs = tf.reverse_sequence(outputs, lengths, seq_axis=0, batch_axis=1)
  valid = tf.transpose(tf.sequence_mask(lengths, steps))[..., None]
  outputs = tf.transpose(tf.where(valid, outputs, tf.zeros_like(outputs)), [1, 0, 2])
  if go_backwards:  # Keras gives a backward layer's outputs in the order it read them.
    outputs = tf.reverse(outputs, [1])
  return h_last, outputs, [h_last, c_last]


@tf.custom_gradient
def lstm_sequence(inputs, h0, c0, kernel, recurrent_kernel, bias):
  """The LSTM over every step of every row, with a hand-written gradient (see the module docstring).

  Args:
    inputs: float ``[time, batch, features]``, time-major.
    h0, c0: float ``[batch, units]``.
    kernel: ``[features, 4 units]``; recurrent_kernel: ``[units, 4 units]``;
      bias: ``[4 units]``; gate blocks in Keras' order (i, f, c, o).

  Returns:
    outputs h and cell states c of every step, float ``[time, batch, units]`` each.
  """
  steps, batch, units = tf.shape(inputs)[0], tf.shape(inputs)[1], tf.shape(h0)[1]
  # [time * batch, last]; the last size given, as -1 cannot be inferred for an empty batch.
  flat = lambda x: tf.reshape(x, [steps * batch, tf.shape(x)[2]])  # pylint: disable=unnecessary-lambda-assignment
  projected = tf.reshape(tf.matmul(flat(inputs), kernel) + bias, [steps, batch, 4 * units])
  new_array = lambda: tf.TensorArray(inputs.dtype, size=steps)  # pylint: disable=unnecessary-lambda-assignment

  def forward(t, h, c, hs, cs, sigmoids, candidates):
    z = projected[t] + eigen_matmul(h, recurrent_kernel)
    # Sigmoid over all four blocks (the candidate's is unused): one op, and nothing to concatenate for the backward.
    gates = tf.sigmoid(z)
    i, f, _, o = tf.split(gates, 4, axis=1)
    candidate = tf.tanh(z[:, 2 * units:3 * units])
    c = f * c + i * candidate
    h = o * tf.tanh(c)
    return t + 1, h, c, hs.write(t, h), cs.write(t, c), sigmoids.write(t, gates), candidates.write(t, candidate)

  arrays = tuple(new_array() for _ in range(4))
  _, _, _, *arrays = tf.while_loop(lambda t, *_: t < steps, forward, (0, h0, c0, *arrays))
  outputs, cell_states, sigmoids, candidates = (a.stack() for a in arrays)

  def gradient(d_outputs, d_cell_states):
    i, f, _, o = tf.split(sigmoids, 4, axis=2)
    tanh_c = tf.tanh(cell_states)
    c_prev = tf.concat([c0[None], cell_states[:-1]], 0)
    # dz = (dc, dc, dc, dh) * local: every gate's pre-activation gradient from the step's dh and dc alone.
    local = tf.concat([candidates * i * (1 - i), c_prev * f * (1 - f), i * (1 - candidates * candidates),
                       tanh_c * o * (1 - o)], axis=2)
    dc_from_h = o * (1 - tanh_c * tanh_c)
    d_cell_states = tf.zeros_like(cell_states) if d_cell_states is None else d_cell_states
    # Transposed once: a MatMul with transpose_b ran ~3x slower on this CPU.
    recurrent_t = tf.transpose(recurrent_kernel)

    def backward(t, dh_next, dc_next, dzs):
      dh = d_outputs[t] + dh_next
      dc = d_cell_states[t] + dc_next + dh * dc_from_h[t]
      dz = tf.concat([dc, dc, dc, dh], axis=1) * local[t]
      return t - 1, tf.matmul(dz, recurrent_t), dc * f[t], dzs.write(t, dz)

    _, dh0, dc0, dzs = tf.while_loop(lambda t, *_: t >= 0, backward,
                                     (steps - 1, tf.zeros_like(h0), tf.zeros_like(c0), new_array()))
    dz = flat(dzs.stack())
    h_prev = tf.concat([h0[None], outputs[:-1]], 0)
    return (tf.reshape(tf.matmul(dz, tf.transpose(kernel)), tf.shape(inputs)), dh0, dc0,
            eigen_matmul(flat(inputs), dz, transpose_a=True), eigen_matmul(flat(h_prev), dz, transpose_a=True),
            tf.reduce_sum(dz, axis=0))

  return (outputs, cell_states), gradient
