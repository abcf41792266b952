"""What a sequence model reads in each stroke: per-step rnn contributions or gradient saliency, drawn on the ink."""

import weakref

import keras
import numpy as np
from PIL import Image
from PIL import ImageDraw
import tensorflow as tf

from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.drawings import raster
from quickdraw_tf.figures import conv
from quickdraw_tf.figures.inputs import VisualizeError
from quickdraw_tf.training import summaries


def _summed_sequence(model):
  """The ``[b, t, d]`` tensor whose sum over time feeds ``logits`` (rnn), or VisualizeError."""
  summed = model.get_layer("logits").input
  operation = summed._keras_history.operation  # pylint: disable=protected-access
  if type(operation).__name__ != "Sum":
    raise VisualizeError(f"model {model.name!r}: its logits do not read a sum over time steps")
  return operation._inbound_nodes[0].input_tensors[0]  # pylint: disable=protected-access


def time_step_pooling(model):
  """How many ink steps one step of the rnn's BiLSTM covers: the product of its 1-D pooling sizes (1 without)."""
  pool = 1
  for _, layer in conv.nested_layers(model):
    if isinstance(layer, keras.layers.MaxPooling1D):
      pool *= layer.pool_size[0]
  return pool


_GRAPHS = weakref.WeakKeyDictionary()  # model -> {name: tf.function}: traced once a model, not once a call.


def _graph(model, name, build):
  """``build()`` (a function of tensors) as a `tf.function` kept for ``model``: one trace for every length.

  Eager Keras runs an LSTM a Python step at a time (about 50 ms a step for
  the rnn on 2 cores: 25 s for 500 points); the traced graph a hundredth of that.
  """
  graphs = _GRAPHS.setdefault(model, {})
  if name not in graphs:
    graphs[name] = tf.function(build(), reduce_retracing=True)
  return graphs[name]


def _contributions_graph(model):
  sub = keras.Model(model.input, [_summed_sequence(model), model.output])
  return lambda features: sub(features, training=False)


def _saliency_graph(model):
  def saliency(features, class_index):
    ink = features["ink"]
    with tf.GradientTape() as tape:
      tape.watch(ink)
      logit = tf.cast(model({**features, "ink": ink}, training=False), tf.float32)[0, class_index]
    return tf.norm(tape.gradient(logit, ink)[0], axis=-1)
  return saliency


def rnn_contributions(model, features, atol=1e-4):
  """Each time step's exact share of the rnn's logits.

  The rnn's logits are ``W . sum_t h_t + b``, with ``h_t`` the BiLSTM outputs
  zeroed past the drawing's length, so step t adds ``W_c . h_t`` to class c.
  Checks that all steps add up to ``logits - b`` and that the steps past the
  drawing (padding the model appends) add nothing.

  Args:
    model: the ``rnn`` keras.Model.
    features: its inputs, batch 1.
    atol: largest allowed error of those sums.

  Returns:
    contributions float32 ``[steps, classes]`` for the drawing's steps
    (``ink_length``, or ``ceil(ink_length / pool)`` with the ``pooling``
    option, see `time_step_pooling`), logits float32 ``[classes]``, bias
    float32 ``[classes]``.

  Raises:
    VisualizeError: the contributions do not add up to the logits.
  """
  steps, logits = _graph(model, "contributions", lambda: _contributions_graph(model))(features)
  steps = np.asarray(keras.ops.convert_to_numpy(steps), np.float64)[0]
  logits = np.asarray(keras.ops.convert_to_numpy(logits), np.float32)[0]
  dense = model.get_layer("logits")
  kernel, bias = (np.asarray(w.numpy(), np.float64) for w in (dense.kernel, dense.bias))
  contributions = steps @ kernel
  valid = -(-int(features["ink_length"][0]) // time_step_pooling(model))
  tolerance = atol + 1e-6 * np.abs(logits).max()
  error = np.abs(contributions.sum(axis=0) + bias - logits).max()
  if error > tolerance:
    raise VisualizeError(f"rnn contributions miss the logits by {error:.2e}: is this the tutorial rnn?")
  beyond = np.abs(contributions[valid:].sum(axis=0)).max(initial=0)
  if beyond > tolerance:
    raise VisualizeError(f"rnn steps past the drawing's {valid} add {beyond:.2e} to the logits")
  return contributions[:valid].astype(np.float32), logits, bias.astype(np.float32)


def ink_saliency(model, features, class_index):
  """Gradient saliency of the ink: ``|d logit_c / d ink|`` per step.

  Args:
    model: a model reading ink (bilstm, fusion, rnn).
    features: its inputs, batch 1.
    class_index: the logit to differentiate.

  Returns:
    float32 ``[ink_length]``: the L2 norm over the ink channels of the gradient.
  """
  saliency = _graph(model, "saliency", lambda: _saliency_graph(model))
  return saliency(features, tf.constant(class_index, tf.int32)).numpy()[:int(features["ink_length"][0])]


def stroke_values(model, spec, features, class_index, class_names):
  """Per ink step, what the strokes part colours: rnn contributions, else gradient saliency.

  Args:
    model: a model reading ink; features: its inputs, batch 1 (`inputs.model_features`).
    class_index: the class explained; class_names: list of str.

  Returns:
    (values float ``[ink_length]``, title str, kind ``"contribution"`` or
    ``"saliency"``, signed bool for `stroke_picture`, extra dict for
    strokes.json).
  """
  if spec.name != "rnn":
    values = ink_saliency(model, features, class_index)
    return values, f"{spec.name}: |d logit / d ink| for {class_names[class_index]}", "saliency", False, {}
  contributions, logits, bias = rnn_contributions(model, features)
  pool = time_step_pooling(model)
  values = contributions[np.arange(int(features["ink_length"][0])) // pool, class_index]
  title = f"rnn: step contributions to {class_names[class_index]} (logit {logits[class_index]:.2f})"
  extra = {"logit": float(logits[class_index]), "bias": float(bias[class_index]),
           "sum": float(contributions[:, class_index].sum()), "ink_steps_per_time_step": pool}
  return values, title, "contribution", True, extra


def _diverging(values):
  """float ``[n]`` in [-1, 1] -> uint8 ``[n, 3]``: blue, light grey at 0, red."""
  stops = np.array([[33, 102, 172], [146, 197, 222], [225, 225, 225], [244, 165, 130], [178, 24, 43]], np.float64)
  values = np.clip(np.asarray(values, np.float64), -1, 1)
  at = np.linspace(-1, 1, len(stops))
  return np.stack([np.interp(values, at, stops[:, i]) for i in range(3)], -1).round().astype(np.uint8)


def stroke_picture(points, step_values, title, signed=True, size=320):
  """The drawing with each point and the segment into it coloured by its ink step's value.

  Ink step i (the move from point i to point i + 1) colours point i + 1 and,
  within a stroke, the segment from point i; the first point stays grey.

  Args:
    points: float32 ``[n, 3]`` absolute points.
    step_values: float ``[n - 1]``.
    title: a text line above the drawing.
    signed: blue (negative) to red (positive) around grey 0, scaled by the
      largest magnitude; else grey (0) to red (the largest value).
    size: side of the drawing area in pixels.

  Returns:
    uint8 RGB ``[size + 58, size, 3]``: title, drawing, colour bar.
  """
  points = np.asarray(points, np.float32)
  values = np.asarray(step_values, np.float64)
  scale = max(np.abs(values).max(), 1e-12)
  colours = _diverging(values / scale if signed else np.clip(values / scale, 0, 1))
  title_h = 18
  origin = -(raster.PADDING + raster.LINE_WIDTH / 2)
  xy = (raster.canvas_points(points) - origin) * size / raster.VIEWPORT + [0, title_h]
  canvas = Image.new("RGB", (size, size + title_h + 40), "white")
  draw = ImageDraw.Draw(canvas)
  draw.text((3, 2), title, fill="black", font=summaries.font(13))
  width = max(2, size // 80)
  for (xs, ys) in ink_lib.points_to_strokes(np.concatenate([xy, points[:, 2:]], 1)):  # The drawing, for context.
    draw.line(list(zip(xs.tolist(), ys.tolist())), fill=(200, 200, 200), width=1)
  for i in np.argsort(np.abs(values), kind="stable"):  # Strongest on top.
    colour = tuple(int(c) for c in colours[i])
    if points[i, 2] < 0.5:  # Point i does not end a stroke: a drawn segment.
      draw.line([tuple(xy[i]), tuple(xy[i + 1])], fill=colour, width=width)
    x, y = xy[i + 1]
    draw.ellipse([x - width, y - width, x + width, y + width], fill=colour)
  bar_y = size + title_h + 8
  ramp = np.linspace(-1 if signed else 0, 1, size - 20)
  canvas.paste(Image.fromarray(np.repeat(_diverging(ramp)[None], 10, 0)), (10, bar_y))
  small = summaries.font(11)
  draw.text((10, bar_y + 12), f"{-scale if signed else 0:.3g}", fill="black", font=small)
  draw.text((size - 10, bar_y + 12), f"{scale:.3g}", fill="black", font=small, anchor="ra")
  if signed:
    draw.text((size // 2, bar_y + 12), "0", fill="black", font=small, anchor="ma")
  return np.asarray(canvas)
