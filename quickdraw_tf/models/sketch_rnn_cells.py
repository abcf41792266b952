"""The Sketch-RNN decoder's recurrent cells (magenta's LSTMCell, LayerNormLSTMCell, HyperLSTMCell) and their loop.

`DecoderCell`: an LSTM cell with recurrent dropout on its candidate and
optional layer normalisation; `HyperLSTMCell`: HyperLSTM (Ha, Dai & Le 2016);
`decode_sequence`: a cell over every step under teacher forcing. The model
that uses them is `sketch_rnn`.
"""

import keras
from keras import layers
from keras import ops
import tensorflow as tf


class DecoderCell(layers.Layer):
  """An LSTM cell with recurrent dropout on its candidate and optional layer normalisation.

  Call args: inputs float ``[b, d]``, states ``[h [b, u], c [b, u]]``.
  Returns: ``h`` and ``[h, c]``.
  """

  def __init__(self, units, recurrent_dropout=0.0, layer_norm=False, forget_bias=1.0, seed=None, **kwargs):
    super().__init__(**kwargs)
    self.units, self.recurrent_dropout, self.layer_norm = units, recurrent_dropout, layer_norm
    self.forget_bias = forget_bias
    self.state_size = [units, units]
    self.output_size = units
    self.seed_generator = keras.random.SeedGenerator(seed)
    if layer_norm:
      self.gate_norms = [layers.LayerNormalization(name=f"gate{i}_norm") for i in range(4)]
      self.cell_norm = layers.LayerNormalization(name="cell_norm")

  def build(self, input_shape):
    self.input_kernel = self.add_weight((input_shape[-1], 4 * self.units), "glorot_uniform", name="input_kernel")
    self.recurrent_kernel = self.add_weight((self.units, 4 * self.units), "orthogonal", name="recurrent_kernel")
    self.bias = self.add_weight((4 * self.units,), "zeros", name="bias")
    if self.layer_norm:
      for norm in self.gate_norms:
        norm.build((None, self.units))
      self.cell_norm.build((None, self.units))

  def call(self, inputs, states, training=False):
    h, c = states
    gates = ops.matmul(inputs, self.input_kernel) + ops.matmul(h, self.recurrent_kernel) + self.bias
    h, c = self.update(ops.split(gates, 4, axis=-1), c, training)
    return h, [h, c]

  def update(self, gates, c, training=False, candidate_mask=None):
    """The LSTM step from its pre-activations: new ``(h, c)``, float ``[b, u]`` each.

    Args:
      gates: 4 float ``[b, u]``: input gate, candidate, forget gate, output
        gate (magenta's i, j, f, o), before normalisation and the forget bias.
      c: float ``[b, u]``, the previous cell.
      training: drop the candidate (recurrent dropout), unless
        ``candidate_mask`` (float ``[b, u]``, zeros and ``1 / keep``) is given
        to multiply it.
    """
    if self.layer_norm:
      gates = [norm(g) for norm, g in zip(self.gate_norms, gates)]
    input_gate, candidate, forget_gate, output_gate = gates
    candidate = ops.tanh(candidate)
    if candidate_mask is not None:
      candidate = candidate * candidate_mask
    elif training and self.recurrent_dropout:
      candidate = keras.random.dropout(candidate, self.recurrent_dropout, seed=self.seed_generator)
    c = c * ops.sigmoid(forget_gate + self.forget_bias) + ops.sigmoid(input_gate) * candidate
    h = ops.tanh(self.cell_norm(c) if self.layer_norm else c) * ops.sigmoid(output_gate)
    return h, c


class HyperLSTMCell(DecoderCell):
  """HyperLSTM (Ha, Dai & Le 2016, as magenta's ``HyperLSTMCell``): a small LSTM rescales the main one each step.

  The hyper LSTM (``hyper_units``, layer-normalised, no dropout) reads ``[x;
  h]``; from its new output ``hyper_h`` come, per gate k of (i, j, f, o),
  embeddings ``z = W hyper_h (+ 1-initialised bias)`` (``hyper_embedding``
  wide) and from those per-unit vectors, so that the gate's pre-activation
  is ``d_x,k(z) * (W_x x)_k + d_h,k(z) * (W_h h)_k + b_k(z) + b_k`` (the
  paper's weight scaling: each row of ``W_x``, ``W_h`` scaled, a dynamic
  bias). The layer-normalised LSTM step of `DecoderCell` follows, with its
  recurrent dropout and forget bias.

  Call args: inputs float ``[b, d]``, states ``[h [b, u], c [b, u], hyper_h
  [b, hu], hyper_c [b, hu]]``.
  Returns: ``h`` and the new states, in that order.
  """

  def __init__(self, units, hyper_units=256, hyper_embedding=32, recurrent_dropout=0.0, forget_bias=1.0, seed=None,
               **kwargs):
    super().__init__(units, recurrent_dropout, layer_norm=True, forget_bias=forget_bias, seed=seed, **kwargs)
    self.hyper_units, self.hyper_embedding = hyper_units, hyper_embedding
    self.state_size = [units, units, hyper_units, hyper_units]
    self.hyper_cell = DecoderCell(hyper_units, layer_norm=True, forget_bias=forget_bias, name="hyper_cell")

  def build(self, input_shape):
    super().build(input_shape)
    self.hyper_cell.build((None, input_shape[-1] + self.units))
    e, u = self.hyper_embedding, self.units
    # magenta's start: every row's scale is 0.1 (embeddings of ones through 0.1 / e; Cooijmans et al.'s small-gamma
    # trick), which the layer norm all but undoes, and the dynamic bias is 0: the hyper network learns to steer.
    self.scale_embedding_kernel = self.add_weight((self.hyper_units, 8 * e), "zeros", name="scale_embedding_kernel")
    self.scale_embedding_bias = self.add_weight((8 * e,), "ones", name="scale_embedding_bias")
    self.scale_projection = self.add_weight((8, e, u), keras.initializers.Constant(0.1 / e), name="scale_projection")
    self.bias_embedding_kernel = self.add_weight((self.hyper_units, 4 * e),
                                                 keras.initializers.RandomNormal(stddev=0.01),
                                                 name="bias_embedding_kernel")
    self.bias_projection = self.add_weight((4, e, u), "zeros", name="bias_projection")

  def per_gate(self, hyper_h, kernel, projection, bias=0.0):
    """float ``[b, k u]``: k per-unit vectors, gate-major as the kernels' columns, from ``hyper_h`` ``[b, hu]``.

    ``kernel`` ``[hu, k e]`` and ``bias`` make k embeddings, ``projection``
    ``[k, e, u]`` maps each to its gate's u units.
    """
    k, e, u = projection.shape
    z = ops.reshape(ops.matmul(hyper_h, kernel) + bias, (-1, k, e))
    return ops.reshape(ops.einsum("bke,keu->bku", z, projection), (-1, k * u))

  def call(self, inputs, states, training=False):
    h, c, hyper_h, hyper_c = states
    hyper_h, (_, hyper_c) = self.hyper_cell(ops.concatenate([inputs, h], axis=-1), [hyper_h, hyper_c],
                                            training=training)
    scales = self.per_gate(hyper_h, self.scale_embedding_kernel, self.scale_projection, self.scale_embedding_bias)
    x_scale, h_scale = ops.split(scales, 2, axis=-1)
    # The bias embeddings z_b have no bias of their own (the paper's and magenta's).
    dynamic_bias = self.per_gate(hyper_h, self.bias_embedding_kernel, self.bias_projection)
    gates = (x_scale * ops.matmul(inputs, self.input_kernel) + h_scale * ops.matmul(h, self.recurrent_kernel)
             + dynamic_bias + self.bias)
    h, c = self.update(ops.split(gates, 4, axis=-1), c, training)
    return h, [h, c, hyper_h, hyper_c]


def decode_sequence(cell, inputs, state, training=False):
  """`DecoderCell` over every step under teacher forcing: float ``[b, t, u]`` outputs ``h``.

  The same as ``layers.RNN(cell)``, faster: the input projection ``inputs
  W_x + b`` of all steps is one product before the recurrence, and the
  recurrent dropout's masks are drawn at once (the same rate, other draws).

  Args:
    inputs: float ``[b, t, d]``; state: ``[h, c]``, float ``[b, u]`` each.
  """
  if not cell.built:
    cell.build(tuple(inputs.shape))
  dtype = cell.compute_dtype
  projected = ops.matmul(ops.cast(inputs, dtype), ops.cast(cell.input_kernel, dtype)) + ops.cast(cell.bias, dtype)
  projected = ops.transpose(projected, (1, 0, 2))  # Time-major.
  recurrent_kernel = ops.cast(cell.recurrent_kernel, dtype)
  keep = None
  if training and cell.recurrent_dropout:
    keep = keras.random.dropout(ops.ones((*ops.shape(projected)[:2], cell.units), dtype), cell.recurrent_dropout,
                                seed=cell.seed_generator)

  def step(carry, x):
    h, c = carry
    gates, mask = (x, None) if keep is None else x
    return cell.update(ops.split(gates + ops.matmul(h, recurrent_kernel), 4, axis=-1), c, candidate_mask=mask)

  hidden, _ = tf.scan(step, projected if keep is None else (projected, keep), tuple(ops.cast(s, dtype) for s in state))
  return ops.transpose(hidden, (1, 0, 2))
