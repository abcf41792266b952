"""Sketch-RNN's input: stroke-5 in pixel offsets, scaled, padded to ``N_max``.

The records hold the tutorial's ink (deltas of bbox-normalised points, x and y
scaled separately); sketch-rnn reads offsets in the simplified frame's pixels
(aspect kept), divided by one scale factor: the standard deviation of all
training offsets (the notes' appendix; no mean subtraction, as magenta's
``calculate_normalizing_scale_factor``). Drawings with more than
``max_seq_len`` stroke-5 rows, or none (one point), are skipped and counted.
A batch is padded with ``(0, 0, 0, 0, 1)`` rows to what it needs, its longest
drawing and one end-of-sketch row, not to ``max_seq_len`` (the loss does not
depend on the padding: `sketch_rnn.reconstruction_loss`); training batches
are bucketed by length (`data.BUCKET_BOUNDARIES`), as the classifiers'.
"""

import numpy as np
import tensorflow as tf

from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.pipelines import data
from quickdraw_tf.pipelines import records

AUTOTUNE = tf.data.AUTOTUNE


def pixel_ink(ink, bbox):
  """Tutorial ink ``[..., n, 3]`` and its bbox ``[..., 4]`` -> offsets in pixels, pen bits kept."""
  return tf.concat([ink[..., :2] * bbox[..., None, 2:], ink[..., 2:]], axis=-1)


def _parsed(records_dir, split):
  """Dataset of ``(pixel ink float32 [n, 3], length int32)`` of one split, in file order."""
  paths = records.shard_paths(records_dir, split)
  if not paths:
    raise ValueError(f"{records_dir} has no {split!r} shards: rerun make_records with a non-zero --{split}_fraction")

  def parse(serialized):
    example = records.parse(serialized)
    return pixel_ink(example["ink"], example["bbox"]), tf.shape(example["ink"])[0]

  return tf.data.TFRecordDataset(paths).map(parse, num_parallel_calls=AUTOTUNE)


def split_statistics(records_dir, split, max_seq_len=None):
  """What `make_dataset` keeps of a split, and the spread of its offsets.

  Args:
    max_seq_len: the most stroke-5 rows kept; None keeps every drawing.

  Returns:
    dict: ``kept``, ``too_long``, ``empty`` (drawing counts), ``longest``
    (int, rows of the longest kept drawing) and ``offset_std`` (float, the
    standard deviation of the kept drawings' dx and dy together).
  """
  counts = {"kept": 0, "too_long": 0, "empty": 0, "longest": 0}
  sums = np.zeros(3)  # count, sum, sum of squares of the offsets
  for ink, length in _parsed(records_dir, split).as_numpy_iterator():
    if length == 0:
      counts["empty"] += 1
    elif max_seq_len is not None and length > max_seq_len:
      counts["too_long"] += 1
    else:
      counts["kept"] += 1
      counts["longest"] = max(counts["longest"], int(length))
      offsets = ink[:, :2].astype(np.float64).ravel()
      sums += (offsets.size, offsets.sum(), np.square(offsets).sum())
  mean = sums[1] / max(sums[0], 1)
  counts["offset_std"] = float(np.sqrt(max(sums[2] / max(sums[0], 1) - mean * mean, 0.0)))
  return counts


def make_dataset(records_dir, split, batch_size, max_seq_len, scale_factor, training=False, seed=None,
                 repeat=None, shuffle_buffer=20000, pad_to=None, random_scale_factor=0.0, augment_stroke_prob=0.0):
  """Batches of the model's input dict from one split.

  Args:
    records_dir: made by make_records.
    split: "train", "eval" or "test".
    batch_size: drawings per batch.
    max_seq_len: ``N_max``; longer drawings are skipped.
    scale_factor: offsets are divided by it.
    training: shuffle, repeat (unless ``repeat=False``), bucket by length
      and drop each bucket's last partial batch.
    pad_to: pad every batch to this many rows (at least ``max_seq_len + 1``)
      instead of to what it needs: the fixed shape of the paper's padding.
    random_scale_factor, augment_stroke_prob: magenta's training augmentation
      (`augment`), drawn anew each time a drawing is read; with ``training``
      only (held-out splits are read as they are, as magenta's).

  Returns:
    ``tf.data.Dataset`` of ``{"strokes": float32 [b, n + 1, 5], "length":
    int32 [b]}``, n the batch's longest drawing (or ``pad_to - 1``).
  """
  dataset = _parsed(records_dir, split).filter(lambda ink, length: (length > 0) & (length <= max_seq_len))
  if training:
    dataset = dataset.shuffle(shuffle_buffer, seed=seed)
  if training if repeat is None else repeat:
    dataset = dataset.repeat()
  if training and (random_scale_factor or augment_stroke_prob):
    dataset = tf.data.Dataset.zip(dataset, tf.data.Dataset.random(seed=seed).batch(2))
    dataset = dataset.map(lambda drawing, seeds: augment(*drawing, seeds, random_scale_factor, augment_stroke_prob),
                          num_parallel_calls=AUTOTUNE)
  if pad_to:
    dataset = dataset.padded_batch(batch_size, padded_shapes=([pad_to - 1, 3], []), drop_remainder=training)
  elif training:
    dataset = dataset.bucket_by_sequence_length(lambda ink, length: length, list(data.BUCKET_BOUNDARIES),
                                                [batch_size] * (len(data.BUCKET_BOUNDARIES) + 1),
                                                drop_remainder=True)
  else:
    dataset = dataset.padded_batch(batch_size)

  def to_inputs(ink, length):
    ink = tf.concat([ink[..., :2] / scale_factor, ink[..., 2:]], axis=-1)
    ink = tf.pad(ink, [[0, 0], [0, 1], [0, 0]])  # Room for every drawing's end-of-sketch row.
    return {"strokes": ink_lib.to_stroke5(ink, length), "length": length}

  return dataset.map(to_inputs, num_parallel_calls=AUTOTUNE).prefetch(AUTOTUNE)


def augment(ink, length, seeds, random_scale_factor, augment_stroke_prob):
  """magenta's training augmentation of one drawing (its ``DataLoader``: ``random_scale``, ``augment_strokes``).

  x and y offsets are each multiplied by a factor drawn uniformly from
  ``1 +- random_scale_factor``; then each point of a stroke from its fourth
  on, its last excepted, is dropped with probability ``augment_stroke_prob``,
  its offset added to the point kept before it (the drawing loses that
  vertex, its other points stay where they were).

  Args:
    ink: float32 ``[n, 3]`` offsets and pen-lift bits of one drawing.
    length: int32 scalar, ``n``.
    seeds: int64 ``[2]``, the stateless random ops' seed.
    random_scale_factor, augment_stroke_prob: float, magenta's hparams.

  Returns:
    ``(ink float32 [m, 3], m int32)``, ``m <= n``.
  """
  scale_seed, drop_seed = tf.unstack(tf.random.experimental.stateless_split(seeds, 2))
  scale = 1.0 + random_scale_factor * (2.0 * tf.random.stateless_uniform([2], scale_seed) - 1.0)
  offsets, lifted = ink[:, :2] * scale, ink[:, 2]
  index = tf.range(length)
  starts = tf.concat([[True], lifted[:-1] > 0.5], axis=0)  # a stroke starts after a lift (and at the drawing's start)
  stroke = tf.cumsum(tf.cast(starts, tf.int32)) - 1
  within_stroke = index - tf.gather(tf.math.segment_min(index, stroke), stroke)
  dropped = ((lifted < 0.5) & (within_stroke > 2)
             & (tf.random.stateless_uniform([length], drop_seed) < augment_stroke_prob))
  kept = tf.logical_not(dropped)
  kept_before = tf.cumsum(tf.cast(kept, tf.int32)) - 1  # the first point is always kept: never below 0
  count = kept_before[-1] + 1
  offsets = tf.math.unsorted_segment_sum(offsets, kept_before, count)
  return tf.concat([offsets, tf.boolean_mask(lifted, kept)[:, None]], axis=1), count


def points_to_stroke5(points, length, scale_factor):
  """Absolute drawings (any scale) -> the model's scaled stroke-5, in TensorFlow ops.

  Each drawing is fitted to the simplified frame first (minimum 0, larger
  side 255, aspect kept: `ink.fit_to_frame`), so that its offsets are in the
  pixels the model learnt.

  Args:
    points: float32 ``[b, n, 3]`` absolute x, y, stroke-end bit; padded.
    length: int32 ``[b]`` points per drawing.
    scale_factor: the run's.

  Returns:
    float32 ``[b, n - 1, 5]`` stroke-5 and int32 ``[b]`` rows (``length - 1``).
  """
  points = tf.convert_to_tensor(points, tf.float32)
  length = tf.cast(length, tf.int32)
  lower, upper = ink_lib.bounds_tf(points, length)
  extent = tf.reduce_max(upper - lower, axis=2, keepdims=True)
  fit = ink_lib.SIMPLIFIED_EXTENT / tf.where(extent > 0, extent, ink_lib.SIMPLIFIED_EXTENT)
  offsets = (points[:, 1:, :2] - points[:, :-1, :2]) * fit / scale_factor
  rows = tf.maximum(length - 1, 0)
  return ink_lib.to_stroke5(tf.concat([offsets, points[:, 1:, 2:]], axis=2), rows), rows


def stroke5_to_points(strokes, length, scale_factor):
  """One model drawing -> absolute points in the simplified frame (numpy).

  Args:
    strokes: float ``[t, 5]`` stroke-5 in model units; length: rows to use.

  Returns:
    float32 ``[length + 1, 3]`` points from (0, 0), fitted to the simplified
    frame, stroke-end bit on the last point of every stroke; None when
    ``length`` is 0.
  """
  strokes = np.asarray(strokes, np.float64)[:int(length)]
  if not len(strokes):
    return None
  points = np.zeros((len(strokes) + 1, 3), np.float32)
  points[1:, :2] = np.cumsum(strokes[:, :2] * scale_factor, axis=0)
  points[1:, 2] = strokes[:, 3] > 0.5
  points[-1, 2] = 1
  return ink_lib.fit_to_frame(points)
