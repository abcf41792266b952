"""tf.data pipelines: a records directory -> batches of model inputs.

Every model takes one dict (see `models.ModelSpec`):
  ink         float32 [batch, time, 3] tutorial ink (or [.., 5] stroke-5), 0-padded
  ink_length  int32 [batch]
  image       float32 [batch, size, size, 1] in [0, 1], 1 = ink

`model_inputs` turns decoded drawings into that dict; the exported SavedModel
calls the same function, so training and serving preprocess alike. Where
the replicas are accelerators, pipelines with ``raster_on_replicas`` stop
short of rasterising (they yield ``points`` and ``lengths``), and
`rasterise_in_step` makes the replicated train/test step call
`model_inputs` on them: the host then only parses and batches ink.
"""

import os

import tensorflow as tf

from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.drawings import raster
from quickdraw_tf.pipelines import records

AUTOTUNE = tf.data.AUTOTUNE
# Drawings are rasterised at Google's bitmap size, then resized to the model's
# input, as the reference report resized 28x28 bitmaps for AlexNet: vector and
# numpy_bitmap records then give the same kind of image.
# Upper bounds of the length buckets (points); longer drawings share the last.
BUCKET_BOUNDARIES = (16, 24, 32, 40, 48, 64, 80, 96, 128, 160, 224, 320)
# Shuffle seed of the deterministic mode when none is given.
DETERMINISTIC_SEED = 0


RecordsError = records.RecordsError  # Records that cannot feed the requested model; the message says what to run.


def model_inputs(spec, ink=None, ink_length=None, points=None, lengths=None, image=None, image_size=None):
  """Builds a model's input dict from decoded drawings.

  Args:
    spec: a `models.ModelSpec` (uses_ink, ink_channels, uses_image).
    ink: float32 ``[batch, time, 3]`` tutorial ink, 0-padded; ink_length:
      int32 ``[batch]``.
    points, lengths: float32 ``[batch, time + 1, 3]`` absolute points and
      their int32 lengths, for rasterising; decoded from ink when None.
    image: uint8 or float ``[batch, h, w, 1]`` stored images (0-255), used
      instead of rasterising when given.
    image_size: side of the model's image input (default: the spec's).

  Returns:
    dict with ``ink`` and ``ink_length`` (sequence models) and ``image``.
  """
  features = {}
  if spec.uses_ink:
    ink = tf.convert_to_tensor(ink, tf.float32)
    features["ink"] = ink_lib.to_stroke5(ink, ink_length) if spec.ink_channels == 5 else ink
    features["ink_length"] = tf.cast(ink_length, tf.int32)
  if spec.uses_image:
    size = image_size or spec.image_size
    if image is None:
      image = raster.rasterize(points, lengths, raster.BITMAP_SIZE)
    else:
      image = tf.cast(image, tf.float32) / 255.0
    if image.shape[1] != size:
      image = tf.image.resize(image, [size, size], method="bilinear")
    features["image"] = image
  return features


def replica_inputs(spec, features, image_size=None):
  """A model's inputs from a batch of a ``raster_on_replicas`` pipeline, by `model_inputs`.

  Args:
    spec: the `models.ModelSpec` the pipeline was made for.
    features: dict with ``points`` float32 ``[batch, time + 1, 3]`` and
      ``lengths`` int32 ``[batch]`` (plus ``ink``, ``ink_length`` for models
      that read ink); a dict without ``points`` is returned as it is.
    image_size: side of the model's image input (default: the spec's).

  Returns:
    the dict `model_inputs` builds.
  """
  if "points" not in features:
    return features
  return model_inputs(spec, features.get("ink"), features.get("ink_length"), features["points"],
                      features["lengths"], image_size=image_size)


def has_accelerators(strategy):
  """True when ``strategy``'s replicas run on GPUs or TPUs."""
  try:
    devices = strategy.extended.worker_devices
  except RuntimeError:  # The default strategy: ops run on the first GPU, if there is one.
    return bool(tf.config.list_physical_devices("GPU"))
  return any(tf.DeviceSpec.from_string(device).device_type in ("GPU", "TPU") for device in devices)


def rasterise_in_step(model, spec, image_size=None):
  """Makes ``model.fit`` and ``model.evaluate`` build inputs from ink inside the replicated step.

  Wraps the model's ``train_step`` and ``test_step`` (which Keras runs in
  ``strategy.run``, on every replica) so that batches of a
  ``raster_on_replicas`` pipeline go through `replica_inputs` first. Direct
  calls of the model (``model(features)``, the SavedModel) are unchanged.

  Args:
    model: a compiled or uncompiled ``keras.Model`` taking `model_inputs`.
    spec, image_size: as for `replica_inputs`.

  Returns:
    ``model``.
  """
  train_step, test_step = model.train_step, model.test_step

  def with_inputs(step):
    return lambda batch: step((replica_inputs(spec, batch[0], image_size),) + tuple(batch[1:]))

  model.train_step, model.test_step = with_inputs(train_step), with_inputs(test_step)
  model.train_function = model.test_function = None  # Steps traced before the change are rebuilt.
  return model


def complete_stats(records_dir):
  """stats.json of a records directory make_records finished; RecordsError naming the command otherwise.

  The one check every reader (train, evaluate) makes before trusting a records directory.
  """
  if not records.is_complete(records_dir):
    raise RecordsError(
        f"no complete records in {records_dir!r}: create them with\n"
        f"  python -m quickdraw_tf.make_records --input=../shared/data/quickdraw/strokes --output_dir={records_dir}")
  return records.read_stats(records_dir)


def image_source_for(records_dir, spec, image_source="auto"):
  """'stored' or 'raster' for an image model; checks the records can feed ``spec``."""
  stats = complete_stats(records_dir)
  has_ink, stored = stats.get("has_ink", True), stats.get("image_size", 0)
  if spec.uses_ink and not has_ink:
    raise RecordsError(f"model {spec.name!r} reads strokes, but {records_dir} holds image-only records (made from "
                       "numpy_bitmap .npy files): train an image model (sketchanet, alexnet, resnet18, vgg19) on "
                       "them, or convert vector drawings (ndjson) for this one")
  if not spec.uses_image:
    return None
  if image_source == "auto":
    image_source = "stored" if stored else "raster"
  if image_source == "stored" and not stored:
    raise RecordsError(f"{records_dir} has no stored images: rerun make_records with --stored_image_size=28, "
                       "or let the pipeline rasterise ink (image_source='raster')")
  if image_source == "raster" and not has_ink:
    raise RecordsError(f"{records_dir} holds no ink to rasterise: use its stored images")
  return image_source


def parse_fn(with_image):
  """serialized example -> (features, class index int64 []), with `records.parse`.

  features: ink (the record's encoded ink), ink_length int32 [], bbox, origin,
  and with ``with_image`` the stored image.
  """

  def parse(serialized):
    example = records.parse(serialized, with_image)
    features = {"ink": example["ink"], "ink_length": tf.shape(example["ink"])[0], "bbox": example["bbox"],
                "origin": example["origin"]}
    if with_image:
      features["image"] = example[records.IMAGE_FIELD]
    return features, example["class_index"]

  return parse


def make_dataset(records_dir, split, spec, batch_size, training=False, image_size=None, image_source="auto",
                 shuffle_buffer=20000, deterministic=False, seed=None, input_context=None, bucket=True,
                 repeat=None, augment=None, raster_on_replicas=False):
  """Batches of ``(model inputs, class_index)`` from one split of a records directory.

  Args:
    records_dir: made by make_records.
    split: "train", "eval" or "test".
    spec: `models.ModelSpec` of the model to feed.
    batch_size: examples per batch (per replica under a strategy).
    training: shuffle and repeat (unless ``repeat=False``), drop the last
      partial batch.
    image_size: image side for image models (default: the spec's).
    image_source: "auto" (stored images when present), "stored" or "raster".
    shuffle_buffer: examples in the shuffle buffer.
    deterministic: same batches in the same order on every run (tests);
      shuffles with ``seed`` or, when None, `DETERMINISTIC_SEED`.
    seed: shuffle (and augmentation) seed.
    input_context: a ``tf.distribute.InputContext``: shards files (or
      examples, when there are fewer files than input pipelines).
    bucket: pad sequences per length bucket rather than to the batch max.
    repeat: override training's repeat.
    augment: an `augment.Ranges` to transform the ink of every drawing
      (images are then rasterised from the transformed ink).
    raster_on_replicas: for image models fed from ink, yield ``points`` and
      ``lengths`` (and ink) instead of images: the training step rasterises
      (`rasterise_in_step`, `replica_inputs`).

  Returns:
    ``tf.data.Dataset`` of ``(dict, int64 [batch])``.
  """
  if deterministic and seed is None:
    seed = DETERMINISTIC_SEED
  source = image_source_for(records_dir, spec, "raster" if augment and spec.uses_image else image_source)
  paths = records.shard_paths(records_dir, split)
  if not paths:
    raise RecordsError(f"{records_dir} has no {split!r} shards (see its stats.json); rerun make_records with a "
                       f"non-zero --{split}_fraction" if split != "train" else f"{records_dir} has no training shards")
  dataset = _serialized_examples(paths, training, training if repeat is None else repeat, shuffle_buffer, seed,
                                 deterministic, input_context)
  dataset = dataset.map(parse_fn(source == "stored"), num_parallel_calls=AUTOTUNE)
  if (spec.uses_ink or source == "raster") and bucket:
    dataset = dataset.bucket_by_sequence_length(
        lambda features, _: features["ink_length"], list(BUCKET_BOUNDARIES),
        [batch_size] * (len(BUCKET_BOUNDARIES) + 1), drop_remainder=training)
  else:
    dataset = dataset.padded_batch(batch_size, drop_remainder=training)
  to_model_inputs = _to_model_inputs_fn(spec, source, image_size, augment, raster_on_replicas)
  if augment:  # A fresh seed pair per batch for the stateless random ops.
    dataset = tf.data.Dataset.zip(dataset, tf.data.Dataset.random(seed=seed).batch(2))
    dataset = dataset.map(lambda batch, seeds: to_model_inputs(*batch, seeds), num_parallel_calls=AUTOTUNE)
  else:
    dataset = dataset.map(to_model_inputs, num_parallel_calls=AUTOTUNE)
  options = tf.data.Options()
  options.deterministic = deterministic
  return dataset.with_options(options).prefetch(AUTOTUNE)


def _serialized_examples(paths, shuffle, repeat, shuffle_buffer, seed, deterministic, input_context):
  """The serialized examples of shard files ``paths``, this input pipeline's share, shuffled when ``shuffle``."""
  files = tf.data.Dataset.from_tensor_slices(paths)
  shard_examples = False
  if input_context and input_context.num_input_pipelines > 1:
    if len(paths) >= input_context.num_input_pipelines:
      files = files.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
    else:  # Fewer files than pipelines: every pipeline reads all files and keeps every n-th example.
      shard_examples = True
  if shuffle:
    files = files.shuffle(len(paths), seed=seed)
  dataset = files.interleave(tf.data.TFRecordDataset, cycle_length=min(len(paths), 8),
                             num_parallel_calls=AUTOTUNE, deterministic=deterministic or None)
  if shard_examples:
    dataset = dataset.shard(input_context.num_input_pipelines, input_context.input_pipeline_id)
  if shuffle:
    dataset = dataset.shuffle(shuffle_buffer, seed=seed)
  return dataset.repeat() if repeat else dataset


def _to_model_inputs_fn(spec, source, image_size, augment, raster_on_replicas):
  """(batch of `parse_fn` features, labels[, augment seed int64 [2]]) -> (model inputs, labels); see `make_dataset`."""

  def to_model_inputs(features, label, augment_seed=None):
    ink, ink_length, points, lengths = features["ink"], features["ink_length"], None, None
    if source == "raster" or augment:
      points, lengths = ink_lib.decode_tf(ink, features["bbox"], features["origin"], ink_length)
    if augment:
      from quickdraw_tf.drawings import augment as augment_lib  # pylint: disable=g-import-not-at-top
      points, lengths = augment_lib.augment(points, lengths, augment, augment_seed)
      ink, ink_length = ink_lib.encode_tf(points, lengths)
    if raster_on_replicas and source == "raster":
      features = {"points": points, "lengths": lengths}
      if spec.uses_ink:
        features.update(ink=ink, ink_length=ink_length)
      return features, label
    return model_inputs(spec, ink, ink_length, points, lengths, features.get("image"), image_size), label

  return to_model_inputs


def distributed_dataset(strategy, records_dir, split, spec, global_batch_size, **kwargs):
  """`make_dataset` under a ``tf.distribute`` strategy, one pipeline per input worker.

  Returns:
    a ``tf.distribute.DistributedDataset`` of per-replica batches of
    ``global_batch_size / num_replicas``.
  """

  def dataset_fn(input_context):
    return make_dataset(records_dir, split, spec, input_context.get_per_replica_batch_size(global_batch_size),
                        input_context=input_context, **kwargs)

  return strategy.distribute_datasets_from_function(dataset_fn)


def default_records_dir():
  """Where make_records writes with its defaults."""
  from quickdraw_tf import DEFAULT_RECORDS_ROOT  # pylint: disable=g-import-not-at-top
  return os.path.join(DEFAULT_RECORDS_ROOT, "quickdraw")
