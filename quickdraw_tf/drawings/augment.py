"""Training-time augmentation of drawings, on absolute points before encoding or rasterising.

A random affine map per drawing (rotation, anisotropic scale, shear,
translation) and stroke dropout. Both the tutorial encoding and the
rasteriser normalise position and size, so translation and a uniform scale
change little on their own; rotation, shear, the x/y scale ratio and dropped
strokes change what the model sees.
"""

import dataclasses
import math

import tensorflow as tf


def _range(default, help_text):
  return dataclasses.field(default=default, metadata={"help": help_text})


@dataclasses.dataclass(frozen=True)
class Ranges:
  """How far each random change may go; each field is also ``train``'s ``--augment_<field>`` (its help here)."""
  rotation: float = _range(15.0, "Max rotation, degrees.")  # +-
  scale: float = _range(0.15, "Max relative scale change, per axis.")  # +-, drawn for x and y separately
  shear: float = _range(0.15, "Max shear.")  # +-
  translation: float = _range(0.1, "Max shift, share of drawing size.")  # +-
  stroke_dropout: float = _range(0.1, "Chance to drop a stroke.")  # never all of them


def augment(points, lengths, ranges, seed):
  """Randomly transforms a padded batch of drawings.

  Args:
    points: float32 ``[batch, time, 3]`` absolute x, y, stroke-end bit.
    lengths: int32 ``[batch]``.
    ranges: `Ranges`.
    seed: int ``[2]`` for the stateless random ops (a fresh one per batch:
      the pipeline draws them from ``tf.data.Dataset.random``).

  Returns:
    (points, lengths) of the same shapes, padding zeroed.
  """
  batch, steps = tf.shape(points)[0], tf.shape(points)[1]
  seeds = iter(tf.unstack(tf.random.experimental.stateless_split(seed, 8)))

  def uniform(limit, shape=(None,)):
    shape = [batch] + list(shape[1:])
    return tf.random.stateless_uniform(shape, next(seeds), -limit, limit)

  angle = uniform(ranges.rotation * math.pi / 180)
  cos, sin = tf.cos(angle), tf.sin(angle)
  sx, sy = 1 + uniform(ranges.scale), 1 + uniform(ranges.scale)
  shear = uniform(ranges.shear)
  # [[sx, 0], [0, sy]] @ [[1, shear], [0, 1]] @ rotation: one 2x2 matrix per drawing.
  a = tf.stack([tf.stack([sx * (cos + shear * sin), sx * (-sin + shear * cos)], -1),
                tf.stack([sy * sin, sy * cos], -1)], -2)  # [B, 2, 2]
  valid = tf.sequence_mask(lengths, steps)
  xy = points[..., :2]
  size = (tf.reduce_max(tf.where(valid[..., None], xy, -3e38), axis=1) -
          tf.reduce_min(tf.where(valid[..., None], xy, 3e38), axis=1))  # [B, 2]
  shift = uniform(ranges.translation, (None, 2)) * tf.reduce_max(size, axis=1, keepdims=True)
  xy = tf.einsum("bij,btj->bti", a, xy) + shift[:, None, :]
  points = tf.where(valid[..., None], tf.concat([xy, points[..., 2:]], axis=2), 0.0)
  if ranges.stroke_dropout > 0:
    points, lengths = _drop_strokes(points, lengths, valid, ranges.stroke_dropout, next(seeds), next(seeds))
  return points, lengths


def _drop_strokes(points, lengths, valid, rate, seed, pick_seed):
  ends = points[..., 2] > 0.5
  # Stroke index of each point: strokes ended before it.
  stroke = tf.cumsum(tf.cast(ends, tf.int32), axis=1, exclusive=True)
  strokes = tf.reduce_max(tf.where(valid, stroke, 0), axis=1) + 1  # [B]
  keep_stroke = tf.random.stateless_uniform(tf.shape(points)[:2], seed) >= rate  # A draw per stroke index.
  first = tf.range(tf.shape(points)[1])[None, :] == tf.random.stateless_uniform(
      tf.shape(strokes), pick_seed, maxval=tf.int32.max, dtype=tf.int32)[:, None] % strokes[:, None]
  keep_stroke = keep_stroke | first  # A random stroke always stays.
  keep = valid & tf.gather(keep_stroke, stroke, batch_dims=1)
  kept = tf.ragged.boolean_mask(points, keep)
  kept_points, kept_lengths = kept.to_tensor(shape=tf.shape(points)), tf.cast(kept.row_lengths(), tf.int32)
  usable = kept_lengths >= 2  # The tutorial encoding needs two points.
  return (tf.where(usable[:, None, None], kept_points, tf.where(valid[..., None], points, 0.0)),
          tf.where(usable, kept_lengths, lengths))
