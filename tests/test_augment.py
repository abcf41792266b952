"""augment.py: random transforms of ink, repeatable by seed, never degenerate."""

import json
import os

import numpy as np
import tensorflow as tf

from quickdraw_tf.drawings import augment
from quickdraw_tf.drawings import ink


def _batch(data_dir, count=8):
  with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", "bicycle.ndjson")) as f:
    drawings = [ink.strokes_to_points(json.loads(line)["drawing"]) for line in f][:count]
  points = np.zeros((count, max(len(d) for d in drawings), 3), np.float32)
  for i, d in enumerate(drawings):
    points[i, :len(d)] = d
  return points, np.array([len(d) for d in drawings], np.int32)


def test_affine_changes_shape_but_keeps_strokes(data_dir):
  points, lengths = _batch(data_dir)
  ranges = augment.Ranges(rotation=30, scale=0.3, shear=0.3, translation=0.2, stroke_dropout=0)
  out, out_lengths = augment.augment(points, lengths, ranges, tf.constant([1, 2]))
  np.testing.assert_array_equal(out_lengths, lengths)
  for i, n in enumerate(lengths):
    np.testing.assert_array_equal(out[i, :n, 2], points[i, :n, 2])  # Stroke ends kept.
    assert np.abs(out[i, :n, :2] - points[i, :n, :2]).max() > 1.0  # Moved.
    assert not out[i, n:].numpy().any()  # Padding stays zero.
  # An affine map: the drawing's points stay in the same order along each stroke, so the
  # tutorial encoding still works and sees a different shape.
  assert not np.allclose(ink.encode(out[0, :lengths[0]].numpy())[0], ink.encode(points[0, :lengths[0]])[0])


def test_same_seed_same_result_and_other_seed_differs(data_dir):
  points, lengths = _batch(data_dir)
  ranges = augment.Ranges()
  a = augment.augment(points, lengths, ranges, tf.constant([5, 6]))[0].numpy()
  b = augment.augment(points, lengths, ranges, tf.constant([5, 6]))[0].numpy()
  c = augment.augment(points, lengths, ranges, tf.constant([5, 7]))[0].numpy()
  np.testing.assert_array_equal(a, b)
  assert not np.array_equal(a, c)


def test_stroke_dropout_drops_whole_strokes_and_keeps_two_points(data_dir):
  points, lengths = _batch(data_dir)
  ranges = augment.Ranges(rotation=0, scale=0, shear=0, translation=0, stroke_dropout=0.5)
  out, out_lengths = augment.augment(points, lengths, ranges, tf.constant([3, 4]))
  out, out_lengths = out.numpy(), out_lengths.numpy()
  assert (out_lengths >= 2).all() and (out_lengths <= lengths).all() and (out_lengths < lengths).any()
  for i in range(len(lengths)):

    def strokes(rows):
      return [tuple(map(tuple, stroke)) for stroke in np.split(rows[:, :2], np.flatnonzero(rows[:, 2])[:-1] + 1)]

    before, after = strokes(points[i, :lengths[i]]), strokes(out[i, :out_lengths[i]])
    # Whole strokes, in their order: the kept ones are a subsequence of the original ones.
    position = 0
    for stroke in after:
      position = before.index(stroke, position) + 1
