r"""python -m quickdraw_tf.visualize: what a trained model sees.

  python -m quickdraw_tf.visualize --model_dir=runs/sketchanet --input=drawings.ndjson --index=3
  python -m quickdraw_tf.visualize --model_dir=runs/resnet18 --input=sketch.png --parts=activations
  python -m quickdraw_tf.visualize --model_dir=runs/rnn --input=drawings.ndjson --parts=strokes,embeddings

Writes into ``--out`` (default ``<model_dir>/visualize``), and logs the same
pictures with ``tf.summary.image`` to ``<model_dir>/logs/visualize``:
  activations_<layer>.png  every feature map of each conv layer for the drawing
                           (image models and fusion's CNN branch)
  filters_<layer>.png      per filter, the input that maximises its mean
                           activation: gradient ascent from a grey image with
                           light noise, each step the gradient divided by its
                           RMS plus 1e-5 (the visualisation report, section 4.2)
  strokes.png, strokes.json  sequence models: the drawing coloured per point;
                           for ``rnn``, whose logits are a dense layer over the
                           sum of the BiLSTM outputs over time, each step's
                           exact contribution ``W_c . h_t`` to the predicted
                           class c (blue negative, red positive); for
                           ``bilstm`` and ``fusion``, gradient saliency
                           ``|d logit_c / d ink|``
  input.png                the model's input image (image models)
Embeddings go to ``<model_dir>/logs/projector`` for
TensorBoard's projector: the penultimate features (the input of the
``logits`` layer) of up to ``--max_embeddings`` drawings of a records split,
with their labels and a sprite of the drawings at 28 px.

  tensorboard --logdir runs/rnn/logs   # IMAGES: visualize/...; PROJECTOR: projector
"""

import dataclasses
import json
import math
import os
import shutil
import weakref

from absl import flags
from absl import logging
import keras
import numpy as np
from PIL import Image
from PIL import ImageDraw
import tensorflow as tf

from quickdraw_tf import cli
from quickdraw_tf import models
from quickdraw_tf import progress as progress_lib
from quickdraw_tf.drawings import drawing_files
from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.drawings import raster
from quickdraw_tf.pipelines import data
from quickdraw_tf.training import run_dir
from quickdraw_tf.training import summaries

PARTS = ("activations", "filters", "strokes", "embeddings")
LOG_SUBDIR = os.path.join("logs", "visualize")
PROJECTOR_SUBDIR = os.path.join("logs", "projector")
EMBEDDING_TENSOR = "embedding/.ATTRIBUTES/VARIABLE_VALUE"  # How tf.train.Checkpoint names the variable.
EPSILON = 1e-5  # Against division by a zero gradient (the report's fix for its overflow).


class VisualizeError(cli.Error, ValueError):
  """A problem with the user's input; the message names the file or flag."""


@dataclasses.dataclass
class Drawing:
  """One user drawing: vector ``points`` float32 ``[n, 3]`` or a PNG ``image`` uint8 ``[1, h, w, 1]``."""
  where: str
  points: np.ndarray = None
  image: np.ndarray = None


def read_drawing(path, index=0):
  """Reads drawing ``index`` (0-based, counting drawings, not blank lines) of an ndjson file, or a PNG.

  Uses `drawing_files.read_ndjson` and `drawing_files.read_png`, as predict reads
  its input.

  Args:
    path: an ndjson file of QuickDraw drawings, or a ``.png`` of one drawing.
    index: which drawing of the ndjson file.

  Returns:
    `Drawing`.

  Raises:
    VisualizeError: missing file, a drawing that does not parse or has fewer
      than 2 points, an index past the end, an unreadable PNG.
  """
  if not os.path.isfile(path):
    raise VisualizeError(f"{path}: no such file")
  if path.lower().endswith(".png"):
    try:
      return Drawing(path, image=drawing_files.read_png(path))
    except (OSError, ValueError) as e:
      raise VisualizeError(f"{path}: not a readable PNG image: {e}") from None
  count = 0
  try:
    for number, points in drawing_files.read_ndjson(path):
      if count == index:
        where = f"{path}:{number}"
        if isinstance(points, str):
          raise VisualizeError(f"{where}: not a QuickDraw drawing: {points}")
        if len(points) < 2:
          raise VisualizeError(f"{where}: the drawing has {len(points)} point; at least 2 are needed")
        return Drawing(where, points=points)
      count += 1
  except UnicodeDecodeError as e:
    raise VisualizeError(f"{path}: not a text (ndjson) file: {e}") from None
  raise VisualizeError(f"{path} holds {count} drawing(s); --index={index} is past the end")


def model_features(spec, drawing, image_size=None):
  """The model's input dict for one drawing, preprocessed as export's serving signature does.

  Args:
    spec: the model's `models.ModelSpec`.
    drawing: `Drawing`.
    image_size: the model's image side (image models).

  Returns:
    dict of tensors with batch 1: ``ink`` float32 ``[1, n - 1, 3 or 5]`` and
    ``ink_length`` int32 ``[1]`` (sequence models), ``image`` float32
    ``[1, s, s, 1]`` in [0, 1] (image models).

  Raises:
    VisualizeError: a PNG for a model that reads strokes.
  """
  if drawing.image is not None:
    if spec.uses_ink:
      raise VisualizeError(f"{drawing.where}: model {spec.name!r} reads strokes, which a PNG does not hold: give "
                           "an ndjson file of drawings")
    return data.model_inputs(spec, image=drawing.image, image_size=image_size)
  points, length = tf.constant(drawing.points[None]), tf.constant([len(drawing.points)], tf.int32)
  encoded, encoded_length = ink_lib.encode_tf(points, length)
  return data.model_inputs(spec, encoded, encoded_length, points, length, image_size=image_size)


# --- Layers and sub-models ----------------------------------------------------


def _nested_layers(model, prefix=""):
  """(path, layer) of every layer, nested models' layers as ``outer/inner``."""
  for layer in model.layers:
    path = prefix + layer.name
    if isinstance(layer, keras.Model):
      yield from _nested_layers(layer, path + "/")
    else:
      yield path, layer


def conv_layers(model):
  """Paths of the model's 2-D convolutions, in order (``vgg19/block1_conv1`` inside a nested model).

  For ``fusion`` these are its Sketch-a-Net branch; sequence-only models have none.
  """
  return [path for path, layer in _nested_layers(model) if isinstance(layer, keras.layers.Conv2D)]


def check_layers(model, names):
  """Raises VisualizeError naming the valid conv layers if any of ``names`` is not one."""
  valid = conv_layers(model)
  unknown = [name for name in names if name not in valid]
  if unknown:
    raise VisualizeError(f"unknown conv layer(s) {', '.join(unknown)} in model {model.name!r}; valid layers: "
                         f"{', '.join(valid) or 'none (it has no 2-D convolutions)'}")


def _symbolic_output(model, path):
  """The output of the layer at ``path`` as a symbolic tensor of ``model``'s own inputs."""
  head, _, rest = path.partition("/")
  layer = model.get_layer(head)
  if not rest:
    return layer.output
  # A nested model: call a sub-model of it on the tensor the outer graph feeds it.
  outer_input = layer._inbound_nodes[0].input_tensors[0]  # pylint: disable=protected-access
  inner = keras.Model(layer.input, _symbolic_output(layer, rest))
  return inner(outer_input)


def image_model(model, paths):
  """A keras.Model from the model's ``image`` input to the outputs of the conv layers at ``paths``.

  Args:
    model: an image model or fusion.
    paths: names from `conv_layers`.

  Returns:
    keras.Model: image float32 ``[b, s, s, 1]`` -> list of float ``[b, h, w, c]``.
  """
  check_layers(model, paths)
  return keras.Model(model.input["image"], [_symbolic_output(model, path) for path in paths])


def activations(model, image, paths):
  """Feature maps of conv layers for one image.

  Args:
    model: an image model or fusion.
    image: float32 ``[1, s, s, 1]`` in [0, 1].
    paths: conv layer names (`conv_layers`).

  Returns:
    dict path -> float32 ``[h, w, channels]``.
  """
  outputs = image_model(model, paths)(image, training=False)
  outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
  return {path: np.asarray(keras.ops.convert_to_numpy(out), np.float32)[0] for path, out in zip(paths, outputs)}


def filter_patterns(model, path, filters=None, steps=40, step_size=0.01, seed=0, batch=32):
  """Inputs that maximise each filter's mean activation, by normalised gradient ascent (report 4.2).

  Starts from a grey image (128/255) with light uniform noise (0-20/255);
  each step adds ``step_size * g / (sqrt(mean(g^2)) + 1e-5)``, g the gradient
  of the filter's mean activation with respect to the image. A filter whose
  gradient is 0 everywhere (a dead ReLU) keeps its starting noise.

  Args:
    model: an image model or fusion.
    path: a conv layer name (`conv_layers`).
    filters: indices of the filters (default: all of the layer's).
    steps: gradient ascent steps.
    step_size: input units (images are in [0, 1]) per normalised step.
    seed: of the starting noise.
    batch: filters optimised together (each on its own image).

  Returns:
    patterns float32 ``[n, s, s, 1]`` (not clipped; display stretches them),
    before float32 ``[n]`` and after float32 ``[n]``: each filter's mean
    activation at the start and the end.
  """
  sub = image_model(model, [path])
  channels = sub.outputs[0].shape[-1]
  filters = np.arange(channels) if filters is None else np.asarray(filters)
  if filters.size and (filters.min() < 0 or filters.max() >= channels):
    raise VisualizeError(f"layer {path} has filters 0-{channels - 1}; asked for {filters.tolist()}")
  size = sub.inputs[0].shape[1]

  def mean_activation(images, chosen):
    out = tf.cast(sub(images, training=False), tf.float32)  # [b, h, w, c]
    return tf.reduce_mean(tf.gather(out, chosen, axis=3, batch_dims=1), axis=[1, 2])

  @tf.function(reduce_retracing=True)
  def ascend(images, chosen):  # One step; traced once per layer (and last batch size).
    with tf.GradientTape() as tape:
      tape.watch(images)
      loss = tf.reduce_sum(mean_activation(images, chosen))  # Each image only feeds its own filter's mean.
    gradient = tape.gradient(loss, images)
    rms = tf.sqrt(tf.reduce_mean(tf.square(gradient), axis=[1, 2, 3], keepdims=True))
    return images + step_size * gradient / (rms + EPSILON)

  rng = np.random.default_rng(seed)
  patterns, before, after = [], [], []
  for start in range(0, len(filters), batch):
    chosen = tf.constant(filters[start:start + batch], tf.int32)
    images = tf.constant((128 + rng.uniform(0, 20, (len(chosen), size, size, 1))) / 255, tf.float32)
    before.append(mean_activation(images, chosen).numpy())
    for _ in range(steps):
      images = ascend(images, chosen)
    after.append(mean_activation(images, chosen).numpy())
    patterns.append(images.numpy())
  if not patterns:
    return np.zeros((0, size, size, 1), np.float32), np.zeros(0, np.float32), np.zeros(0, np.float32)
  return np.concatenate(patterns), np.concatenate(before), np.concatenate(after)


# --- Strokes --------------------------------------------------------------------


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
  for _, layer in _nested_layers(model):
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
    model: a model reading ink; features: its inputs, batch 1 (`model_features`).
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


# --- Embeddings -----------------------------------------------------------------


def embeddings(model, spec, records_dir, split="test", max_examples=1000, image_size=None, batch_size=64,
               progress="lines"):
  """Penultimate features (the input of ``logits``) of the first drawings of a split.

  Args:
    model: a trained keras.Model from the zoo.
    spec: its `models.ModelSpec`.
    records_dir: a records directory.
    split: "train", "eval" or "test".
    max_examples: at most this many drawings.
    image_size: the model's image side (image models).
    batch_size: drawings per batch.
    progress: a `cli.PROGRESS_MODES` mode: a bar over the batches on stderr, or nothing.

  Returns:
    features float32 ``[n, d]``, labels int64 ``[n]``, predictions int64
    ``[n]``, pictures float32 ``[n, 28, 28, 1]`` in [0, 1] (1 = ink).
  """
  # Ask the pipeline for 28-px pictures as well: sequence models get one beside their ink.
  picture_spec = spec if spec.uses_image else dataclasses.replace(spec, image_size=raster.BITMAP_SIZE)
  try:
    dataset = data.make_dataset(records_dir, split, picture_spec, batch_size,
                                image_size=image_size if spec.uses_image else raster.BITMAP_SIZE, bucket=False,
                                deterministic=True)
  except data.RecordsError as e:
    raise VisualizeError(str(e)) from None
  sub = keras.Model(model.input, [model.get_layer("logits").input, model.output])
  names = list(model.input)
  features, labels, predictions, pictures = [], [], [], []
  count = 0
  batches = progress_lib.track(dataset, progress, "embeddings", "batches", total=math.ceil(max_examples / batch_size))
  for batch, label in batches:
    batch_features, logits = sub({name: batch[name] for name in names}, training=False)
    image = batch["image"]
    if image.shape[1] != raster.BITMAP_SIZE:
      image = tf.image.resize(image, [raster.BITMAP_SIZE, raster.BITMAP_SIZE], antialias=True)
    features.append(keras.ops.convert_to_numpy(batch_features).astype(np.float32))
    predictions.append(np.argmax(keras.ops.convert_to_numpy(logits), axis=1))
    labels.append(label.numpy())
    pictures.append(np.clip(image.numpy(), 0, 1))
    count += len(label)
    if count >= max_examples:
      break
  if not count:
    raise VisualizeError(f"{records_dir} has no {split!r} drawings")
  return tuple(np.concatenate(parts)[:max_examples] for parts in (features, labels, predictions, pictures))


def sprite(pictures):
  """A TensorBoard projector sprite: pictures in a square grid, dark ink on white.

  Args:
    pictures: float ``[n, 28, 28, 1]`` in [0, 1], 1 = ink.

  Returns:
    uint8 ``[28 * k, 28 * k]`` with ``k = ceil(sqrt(n))``, row-major.
  """
  n, h, w, _ = pictures.shape
  k = int(np.ceil(np.sqrt(n)))
  canvas = np.full((k * h, k * w), 255, np.uint8)
  for i, picture in enumerate(pictures):
    row, column = divmod(i, k)
    canvas[row * h:(row + 1) * h, column * w:(column + 1) * w] = (255 - picture[..., 0] * 255).round()
  return canvas


def write_projector(log_dir, features, labels, predictions, pictures, class_names):
  """Writes embeddings for TensorBoard's projector plugin into ``log_dir`` (replaced).

  Files: a checkpoint of the variable ``embedding`` (float32 ``[n, d]``),
  ``metadata.tsv`` (a header line ``label<TAB>predicted``, then one row per
  embedding), ``sprite.png`` (see `sprite`), ``projector_config.pbtxt``, and
  an event file with the sprite (TensorBoard looks for projector configs in
  directories that hold events).
  """
  from tensorboard.plugins import projector  # pylint: disable=g-import-not-at-top
  shutil.rmtree(log_dir, ignore_errors=True)
  os.makedirs(log_dir)
  with open(os.path.join(log_dir, "metadata.tsv"), "w", encoding="utf-8") as f:
    f.write("label\tpredicted\n")
    f.writelines(f"{class_names[a]}\t{class_names[b]}\n" for a, b in zip(labels, predictions))
  summaries.save_png(sprite(pictures), os.path.join(log_dir, "sprite.png"))
  checkpoint = tf.train.Checkpoint(embedding=tf.Variable(features, name="embedding"))
  checkpoint.save(os.path.join(log_dir, "embedding.ckpt"))
  config = projector.ProjectorConfig()
  embedding = config.embeddings.add()
  embedding.tensor_name = EMBEDDING_TENSOR
  embedding.metadata_path = "metadata.tsv"
  embedding.sprite.image_path = "sprite.png"
  embedding.sprite.single_image_dim.extend([raster.BITMAP_SIZE, raster.BITMAP_SIZE])
  projector.visualize_embeddings(log_dir, config)
  # TensorBoard lists only directories with event files as runs, and looks for projectors in runs.
  with tf.summary.create_file_writer(log_dir).as_default(step=0):
    tf.summary.image("embeddings/sprite", sprite(pictures)[None, ..., None])


# --- The whole job --------------------------------------------------------------


def default_parts(spec, drawing=None):
  """The parts that apply to a model and an input (`Drawing` or None).

  Image models and fusion: activations (of the drawing) and filters; models
  reading ink: strokes (of a vector drawing); all: embeddings.
  """
  parts = []
  if spec.uses_image:
    parts += ["activations", "filters"] if drawing is not None else ["filters"]
  if spec.uses_ink and drawing is not None and drawing.points is not None:
    parts.append("strokes")
  return parts + ["embeddings"]


def _file_name(path):
  return path.replace("/", "_")


@dataclasses.dataclass(frozen=True)
class Options:
  """What to draw and how (visualize's flags); see `visualize`."""
  index: int = 0
  parts: tuple = ()
  layers: tuple = ()
  max_filters: int = 64
  filter_steps: int = 40
  filter_step_size: float = 0.01
  records_dir: str = None
  split: str = "test"
  max_embeddings: int = 1000
  weights: str = None
  seed: int = 0
  progress: str = "lines"  # cli.PROGRESS_MODES, for the embeddings


@dataclasses.dataclass
class _Run:
  """A restored model and what one visualize call shares between its parts."""
  model: keras.Model
  spec: models.ModelSpec
  config: dict
  drawing: Drawing = None
  features: dict = None  # the drawing as the model reads it
  predicted: int = None  # its top class


class _Output:
  """Writes a part's pictures into ``out_dir`` and TensorBoard (step ``index``); remembers what it wrote."""

  def __init__(self, model_dir, out_dir, index):
    self.out_dir, self.index = out_dir, index
    os.makedirs(out_dir, exist_ok=True)
    self.writer = tf.summary.create_file_writer(os.path.join(model_dir, LOG_SUBDIR))
    self.written = {}

  def save(self, part, name, picture, tag):
    path = os.path.join(self.out_dir, f"{name}.png")
    summaries.save_png(picture, path)
    with self.writer.as_default(step=self.index):
      tf.summary.image(f"{part}/{tag}", picture[None])
    self.written.setdefault(part, []).append(path)


def visualize(model_dir, input_path=None, out_dir=None, **options):
  """Runs the chosen visualisations of a trained model; see the module docstring for what is written.

  Args:
    model_dir: written by train.
    input_path: ndjson drawings or a PNG (needed for activations and strokes).
    out_dir: PNG directory (default ``<model_dir>/visualize``).
    **options: `Options`: ``index`` (which drawing of an ndjson file,
      0-based; also the TensorBoard step), ``parts`` (subset of `PARTS`,
      default `default_parts`), ``layers`` (conv layers for filters, default
      all of `conv_layers`), ``max_filters`` (the first this many filters of
      each layer), ``filter_steps`` and ``filter_step_size``
      (`filter_patterns`), ``records_dir`` and ``split`` (for embeddings,
      default the records the model was trained on), ``max_embeddings``,
      ``weights`` (default best, else final), ``seed`` (the filters' noise),
      ``progress`` (`embeddings`').

  Returns:
    dict part -> list of written file paths (``strokes`` also gives its
    values in ``strokes.json``).
  """
  options = Options(**{**options, "parts": tuple(options.get("parts") or ()),
                       "layers": tuple(options.get("layers") or ())})
  run = _restore(model_dir, options.weights)
  run.drawing = read_drawing(input_path, options.index) if input_path else None
  parts, records_dir = _check_parts(run, options)
  if run.drawing is not None:
    run.features = model_features(run.spec, run.drawing, run_dir.image_size(run.config))  # Checks it fits.
    if "strokes" in parts and run.drawing.points is None:
      raise VisualizeError(f"{run.drawing.where}: strokes need a vector drawing (ndjson), not a PNG")
  output = _Output(model_dir, out_dir or os.path.join(model_dir, "visualize"), options.index)  # Checked: write.
  if run.features is not None:
    _write_input(run, output)
  for part in parts:
    PART_WRITERS[part](run, options, output, records_dir=records_dir, model_dir=model_dir)
  output.writer.flush()
  return output.written


def _restore(model_dir, weights):
  if not os.path.isdir(model_dir):
    raise VisualizeError(f"model_dir {model_dir} does not exist: train a model first (python -m quickdraw_tf.train)")
  try:
    model, config = run_dir.restore(model_dir, weights)
  except FileNotFoundError as e:
    raise VisualizeError(str(e)) from None
  return _Run(model, models.get(config["model"]), config)


def _check_parts(run, options):
  """(the parts to draw, the records for embeddings); VisualizeError for what cannot be drawn."""
  spec, drawing = run.spec, run.drawing
  parts = list(options.parts or default_parts(spec, drawing))
  unknown = [p for p in parts if p not in PARTS]
  if unknown:
    raise VisualizeError(f"unknown part(s) {', '.join(unknown)}; valid: {', '.join(PARTS)}")
  if ("activations" in parts or "filters" in parts) and not conv_layers(run.model):
    raise VisualizeError(f"model {spec.name!r} has no 2-D convolutions: activations and filters are for image "
                         "models and fusion; use --parts=strokes,embeddings")
  if "strokes" in parts and not spec.uses_ink:
    raise VisualizeError(f"model {spec.name!r} reads images only: strokes are for sequence models")
  if options.layers:
    check_layers(run.model, options.layers)
  needs_input = [p for p in parts if p in ("activations", "strokes")]
  if needs_input and drawing is None:
    raise VisualizeError(f"--input is needed for {', '.join(needs_input)}")
  records_dir = options.records_dir or run.config.get("records")
  if "embeddings" in parts and not (records_dir and os.path.isdir(records_dir)):
    if options.parts or records_dir != run.config.get("records"):
      raise VisualizeError(f"records {records_dir!r} not found: pass --records=DIR for the embeddings")
    logging.warning("no embeddings: the records %s this model was trained on are not here (--records=DIR)",
                    records_dir)
    parts.remove("embeddings")
  return parts, records_dir


def _write_input(run, output):
  """The model's answer for the drawing (``run.predicted``) and, for image models, the image it read."""
  logits = keras.ops.convert_to_numpy(run.model(run.features, training=False))[0]
  run.predicted = int(np.argmax(logits))
  caption = f"{run.config['classes'][run.predicted]} {tf.nn.softmax(logits).numpy()[run.predicted]:.2f}"
  if "image" in run.features:
    output.save("input", "input", summaries.drawing_grid(run.features["image"].numpy(), [caption], columns=1),
                "image")


def _write_activations(run, options, output, **unused):
  del options, unused
  for path, maps in activations(run.model, run.features["image"], conv_layers(run.model)).items():
    title = f"{path}: {maps.shape[2]} maps {maps.shape[0]}x{maps.shape[1]}"
    cell = 48 if maps.shape[0] * maps.shape[1] > 1 else 20  # 1x1 maps (fully connected as conv): small cells.
    output.save("activations", f"activations_{_file_name(path)}",
                summaries.feature_grid(np.moveaxis(maps, 2, 0), title, min_cell=cell), path)


def _write_filters(run, options, output, **unused):
  del unused
  for path in options.layers or conv_layers(run.model):
    channels = image_model(run.model, [path]).outputs[0].shape[-1]
    patterns, before, after = filter_patterns(run.model, path, np.arange(min(options.max_filters, channels)),
                                              options.filter_steps, options.filter_step_size, options.seed)
    # A filter silent on the grey start gets no gradient: it keeps its noise, which the grid stretches.
    silent = after == before
    title = (f"{path}: {len(patterns)} of {channels} filters, mean activation {before.mean():.3g} -> "
             f"{after.mean():.3g}; {silent.sum()} silent (no gradient: noise kept)")
    labels = [f"{i} silent" if quiet else str(i) for i, quiet in enumerate(silent)]
    output.save("filters", f"filters_{_file_name(path)}",
                summaries.feature_grid(patterns[..., 0], title, colour=False, labels=labels), path)


def _write_strokes(run, options, output, **unused):
  del options, unused
  class_names = run.config["classes"]
  values, title, kind, signed, extra = stroke_values(run.model, run.spec, run.features, run.predicted, class_names)
  output.save("strokes", "strokes", stroke_picture(run.drawing.points, values, title, signed), kind)
  path = os.path.join(output.out_dir, "strokes.json")
  with open(path, "w", encoding="utf-8") as f:
    json.dump({"input": run.drawing.where, "model": run.spec.name, "kind": kind,
               "class": class_names[run.predicted], "class_index": run.predicted,
               "step_values": [float(v) for v in values], **extra}, f, indent=1)
  output.written["strokes"].append(path)


def _write_embeddings(run, options, output, records_dir, model_dir):
  result = embeddings(run.model, run.spec, records_dir, options.split, options.max_embeddings,
                      run_dir.image_size(run.config), progress=options.progress)
  log_dir = os.path.join(model_dir, PROJECTOR_SUBDIR)
  write_projector(log_dir, *result, run.config["classes"])
  output.written["embeddings"] = [os.path.join(log_dir, name)
                                  for name in ("projector_config.pbtxt", "metadata.tsv", "sprite.png")]


# What each part draws, in the order of PARTS.
PART_WRITERS = {"activations": _write_activations, "filters": _write_filters, "strokes": _write_strokes,
                "embeddings": _write_embeddings}


FLAGS = flags.FLAGS


def define_flags():
  cli.define_model_dir()
  cli.define_input("An ndjson file of drawings, or a PNG of one drawing (image models).")
  flags.DEFINE_integer("index", 0, "Which drawing of the ndjson file (0-based); also the TensorBoard step.",
                       lower_bound=0)
  flags.DEFINE_string("out", None, "Where the PNGs go (default <model_dir>/visualize).")
  flags.DEFINE_list("parts", [], f"Any of {', '.join(PARTS)} (default: all that apply to the model).")
  flags.DEFINE_list("layers", [], "Conv layers for filters (default: all); unknown names list the valid ones.")
  flags.DEFINE_integer("max_filters", 64, "Filters per layer (the first ones).", lower_bound=1)
  flags.DEFINE_integer("filter_steps", 40, "Gradient ascent steps per filter.", lower_bound=0)
  flags.DEFINE_float("filter_step_size", 0.01, "Gradient ascent step, in image units ([0, 1]) per normalised step.")
  cli.define_records(help_text="Records for embeddings (default: those in the model_dir's config.json).")
  flags.DEFINE_string("split", "test", "Records split for embeddings.")
  flags.DEFINE_integer("max_embeddings", 1000, "Drawings in the projector.", lower_bound=1)
  cli.define_weights()
  flags.DEFINE_integer("seed", 0, "Seed of the filters' starting noise.")
  cli.define_progress()
  flags.mark_flags_as_required(["model_dir"])


def main(_):
  written = visualize(FLAGS.model_dir, FLAGS.input, FLAGS.out, index=FLAGS.index, parts=FLAGS.parts,
                      layers=FLAGS.layers, max_filters=FLAGS.max_filters, filter_steps=FLAGS.filter_steps,
                      filter_step_size=FLAGS.filter_step_size, records_dir=FLAGS.records, split=FLAGS.split,
                      max_embeddings=FLAGS.max_embeddings, weights=FLAGS.weights, seed=FLAGS.seed,
                      progress=FLAGS.progress)
  for part, paths in written.items():
    for path in paths:
      print(f"{part}: {path}")
  if "embeddings" in written:
    print(f"projector: tensorboard --logdir {os.path.join(FLAGS.model_dir, 'logs')}")


if __name__ == "__main__":
  cli.run(define_flags, main)
