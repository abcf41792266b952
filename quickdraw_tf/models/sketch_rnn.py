"""Sketch-RNN (Ha & Eck 2017): a sequence-to-sequence VAE that draws stroke-5 sketches.

Encoder: the `bilstm` classifier's bidirectional LSTM (256 units each way)
over stroke-5 -> ``mu``, ``sigma_hat`` (``N_z`` = 128), ``z = mu + exp(sigma_hat
/ 2) * eps``. Decoder: an LSTM (512 units) whose initial ``[h; c]`` is
``tanh(W_z z + b_z)``, fed ``[S_{i-1}; z]`` from ``S_0 = (0, 0, 1, 0, 0)``, with
``6 M + 3`` outputs per step: M = 20 bivariate normals for ``(dx, dy)`` (the
first ``6 M`` values, 6 per component: ``pi_logit, mu_x, mu_y, log sigma_x,
log sigma_y, atanh rho``) and 3 pen-state logits. The decoder's cell is
``decoder_cell`` (the cells are `sketch_rnn_cells`): "lstm", "layer_norm" (normalised gates and cell) or "hyper"
(HyperLSTM, whose state adds the hyper LSTM's ``[h; c]``, also from ``z``).
The unconditional variant (the notes' 3.3) has no encoder and a zero initial
state.

The model reads ``{"strokes": float32 [batch, N_max, 5], "length": int32
[batch]}`` (`sketch_rnn_data`: offsets divided by the run's scale factor,
rows past ``length`` are ``(0, 0, 0, 0, 1)``) and computes its own loss, so
``fit`` trains it with an optimizer alone. Differences from magenta's
TF1 ``sketch_rnn`` (the reference implementation): the mixture density is
evaluated in log space (magenta adds 1e-6 to the density before the log,
which caps a step's loss at 13.8); the encoder has no recurrent dropout (it
is the package's cuDNN-able `bilstm` encoder).
"""

import dataclasses
import functools
import itertools
import math
import sys

import keras
from keras import layers
from keras import ops
import tensorflow as tf

from quickdraw_tf import cli
from quickdraw_tf import progress
from quickdraw_tf.models import bilstm
from quickdraw_tf.models import common
from quickdraw_tf.models import sketch_rnn_cells

START_OF_SKETCH = (0.0, 0.0, 1.0, 0.0, 0.0)
END_OF_SKETCH = (0.0, 0.0, 0.0, 0.0, 1.0)
PARAMS_PER_COMPONENT = 6
DECODER_CELLS = ("lstm", "layer_norm", "hyper")  # magenta's LSTMCell, LayerNormLSTMCell, HyperLSTMCell


@dataclasses.dataclass(frozen=True)
class HParams:
  """The paper's defaults (appendix; magenta where the paper is silent)."""
  conditional: bool = True
  encoder_units: int = 256  # per direction
  latent_size: int = 128  # N_z
  decoder_units: int = 512
  num_mixtures: int = 20  # M
  recurrent_dropout: float = 0.1  # keep 0.9, on the cell's candidate (Semeniuta et al.), as magenta
  decoder_cell: str = "lstm"  # one of DECODER_CELLS
  layer_norm: bool = False  # True turns "lstm" into "layer_norm": the older spelling, kept for existing runs (warns)
  hyper_units: int = 256  # the "hyper" cell's small LSTM (magenta's hyper_num_units)
  hyper_embedding: int = 32  # its embeddings z per gate (magenta's hyper_embedding_size)
  kl_weight: float = 0.5  # w_KL
  kl_min: float = 0.2  # KL_min (magenta's kl_tolerance)
  kl_eta_min: float = 0.01  # eta_min
  kl_decay: float = 0.99995  # R (magenta's kl_decay_rate)
  learning_rate_decay: float = 0.9999  # lr_t = (lr - min) decay^t + min, magenta's decay_rate; 1: constant
  min_learning_rate: float = 1e-5  # magenta's min_learning_rate
  random_scale_factor: float = 0.15  # training drawings' x and y each scaled by 1 +- up to this, as magenta
  augment_stroke_prob: float = 0.1  # a stroke's inner point dropped with this probability, as magenta
  max_seq_len: int = 250  # N_max: sketch_rnn_train sets it to the longest training drawing, as magenta
  scale_factor: float = 1.0  # offsets were divided by it (computed on the training split)

  def __post_init__(self):
    cli.check_choice(self.decoder_cell, DECODER_CELLS, "sketch_rnn decoder_cell")
    if not 0 <= self.random_scale_factor < 1:  # NaN fails too
      raise ValueError(f"sketch_rnn random_scale_factor must be in [0, 1), not {self.random_scale_factor}")
    if not 0 <= self.augment_stroke_prob <= 1:
      raise ValueError(f"sketch_rnn augment_stroke_prob must be in [0, 1], not {self.augment_stroke_prob}")


def decoder_cell(hparams):
  """The decoder's cell for ``hparams.decoder_cell`` (see `DECODER_CELLS`), named "decoder_cell"."""
  h = hparams
  if h.decoder_cell == "hyper":  # Layer-normalised always, as magenta's HyperLSTMCell by default.
    return sketch_rnn_cells.HyperLSTMCell(h.decoder_units, h.hyper_units, h.hyper_embedding, h.recurrent_dropout,
                                          name="decoder_cell")
  return sketch_rnn_cells.DecoderCell(h.decoder_units, h.recurrent_dropout,
                                      h.layer_norm or h.decoder_cell == "layer_norm", name="decoder_cell")


def mixture_params(outputs, num_mixtures):
  """Splits decoder outputs ``[..., 6M + 3]`` into the mixture and pen distributions.

  Returns:
    dict of float32 ``[..., M]``: ``log_pi`` (log softmax), ``mu_x``,
    ``mu_y``, ``sigma_x``, ``sigma_y`` (exp), ``rho`` (tanh); and
    ``pen_logits`` ``[..., 3]``.
  """
  outputs = ops.cast(outputs, "float32")
  mixture = ops.reshape(outputs[..., :PARAMS_PER_COMPONENT * num_mixtures],
                        (*ops.shape(outputs)[:-1], num_mixtures, PARAMS_PER_COMPONENT))
  pi, mu_x, mu_y, log_sigma_x, log_sigma_y, rho = [mixture[..., k] for k in range(PARAMS_PER_COMPONENT)]
  return {"log_pi": ops.log_softmax(pi, axis=-1), "mu_x": mu_x, "mu_y": mu_y, "sigma_x": ops.exp(log_sigma_x),
          "sigma_y": ops.exp(log_sigma_y), "rho": ops.tanh(rho),
          "pen_logits": outputs[..., PARAMS_PER_COMPONENT * num_mixtures:]}


def mixture_log_density(dx, dy, params):
  """log p(dx, dy) under the mixture of bivariate normals: float32, the shape of ``dx``."""
  dx, dy = dx[..., None], dy[..., None]
  sx, sy, rho = params["sigma_x"], params["sigma_y"], params["rho"]
  nx, ny = (dx - params["mu_x"]) / sx, (dy - params["mu_y"]) / sy
  one_minus_rho2 = ops.maximum(1.0 - rho * rho, 1e-6)  # tanh can round to +-1
  z = nx * nx + ny * ny - 2.0 * rho * nx * ny
  log_normal = -z / (2.0 * one_minus_rho2) - ops.log(2.0 * math.pi * sx * sy * ops.sqrt(one_minus_rho2))
  return ops.logsumexp(params["log_pi"] + log_normal, axis=-1)


def reconstruction_loss(strokes, length, outputs, num_mixtures, n_max):
  """The notes' ``L_s`` and ``L_p``, each summed over a drawing's steps, divided by ``N_max``, averaged over the batch.

  A drawing's steps are its ``N_s`` strokes and the end-of-sketch row after
  them (where the model learns to stop): so the value does not depend on how
  far the batch is padded, and ``N_max`` is the data's (the run's
  ``max_seq_len``), not the batch's width. The paper's L_p also counts the
  end-of-sketch rows after that one (to ``N_max``), which a sampler, stopping
  at the first, never reaches; they are what padding to the batch, not to
  ``N_max``, leaves out.

  Args:
    strokes: float32 ``[b, t, 5]`` targets (any ``t >= length + 1``); rows
      from ``length`` on are end-of-sketch rows.
    length: int ``[b]`` ``N_s``: L_s counts the steps below it, L_p those up
      to it.
    outputs: float ``[b, t, 6M + 3]`` decoder outputs.
    n_max: ``N_max``, the divisor (a number).

  Returns:
    (L_s, L_p) float32 scalars.
  """
  params = mixture_params(outputs, num_mixtures)
  steps = ops.arange(ops.shape(strokes)[1])[None, :]
  length = ops.cast(length, "int32")[:, None]
  log_density = mixture_log_density(strokes[..., 0], strokes[..., 1], params)
  offsets_loss = -ops.sum(log_density * ops.cast(steps < length, "float32"), axis=1) / n_max
  pen_log_q = ops.sum(strokes[..., 2:] * ops.log_softmax(params["pen_logits"], axis=-1), axis=2)
  pen_loss = -ops.sum(pen_log_q * ops.cast(steps <= length, "float32"), axis=1) / n_max
  return ops.mean(offsets_loss), ops.mean(pen_loss)


def kl_loss(mu, sigma_hat):
  """``L_KL = -1 / (2 N_z) sum(1 + sigma_hat - mu^2 - exp(sigma_hat))``, averaged over the batch."""
  return -0.5 * ops.mean(1.0 + sigma_hat - mu * mu - ops.exp(sigma_hat))


def kl_weight(step, hparams):
  """``w_KL (1 - (1 - eta_min) R^step)``: float32 scalar."""
  step = ops.cast(step, "float32")
  return hparams.kl_weight * (1.0 - (1.0 - hparams.kl_eta_min) * ops.power(hparams.kl_decay, step))


class SketchRNN(keras.Model):
  """The model; see the module docstring. ``call`` returns the decoder outputs and the posterior."""

  def __init__(self, hparams=HParams(), **kwargs):
    super().__init__(**kwargs)
    self.hparams = hparams
    h = hparams
    cell = decoder_cell(h)  # Assigned below, after the encoder's layers: the weights' order stays as older runs'.
    if h.conditional:
      strokes, length = common.ink_inputs(5)
      encoded = bilstm.encoder(strokes, length, name="encoder_bilstm", units=h.encoder_units)
      self.encoder = keras.Model([strokes, length], encoded, name="encoder")
      self.posterior = layers.Dense(2 * h.latent_size, name="posterior")  # [mu; sigma_hat]
      self.initial_state = layers.Dense(sum(cell.state_size), activation="tanh", name="initial_state")
    self.cell = cell
    self.decoder = layers.RNN(self.cell, return_sequences=True, name="decoder")
    self.output_layer = layers.Dense(PARAMS_PER_COMPONENT * h.num_mixtures + 3, dtype="float32", name="mixture")
    self.noise_seed = keras.random.SeedGenerator(0)
    self.offsets_tracker = keras.metrics.Mean(name="offsets_loss")  # L_s
    self.pen_tracker = keras.metrics.Mean(name="pen_loss")  # L_p
    self.reconstruction_tracker = keras.metrics.Mean(name="r_loss")  # L_R
    self.kl_tracker = keras.metrics.Mean(name="kl_loss")  # L_KL
    self.kl_weight_tracker = keras.metrics.Mean(name="kl_weight")

  @property
  def latent_size(self):
    return self.hparams.latent_size if self.hparams.conditional else 0

  def encode(self, strokes, length, training=False):
    """float32 ``[b, t, 5]``, int ``[b]`` -> ``(mu, sigma_hat)``, float32 ``[b, N_z]`` each."""
    posterior = ops.cast(self.posterior(self.encoder([strokes, length], training=training)), "float32")
    return posterior[:, :self.hparams.latent_size], posterior[:, self.hparams.latent_size:]

  def decoder_state(self, z, batch_size):
    """The decoder's initial state: ``tanh(W_z z + b_z)`` split, or zeros without an encoder.

    One ``[b, n]`` of the cell's compute dtype per entry of its
    ``state_size``: ``[h, c]``, or ``[h, c, hyper_h, hyper_c]`` for "hyper".
    The hyper LSTM's part comes from ``z`` too, as in magenta, whose initial
    state is ``tanh`` of a projection of ``z`` to the HyperLSTM's whole state.
    """
    sizes = list(self.cell.state_size)
    if not self.hparams.conditional:  # The cell's dtype: `sample`'s loop keeps its state's dtype (mixed precision).
      return [ops.zeros((batch_size, n), self.cell.compute_dtype) for n in sizes]
    return ops.split(self.initial_state(z), list(itertools.accumulate(sizes[:-1])), axis=-1)

  def call(self, inputs, training=False):
    strokes, length = inputs["strokes"], inputs["length"]
    batch_size = ops.shape(strokes)[0]
    start = ops.broadcast_to(ops.convert_to_tensor(START_OF_SKETCH, strokes.dtype), (batch_size, 1, 5))
    decoder_inputs = ops.concatenate([start, strokes[:, :-1]], axis=1)  # [S_0, S_1 .. S_{N_max - 1}]
    results = {}
    z = None
    if self.hparams.conditional:
      mu, sigma_hat = self.encode(strokes, length, training)
      z = mu + ops.exp(sigma_hat / 2.0) * keras.random.normal(ops.shape(mu), seed=self.noise_seed)
      results.update(mu=mu, sigma_hat=sigma_hat)
      steps = ops.shape(decoder_inputs)[1]
      decoder_inputs = ops.concatenate(
          [decoder_inputs, ops.broadcast_to(z[:, None, :], (batch_size, steps, self.hparams.latent_size))], axis=2)
    state = self.decoder_state(z, batch_size)
    if isinstance(self.cell, sketch_rnn_cells.HyperLSTMCell):
      hidden = self.decoder(decoder_inputs, initial_state=state, training=training)
    else:
      hidden = sketch_rnn_cells.decode_sequence(self.cell, decoder_inputs, state, training)
    results["outputs"] = self.output_layer(hidden)
    return results

  def loss_terms(self, inputs, results, training=True):
    """dict of float32 scalars: offsets (L_s), pen (L_p), r (L_R), kl (L_KL), kl_weight, total.

    Training anneals the KL weight with the optimizer's step; evaluation
    uses the full ``w_KL``, so that eval losses compare across steps.
    """
    offsets, pen = reconstruction_loss(inputs["strokes"], inputs["length"], results["outputs"],
                                       self.hparams.num_mixtures, self.hparams.max_seq_len)
    terms = {"offsets": offsets, "pen": pen, "r": offsets + pen, "kl": ops.zeros(()), "kl_weight": ops.zeros(())}
    terms["total"] = terms["r"]
    if self.hparams.conditional:
      terms["kl"] = kl_loss(results["mu"], results["sigma_hat"])
      terms["kl_weight"] = ops.convert_to_tensor(self.hparams.kl_weight, "float32")
      if training and getattr(self, "optimizer", None) is not None:
        terms["kl_weight"] = kl_weight(self.optimizer.iterations, self.hparams)
      terms["total"] = terms["r"] + terms["kl_weight"] * ops.maximum(terms["kl"], self.hparams.kl_min)
    return terms

  def compute_loss(self, x=None, y=None, y_pred=None, sample_weight=None, training=True):
    del y, sample_weight  # The targets are the inputs.
    terms = self.loss_terms(x, y_pred, training)
    for tracker, key in ((self.offsets_tracker, "offsets"), (self.pen_tracker, "pen"),
                         (self.reconstruction_tracker, "r"), (self.kl_tracker, "kl"),
                         (self.kl_weight_tracker, "kl_weight")):
      tracker.update_state(terms[key], sample_weight=ops.shape(x["length"])[0])  # as Keras weighs "loss"
    total = terms["total"] + (ops.sum(self.losses) if self.losses else 0.0)
    # Keras sums the replicas' gradients: each replica's loss is its share.
    return total / tf.distribute.get_strategy().num_replicas_in_sync

  def build_variables(self):
    """Creates the weights (a subclassed model has none until called) with a 2-step batch."""
    self({"strokes": ops.zeros((1, 2, 5)), "length": ops.ones((1,), "int32")})
    return self


def _sample_step(params, temperature, seed):
  """One stroke-5 row ``[b, 5]`` from a step's distributions (magenta's ``sample``).

  Temperature ``tau`` divides the mixture and pen logits and multiplies the
  variances; ``seed`` int32 ``[2]`` makes the draw a pure function of it.
  """
  seeds = tf.random.experimental.stateless_split(seed, 3)
  tau = tf.maximum(tf.cast(temperature, tf.float32), 1e-4)
  component = tf.random.stateless_categorical(params["log_pi"] / tau, 1, seeds[0])
  pick = lambda name: tf.gather(params[name], component, axis=1, batch_dims=1)[:, 0]  # pylint: disable=unnecessary-lambda-assignment
  sx, sy, rho = pick("sigma_x") * tf.sqrt(tau), pick("sigma_y") * tf.sqrt(tau), pick("rho")
  normal = tf.random.stateless_normal([tf.shape(sx)[0], 2], seeds[1])
  dx = pick("mu_x") + sx * normal[:, 0]
  dy = pick("mu_y") + sy * (rho * normal[:, 0] + tf.sqrt(tf.maximum(1.0 - rho * rho, 0.0)) * normal[:, 1])
  pen = tf.random.stateless_categorical(params["pen_logits"] / tau, 1, seeds[2])[:, 0]
  return tf.concat([tf.stack([dx, dy], 1), tf.one_hot(pen, 3)], axis=1)


def sample(model, z, temperature, seed, max_len, prefix=None, prefix_length=None, batch_size=None):
  """Draws sketches with the decoder, one step at a time, in TensorFlow ops.

  A row stops at its first end-of-sketch (p3) or at ``max_len`` steps; the
  steps before ``prefix_length`` are the given prefix (teacher-forced, the
  notes' 4.4 "complete"), the rest are sampled.

  Args:
    model: a built `SketchRNN`.
    z: float32 ``[b, N_z]`` latents (ignored and may be None when
      unconditional; ``batch_size`` then says how many).
    temperature: float scalar ``tau``.
    seed: int ``[2]``: the same seed draws the same sketches.
    max_len: int scalar, the most steps.
    prefix: float32 ``[b, p, 5]`` scaled stroke-5 rows to start from;
      prefix_length: int ``[b]`` rows of it to use (default none).

  Returns:
    strokes: float32 ``[b, max_len, 5]`` in model units (offsets divided by
      the scale factor), one-hot pens, end-of-sketch rows past ``length``.
    length: int32 ``[b]`` rows before the end-of-sketch.
  """
  hp = model.hparams
  batch = tf.shape(z)[0] if hp.conditional else tf.cast(batch_size, tf.int32)
  seed = tf.cast(seed, tf.int32)
  max_len = tf.cast(max_len, tf.int32)
  if prefix is None:
    prefix, prefix_length = tf.zeros([batch, 1, 5]), tf.zeros([batch], tf.int32)
  prefix_length = tf.cast(prefix_length, tf.int32)
  end = tf.constant(END_OF_SKETCH)

  def step(t, row, state, done, length, rows):
    inputs = tf.concat([row, z], 1) if hp.conditional else row
    hidden, state = model.cell(inputs, state, training=False)
    drawn = _sample_step(mixture_params(model.output_layer(hidden), hp.num_mixtures), temperature,
                         tf.random.experimental.stateless_fold_in(seed, t))
    forced = tf.gather(prefix, tf.minimum(t, tf.shape(prefix)[1] - 1), axis=1)
    row = tf.where((t < prefix_length)[:, None], forced, drawn)
    done |= row[:, 4] > 0.5
    row = tf.where(done[:, None], end, row)  # The end-of-sketch row itself moves nowhere.
    length += tf.cast(~done, tf.int32)
    return t + 1, row, state, done, length, rows.write(t, row)

  start = tf.tile(tf.constant([START_OF_SKETCH]), [batch, 1])
  state = model.decoder_state(z, batch)
  loop_vars = (tf.constant(0), start, state, tf.zeros([batch], tf.bool), tf.zeros([batch], tf.int32),
               tf.TensorArray(tf.float32, size=0, dynamic_size=True, element_shape=[None, 5]))
  t, _, _, _, length, rows = tf.while_loop(lambda t, *args: (t < max_len) & ~tf.reduce_all(args[2]), step,
                                           loop_vars)
  strokes = tf.reshape(tf.transpose(rows.stack(), [1, 0, 2]), [batch, t, 5])
  strokes = tf.concat([strokes, tf.tile(end[None, None], [batch, max_len - t, 1])], axis=1)
  return strokes, length


def build(num_classes=0, conditional=True, **options):
  """A built `SketchRNN` (``num_classes`` is ignored: the zoo's builder signature).

  Args:
    **options: `HParams` fields (the run's ``model_options``).
  """
  del num_classes
  name = "sketch_rnn" if conditional else "sketch_rnn_uncond"
  return SketchRNN(make_hparams(conditional, **options), name=name).build_variables()


def make_hparams(conditional=True, **options):
  """The `HParams` of a run's ``model_options``, checked: ValueError (one line) naming the valid names or values."""
  unknown = set(options) - {f.name for f in dataclasses.fields(HParams)}
  if unknown:
    raise ValueError(f"unknown sketch_rnn options {sorted(unknown)}; valid: "
                     f"{', '.join(f.name for f in dataclasses.fields(HParams))}")
  if options.get("layer_norm"):
    _warn_renamed("layer_norm=true", "decoder_cell=layer_norm")
  for field in dataclasses.fields(HParams):
    value = options.get(field.name)
    # float takes an int (JSON writes 1.0 as 1); bool is an int to Python but never a number here, nor a number a bool.
    allowed = (int, float) if field.type is float else (field.type,)
    if field.name in options and (not isinstance(value, allowed) or isinstance(value, bool) != (field.type is bool)):
      raise ValueError(f"sketch_rnn option {field.name}={value!r}: expected a {field.type.__name__}")
  return HParams(conditional=conditional, **options)


@functools.cache  # Once a process: train builds the hparams twice, generate once per model.
def _warn_renamed(old, new):
  progress.write(f"sketch_rnn: model option {old} is deprecated; it is now {new}", sys.stderr)


def build_unconditional(num_classes=0, **options):
  """`build` without the encoder: the decoder alone from a zero state (the notes' 3.3)."""
  return build(num_classes, conditional=False, **options)


def sample_prior(model, num, temperature, seed, max_len):
  """``num`` sketches from ``z ~ N(0, I)`` (or from the zero state when unconditional); see `sample`.

  ``seed`` int ``[2]`` picks both the latents and the strokes.
  """
  latent_seed, stroke_seed = tf.unstack(tf.random.experimental.stateless_split(tf.cast(seed, tf.int32), 2))
  z = tf.random.stateless_normal([num, model.latent_size], latent_seed)
  return sample(model, z, temperature, stroke_seed, max_len, batch_size=num)


def slerp(z0, z1, fractions):
  """Spherical interpolation (the notes' 4.2): float32 ``[n, N_z]`` from ``z0``, ``z1`` ``[N_z]`` and n fractions."""
  z0, z1 = tf.convert_to_tensor(z0, tf.float32), tf.convert_to_tensor(z1, tf.float32)
  fractions = tf.convert_to_tensor(fractions, tf.float32)[:, None]
  cosine = tf.reduce_sum(z0 * z1) / tf.maximum(tf.norm(z0) * tf.norm(z1), 1e-12)
  omega = tf.acos(tf.clip_by_value(cosine, -1.0, 1.0))
  if float(tf.sin(omega)) < 1e-6:  # (Anti)parallel: a straight line.
    return (1.0 - fractions) * z0 + fractions * z1
  return (tf.sin((1.0 - fractions) * omega) * z0 + tf.sin(fractions * omega) * z1) / tf.sin(omega)
