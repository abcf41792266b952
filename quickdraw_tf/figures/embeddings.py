"""Penultimate features of a records split, for TensorBoard's projector (with labels and a sprite)."""

import dataclasses
import math
import os
import shutil

import keras
import numpy as np
import tensorflow as tf

from quickdraw_tf import progress as progress_lib
from quickdraw_tf.drawings import raster
from quickdraw_tf.figures.inputs import VisualizeError
from quickdraw_tf.pipelines import data
from quickdraw_tf.training import summaries

EMBEDDING_TENSOR = "embedding/.ATTRIBUTES/VARIABLE_VALUE"  # How tf.train.Checkpoint names the variable.

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
