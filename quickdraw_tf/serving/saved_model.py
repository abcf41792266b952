"""A classifier's serving SavedModel, that serves raw ink (``python -m quickdraw_tf.export`` writes it).

Signature ``serving_default``: ``ink`` float32 ``[batch, max_points, 3]``
(absolute x, y in any scale, 1 on the last point of each stroke) and
``length`` int32 ``[batch]`` -> ``probabilities`` float32 ``[batch, classes]``,
``top_k_classes`` string ``[batch, k]``, ``top_k_probabilities``, ``valid``
bool ``[batch]``. All preprocessing (normalise, delta-encode, stroke-5,
rasterise) runs in the graph through `data.model_inputs`, the function the
training pipeline uses. Image models also get ``serving_image``: ``image``
uint8 ``[batch, h, w, 1]`` (255 = ink, like numpy_bitmap) -> the same outputs.
Models that read both (``fusion``) get ``serving_ink_image``: ``ink``,
``length`` and an ``image`` of the same drawings, rasterised elsewhere (as
TFLite needs: see `serving.tflite`) -> the same outputs.
The class names, in the order of ``probabilities``, are in
``assets/classes.txt``.

The contract, enforced in the graph (`serving_ink`): ``length`` is clamped to
``[0, max_points]``; ``ink`` and ``length`` of different batch sizes are an
error; a row that cannot be classified (fewer than 2 points, or a coordinate
or extent that is not finite in float32) has ``valid`` False, all-zero
probabilities and empty class names, never NaN; an empty batch gives empty
outputs.
"""

import os
import shutil

import keras
import numpy as np
import tensorflow as tf

from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.pipelines import data

CLASSES_ASSET = os.path.join("assets", "classes.txt")  # the class names, in probability order
TOP_K = 3
# The signatures' names (the module docstring says what each takes), for every reader of the SavedModel and TFLite.
INK_SIGNATURE, IMAGE_SIGNATURE, INK_IMAGE_SIGNATURE = "serving_default", "serving_image", "serving_ink_image"


def _finite(x):
  """tf.math.is_finite in ops TFLite has builtins for (NaN compares false)."""
  return tf.abs(x) <= np.finfo(np.float32).max


def serving_ink(ink, length):
  """Enforces the serving contract on a client's ink (see the module docstring).

  Args:
    ink: float32 ``[batch, time, 3]`` absolute points; length: int32 ``[batch]``.

  Returns:
    ink: float32 ``[batch (+ 1), time + 2, 3]``, rows that cannot be
      classified replaced by a placeholder (a diagonal stroke from 0, 0 to
      1, 1), zero past their length, and, where the batch size is not
      static, one placeholder row appended (keep the first ``batch`` rows of
      every output).
    length: int32 ``[batch (+ 1)]``, clamped to ``[0, time]``.
    valid: bool ``[batch]``.

  Raises:
    tf.errors.InvalidArgumentError: ink and length differ in batch size.
  """
  ink = tf.convert_to_tensor(ink, tf.float32)
  length = tf.convert_to_tensor(length, tf.int32)
  ink = _same_batch(ink, length, "ink and length must have the same batch size")
  length = tf.clip_by_value(length, 0, tf.shape(ink)[1])
  # Room for the placeholder's 2 points whatever was sent. Constant paddings and no
  # other shape-changing op: TFLite converts LSTMs of a static batch only.
  ink = tf.pad(ink, [[0, 0], [0, 2], [0, 0]])
  time = tf.shape(ink)[1]
  inside = tf.sequence_mask(length, time)[..., None]
  ink = tf.where(inside, ink, 0.0)
  xy = ink[..., :2]
  # The extent overflows for coordinates such as +-3e38, finite though they are.
  extent = tf.reduce_max(tf.where(inside, xy, -3.0e38), 1) - tf.reduce_min(tf.where(inside, xy, 3.0e38), 1)
  valid = (length >= 2) & tf.reduce_all(_finite(ink), [1, 2]) & tf.reduce_all(_finite(extent), 1)
  # A diagonal stroke from (0, 0) to (1, 1), zero-padded to ``time``: [1, time, 3].
  placeholder = tf.cast(tf.range(time) == 1, tf.float32)[None, :, None] * tf.ones([1, 1, 3])
  ink, length = tf.where(valid[:, None, None], ink, placeholder), tf.where(valid, length, 2)
  if ink.shape[0] is None:  # A batch that may be empty (a static one, as TFLite's, cannot be).
    ink, length = tf.concat([ink, placeholder], 0), tf.concat([length, [2]], 0)
  return ink, length, valid


def export(model, spec, class_names, output_dir, image_size=None, top_k=TOP_K, batch_size=None):
  """Writes the serving SavedModel: into ``<output_dir>.partial``, renamed into place at the end.

  Args:
    model: keras.Model taking `data.model_inputs`.
    spec: its `models.ModelSpec`.
    class_names: list of str, in logit order.
    output_dir: where the SavedModel goes (replaced if present).
    image_size: the model's image side (default: the spec's).
    top_k: classes returned per drawing.
    batch_size: fixed batch of the signatures (None: any; TFLite's LSTMs need 1).
  """
  named = tf.constant(list(class_names) + [""])
  k = min(top_k, len(class_names))

  def outputs(features, valid):
    """The model's answers for all rows but the appended placeholder; zeros where not ``valid``."""
    probabilities = tf.nn.softmax(tf.cast(model(features, training=False), tf.float32))[:tf.shape(valid)[0]]
    probabilities = tf.where(valid[:, None], probabilities, 0.0)
    top = tf.math.top_k(probabilities, k)
    return {"probabilities": probabilities, "valid": valid,
            # Past the last class, the empty name: a select on indices (TFLite has none for strings).
            "top_k_classes": tf.gather(named, tf.where(valid[:, None], top.indices, len(class_names))),
            "top_k_probabilities": top.values}

  def serve_ink(ink, length):
    ink, length, valid = serving_ink(ink, length)
    encoded, encoded_length = ink_lib.encode_tf(ink, length)
    return outputs(data.model_inputs(spec, encoded, encoded_length, ink, length, image_size=image_size), valid)

  def serve_image(image):
    image = _with_blank_row(image)  # As serve_ink's placeholder: an empty batch gives empty outputs.
    return outputs(data.model_inputs(spec, image=image, image_size=image_size),
                   tf.ones(tf.shape(image)[:1] - 1, tf.bool))

  def serve_ink_image(ink, length, image):
    ink, length, valid = serving_ink(ink, length)
    if ink.shape[0] is None:  # serving_ink appended its placeholder row: the image gets a blank one.
      image = _with_blank_row(image)
    image = _same_batch(image, ink, "ink and image must have the same batch size")
    encoded, encoded_length = ink_lib.encode_tf(ink, length)
    return outputs(data.model_inputs(spec, encoded, encoded_length, image=image, image_size=image_size), valid)

  ink_spec = [tf.TensorSpec([batch_size, None, 3], tf.float32, name="ink"),
              tf.TensorSpec([batch_size], tf.int32, name="length")]
  image_spec = [tf.TensorSpec([batch_size, None, None, 1], tf.uint8, name="image")]
  archive = keras.export.ExportArchive()
  archive.track(model)
  archive.add_endpoint(INK_SIGNATURE, serve_ink, input_signature=ink_spec)
  if spec.uses_image and not spec.uses_ink:
    archive.add_endpoint(IMAGE_SIGNATURE, serve_image, input_signature=image_spec)
  if spec.uses_image and spec.uses_ink:
    archive.add_endpoint(INK_IMAGE_SIGNATURE, serve_ink_image, input_signature=ink_spec + image_spec)
  write_archive(archive, output_dir, {CLASSES_ASSET: "".join(name + "\n" for name in class_names)})


def _same_batch(tensor, other, message):
  """``tensor``, once asserted (in the graph) to have as many rows as ``other``: else InvalidArgumentError."""
  same_batch = tf.debugging.assert_equal(tf.shape(tensor)[0], tf.shape(other)[0], message=message)
  with tf.control_dependencies([same_batch]):
    return tf.identity(tensor)


def _with_blank_row(image):
  """uint8 ``[batch, h, w, 1]`` -> ``[batch + 1, h, w, 1]``, a blank image appended."""
  return tf.concat([image, tf.zeros(tf.concat([[1], tf.shape(image)[1:]], 0), tf.uint8)], 0)


def write_archive(archive, output_dir, assets):
  """Writes a `keras.export.ExportArchive` and text ``assets`` ({relative path: text}) to ``output_dir``.

  The SavedModel is written beside ``output_dir`` and renamed into place; the
  previous one is moved aside, not deleted, until then, so that a kill at any
  point leaves a complete SavedModel (old or new) or none.
  """
  partial = output_dir.rstrip("/") + ".partial"
  shutil.rmtree(partial, ignore_errors=True)
  archive.write_out(partial, verbose=False)
  for relative_path, text in assets.items():
    os.makedirs(os.path.dirname(os.path.join(partial, relative_path)), exist_ok=True)
    with open(os.path.join(partial, relative_path), "w", encoding="utf-8") as f:
      f.write(text)
  previous = output_dir.rstrip("/") + ".previous"
  shutil.rmtree(previous, ignore_errors=True)
  if os.path.exists(output_dir):
    os.replace(output_dir, previous)
  os.replace(partial, output_dir)
  shutil.rmtree(previous, ignore_errors=True)
