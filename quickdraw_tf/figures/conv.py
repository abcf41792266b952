"""What convolutions see: their feature maps for a drawing, and the inputs that excite each filter most."""

import keras
import numpy as np
import tensorflow as tf

from quickdraw_tf.figures.inputs import VisualizeError

EPSILON = 1e-5  # Against division by a zero gradient (the report's fix for its overflow).

def nested_layers(model, prefix=""):
  """(path, layer) of every layer, nested models' layers as ``outer/inner``."""
  for layer in model.layers:
    path = prefix + layer.name
    if isinstance(layer, keras.Model):
      yield from nested_layers(layer, path + "/")
    else:
      yield path, layer


def conv_layers(model):
  """Paths of the model's 2-D convolutions, in order (``vgg19/block1_conv1`` inside a nested model).

  For ``fusion`` these are its Sketch-a-Net branch; sequence-only models have none.
  """
  return [path for path, layer in nested_layers(model) if isinstance(layer, keras.layers.Conv2D)]


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
