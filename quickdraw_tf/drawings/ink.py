"""Drawings as arrays: parse, validate, simplify, and encode them the tutorial's way.

Three representations appear throughout the package:

* strokes: what QuickDraw ndjson holds, a list of strokes, each ``[xs, ys]``
  (simplified) or ``[xs, ys, ts]`` (raw).
* points: float32 ``[n, 3]`` of absolute ``x, y`` and a stroke-end bit that is 1
  on the last point of every stroke. This is also what the exported model serves.
* ink: float32 ``[n - 1, 3]``, Google's quickdraw tutorial encoding: points
  size-normalised by their bounding box (x and y scaled separately), then
  delta-encoded, first point dropped.
"""

import hashlib

import numpy as np

# Google's raw -> simplified recipe (quickdraw-dataset README): align to the
# top-left, scale the larger side to 255, resample at 1 px, RDP with epsilon 2.
SIMPLIFIED_EXTENT = 255.0
RESAMPLE_SPACING = 1.0
RDP_EPSILON = 2.0
# Simplification leaves drawings within 0-255 with their larger side at 245-255
# (RDP can trim an extreme, rounding moves a unit): those are in the frame already
# and are not refitted.
FRAME_MIN_EXTENT = 240.0


class InkError(ValueError):
  """A drawing that cannot be used; ``reason`` is a short counter name."""

  def __init__(self, reason, message):
    super().__init__(message)
    self.reason = reason


def strokes_to_points(strokes):
  """Concatenates QuickDraw strokes into points.

  Args:
    strokes: list of strokes, each ``[xs, ys]`` or ``[xs, ys, ts]`` of equal
      length (extra lists such as timings are ignored).

  Returns:
    float32 ``[n, 3]``: x, y, and 1.0 on the last point of each stroke.

  Raises:
    InkError: empty drawing or stroke, lists of different lengths (reasons
      ``empty_drawing``, ``mismatched_lengths``, ``bad_stroke``); a value that
      is not a number, booleans and numeric strings included (``bad_stroke``);
      a number that is not finite once in float32, such as NaN, 1e39 or a
      400-digit integer, or a bounding box whose extent is not (x from -3e38
      to 3e38), so that `encode` would give NaN ink (``non_finite``).
  """
  (points,) = strokes_to_points_batch([strokes])
  if isinstance(points, InkError):
    raise points
  return points


# Exact types of the coordinates the fast path converts: JSON numbers. numpy
# takes a bool in a list of ints for 0 or 1, so bools are found by type.
_PLAIN_NUMBERS = frozenset((int, float))
_NON_FINITE = "drawing has NaN or infinite coordinates, or a bounding box too large for float32"


def strokes_to_points_batch(drawings, may_hold_bools=True):
  """`strokes_to_points` for many drawings, with one numpy conversion for all.

  Args:
    drawings: list of stroke lists.
    may_hold_bools: False when the caller knows no coordinate is a bool (say,
      the JSON text holds no ``true`` or ``false`` there): skips the scan of
      every value's type, a fifth of the conversion's cost. Strings, lists
      and huge integers are found either way, by numpy's dtype.

  Returns:
    list with, per drawing, float32 ``[n, 3]`` points or the `InkError` that
    drawing raises.
  """
  results, xs, ys, ends, spans = [], [], [], [], []  # spans: (index in results, first point, end point)
  for strokes in drawings:
    error = _shape_error(strokes)
    if error:
      results.append(error)
      continue
    start = len(xs)
    for stroke in strokes:
      xs.extend(stroke[0])
      ys.extend(stroke[1])
      ends.append(len(xs) - 1)
    spans.append((len(results), start, len(xs)))
    results.append(None)
  if not spans:
    return results
  points = np.zeros((len(xs), 3), np.float32)
  _convert_coordinates(points, xs, ys, spans, results, may_hold_bools)
  points[ends, 2] = 1.0
  starts = [start for _, start, _ in spans]
  xy = points[:, :2]
  with np.errstate(over="ignore", invalid="ignore"):
    extent = np.maximum.reduceat(xy, starts) - np.minimum.reduceat(xy, starts)
    finite = np.logical_and.reduceat(np.isfinite(xy).all(axis=1), starts) & np.isfinite(extent).all(axis=1)
  for (index, start, stop), ok in zip(spans, finite.tolist()):
    if results[index] is None:
      results[index] = points[start:stop] if ok else InkError("non_finite", _NON_FINITE)
  return results


def _shape_error(strokes):
  """The `InkError` of a drawing whose strokes are not equal-length coordinate lists, else None."""
  try:
    if not isinstance(strokes, list) or not strokes:
      raise InkError("empty_drawing", "drawing has no strokes")
    counts = [len(stroke[0]) for stroke in strokes]
    if counts != [len(stroke[1]) for stroke in strokes] or not all(counts) or any(
        len(stroke) != 2 and {len(c) for c in stroke} != {len(stroke[0])} for stroke in strokes):
      _raise_stroke_error(strokes)
  except InkError as e:
    return e
  except (TypeError, KeyError, IndexError) as e:
    return InkError("bad_stroke", f"strokes are not lists of coordinate lists: {e}")
  return None


def _convert_coordinates(points, xs, ys, spans, results, may_hold_bools):
  """Fills ``points[:, :2]`` from the values ``xs``, ``ys``; a drawing with a bad value gets its `InkError`.

  One numpy conversion for all; only when it fails (some value is not a
  plain number) is each drawing converted apart, to find which.
  """
  try:
    if may_hold_bools and not (_PLAIN_NUMBERS.issuperset(map(type, xs)) and _PLAIN_NUMBERS.issuperset(map(type, ys))):
      raise TypeError("not plain numbers")
    columns = np.array(xs), np.array(ys)  # Strings, lists, integers past 64 bits: another dtype.
    if any(c.dtype.kind not in "iuf" or c.ndim != 1 for c in columns):
      raise TypeError("not plain numbers")
    with np.errstate(over="ignore"):  # float32 overflow gives inf, rejected as non_finite.
      points[:, 0], points[:, 1] = columns
  except (TypeError, ValueError, OverflowError):
    for index, start, stop in spans:
      try:
        points[start:stop, 0] = _coordinates(xs[start:stop])
        points[start:stop, 1] = _coordinates(ys[start:stop])
      except InkError as e:
        results[index] = e


def _coordinates(values):
  """One drawing's x or y values -> float32 ``[n]`` (the slow path of `strokes_to_points_batch`).

  Raises:
    InkError: ``bad_stroke`` for a value that is not a real number (bool,
      string, list, None); ``non_finite`` for an integer beyond float range.
  """
  for value in values:
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, float, np.integer, np.floating)):
      raise InkError("bad_stroke", f"coordinate {value!r} is not a number")
  try:
    with np.errstate(over="ignore"):
      return np.asarray(np.asarray(values, np.float64), np.float32)
  except OverflowError:
    raise InkError("non_finite", "a coordinate is too large for a float") from None


def _raise_stroke_error(strokes):
  """Names the first bad stroke (the slow path of `strokes_to_points`)."""
  for i, stroke in enumerate(strokes):
    if not isinstance(stroke, (list, tuple)) or len(stroke) < 2:
      raise InkError("bad_stroke", f"stroke {i} is not a list of coordinate lists")
    lengths = [len(c) for c in stroke]
    if len(set(lengths)) != 1:
      raise InkError("mismatched_lengths", f"stroke {i} has coordinate lists of lengths {lengths}")
    if not lengths[0]:
      raise InkError("empty_drawing", f"stroke {i} has no points")
  raise InkError("bad_stroke", "malformed strokes")


MIN_POINTS = 2  # The tutorial encoding drops the first point: fewer leave no ink.


def check_usable(points):
  """Raises unless ``points`` make a drawing that every model can take.

  The one test of a usable drawing, shared by make_records (which skips the
  others) and predict: at least `MIN_POINTS` points, all finite, and a
  bounding box whose extent is finite in float32, so that `encode` (and the
  serving graph's `encode_tf`) give finite ink. Coordinates of +-3e38 are
  finite, but their extent overflows to inf and the normalised ink to NaN.
  (`strokes_to_points` already refuses non-finite drawings.)

  Args:
    points: float ``[n, 3]`` as `strokes_to_points` returns them.

  Raises:
    InkError: reason ``too_few_points`` or ``non_finite``.
  """
  if len(points) < MIN_POINTS:
    raise InkError("too_few_points", f"drawing has {len(points)} point(s); at least {MIN_POINTS} are needed")
  xy = np.asarray(points)[:, :2].astype(np.float32)
  with np.errstate(over="ignore", invalid="ignore"):
    finite = np.isfinite(xy).all() and np.isfinite(xy.max(axis=0) - xy.min(axis=0)).all()
  if not finite:
    raise InkError("non_finite", _NON_FINITE)


def points_to_strokes(points):
  """Inverse of `strokes_to_points`: float32 ``[n, 3]`` -> list of ``(xs, ys)`` arrays."""
  points = np.asarray(points)
  ends = np.flatnonzero(points[:, 2] > 0.5) + 1
  if not len(ends) or ends[-1] != len(points):
    ends = np.append(ends, len(points))
  starts = np.concatenate([[0], ends[:-1]])
  return [(points[s:e, 0], points[s:e, 1]) for s, e in zip(starts, ends) if e > s]


def encode(points):
  """The tutorial's ink encoding, plus what is needed to undo it.

  Args:
    points: float32 ``[n, 3]``, n >= 2.

  Returns:
    ink: float32 ``[n - 1, 3]``, bbox-normalised deltas and stroke-end bits.
    bbox: float32 ``[4]``: ``x_min, y_min, x_scale, y_scale`` (a zero extent
      is stored as 1, as the tutorial divides by it).
    origin: float32 ``[3]``: the dropped first point, absolute.
  """
  return encode_batch([points])[0]


def encode_batch(points_list):
  """`encode` for many drawings at once: one set of numpy calls for all of them.

  Args:
    points_list: list of float32 ``[n_i, 3]`` arrays, each n_i >= 2.

  Returns:
    list of ``(ink, bbox, origin)`` as `encode` returns them (views into
    shared arrays).
  """
  points = np.concatenate(points_list).astype(np.float32, copy=False)
  sizes = np.array([len(p) for p in points_list])
  starts = np.concatenate([[0], np.cumsum(sizes)[:-1]])
  lower = np.minimum.reduceat(points[:, :2], starts)
  scale = np.maximum.reduceat(points[:, :2], starts) - lower
  scale[scale == 0] = 1
  owner = np.repeat(np.arange(len(sizes)), sizes)
  normalised = (points[:, :2] - lower[owner]) / scale[owner]
  ink = np.empty((len(points), 3), np.float32)
  ink[1:, :2] = normalised[1:] - normalised[:-1]
  ink[:, 2] = points[:, 2]
  bboxes = np.concatenate([lower, scale], 1)
  return [(ink[s + 1:s + n], bboxes[i], points[s].copy()) for i, (s, n) in enumerate(zip(starts, sizes))]


def decode(ink, bbox, origin):
  """Inverse of `encode`: absolute float32 ``[n, 3]`` points (up to float rounding)."""
  ink = np.asarray(ink, np.float32).reshape(-1, 3)
  bbox = np.asarray(bbox, np.float32)
  origin = np.asarray(origin, np.float32)
  start = (origin[:2] - bbox[:2]) / bbox[2:]
  normalised = start + np.cumsum(np.concatenate([[[0, 0]], ink[:, :2]]), axis=0)
  points = np.empty((len(ink) + 1, 3), np.float32)
  points[:, :2] = normalised * bbox[2:] + bbox[:2]
  points[0, 2] = origin[2]
  points[1:, 2] = ink[:, 2]
  return points


def rdp(xy, epsilon):
  """Ramer-Douglas-Peucker polyline simplification.

  Args:
    xy: float ``[n, 2]``.
    epsilon: largest distance a dropped point may lie from the kept polyline.

  Returns:
    bool ``[n]``: which points to keep (always the first and the last).
  """
  n = len(xy)
  keep = np.zeros(n, bool)
  keep[0] = keep[-1] = True
  stack = [(0, n - 1)]
  while stack:
    first, last = stack.pop()
    if last - first < 2:
      continue
    a, b = xy[first], xy[last]
    inner = xy[first + 1:last]
    ab = b - a
    length = np.hypot(*ab)
    if length == 0:
      dist = np.hypot(*(inner - a).T)
    else:
      dist = np.abs(ab[0] * (inner[:, 1] - a[1]) - ab[1] * (inner[:, 0] - a[0])) / length
    i = int(np.argmax(dist))
    if dist[i] > epsilon:
      mid = first + 1 + i
      keep[mid] = True
      stack.append((first, mid))
      stack.append((mid, last))
  return keep


def resample(xy, spacing):
  """Points every ``spacing`` units of arc length along a polyline ``[n, 2]``, ends kept."""
  seg = np.hypot(*np.diff(xy, axis=0).T)
  arc = np.concatenate([[0.0], np.cumsum(seg)])
  if arc[-1] == 0:
    return xy[:1]
  stations = np.arange(0.0, arc[-1], spacing)
  if arc[-1] - stations[-1] > 1e-9:
    stations = np.append(stations, arc[-1])
  return np.stack([np.interp(stations, arc, xy[:, 0]), np.interp(stations, arc, xy[:, 1])], 1)


def simplify_raw(points):
  """Converts raw ink to the dataset's ``simplified`` form.

  Follows the dataset documentation: align to the top-left, scale uniformly so
  the larger side spans 0-255, resample every stroke at 1-pixel spacing,
  simplify with Ramer-Douglas-Peucker (epsilon 2.0), round to integers.

  Args:
    points: float32 ``[n, 3]`` absolute raw points.

  Returns:
    float32 ``[m, 3]`` simplified points, integer-valued coordinates in 0-255.
  """
  xy = fit_to_frame(points)[:, :2].astype(np.float64)
  out = []
  for sx, sy in points_to_strokes(np.concatenate([xy, points[:, 2:]], 1)):
    stroke = resample(np.stack([sx, sy], 1), RESAMPLE_SPACING)
    stroke = stroke[rdp(stroke, RDP_EPSILON)]
    stroke = np.round(stroke)
    part = np.zeros((len(stroke), 3), np.float32)
    part[:, :2] = stroke
    part[-1, 2] = 1
    out.append(part)
  return np.concatenate(out)


def fit_to_frame(points):
  """Moves points of any scale into the simplified frame.

  Args:
    points: float ``[n, 3]``.

  Returns:
    float32 ``[n, 3]``: minimum at 0, the larger side scaled to 255, aspect
    ratio kept, stroke-end bits unchanged.
  """
  out = np.array(points, np.float32)
  out[:, :2] -= out[:, :2].min(axis=0)
  extent = out[:, :2].max()
  if extent > 0:
    out[:, :2] *= SIMPLIFIED_EXTENT / extent
  return out


def to_frame(points):
  """`fit_to_frame` for drawings not in the simplified frame yet; others as they are.

  A drawing within 0-255 whose larger side spans at least `FRAME_MIN_EXTENT`
  (what Google's simplification leaves) is kept exactly, so that it renders
  like Google's bitmaps; any other scale is fitted.
  """
  xy = np.asarray(points)[:, :2]
  if xy.min() >= 0 and xy.max() <= SIMPLIFIED_EXTENT and (xy.max(0) - xy.min(0)).max() >= FRAME_MIN_EXTENT:
    return np.asarray(points, np.float32)
  return fit_to_frame(points)


def stroke3_to_points(stroke3):
  """sketch-rnn stroke-3 ``[n, 3]`` (dx, dy, pen lifted after this point) -> points ``[n, 3]``."""
  stroke3 = np.asarray(stroke3, np.float32)
  points = np.empty_like(stroke3)
  points[:, :2] = np.cumsum(stroke3[:, :2], axis=0)
  points[:, 2] = stroke3[:, 2]
  points[-1, 2] = 1
  return points


def points_to_stroke3(points):
  """Inverse of `stroke3_to_points`: offsets from the previous point (the first from 0, 0)."""
  points = np.asarray(points, np.float32)
  stroke3 = points.copy()
  stroke3[1:, :2] -= points[:-1, :2]
  return stroke3


def fingerprint(*parts):
  """A stable 64-bit integer hash of strings or arrays (splits, shards, de-duplication)."""
  h = hashlib.blake2b(digest_size=8)
  for part in parts:
    h.update(part.tobytes() if isinstance(part, np.ndarray) else str(part).encode())
    h.update(b"\0")
  return int.from_bytes(h.digest(), "little")


# --- The same encodings in TensorFlow ops (input pipeline, exported model) ---


def bounds_tf(points, lengths):
  """The corners of each padded drawing's valid points, in TensorFlow ops.

  Args:
    points: float32 ``[batch, time, 3]`` absolute points, padded.
    lengths: int32 ``[batch]`` valid points per row.

  Returns:
    lower, upper: float32 ``[batch, 1, 2]`` minimum and maximum x, y.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  valid = tf.sequence_mask(lengths, tf.shape(points)[1])[..., None]
  xy = points[..., :2]
  return (tf.reduce_min(tf.where(valid, xy, 3.0e38), axis=1, keepdims=True),
          tf.reduce_max(tf.where(valid, xy, -3.0e38), axis=1, keepdims=True))


def encode_tf(points, lengths):
  """`encode` for padded batches, in TensorFlow ops.

  Args:
    points: float32 ``[batch, time, 3]`` absolute points, padded.
    lengths: int32 ``[batch]`` valid points per row (>= 2 for a usable row).

  Returns:
    ink: float32 ``[batch, time - 1, 3]``, zero beyond ``lengths - 1``.
    ink_lengths: int32 ``[batch]``, ``lengths - 1``.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  points = tf.convert_to_tensor(points, tf.float32)
  lengths = tf.cast(lengths, tf.int32)
  lower, upper = bounds_tf(points, lengths)
  scale = tf.where(upper == lower, 1.0, upper - lower)
  normalised = (points[..., :2] - lower) / scale
  ink = tf.concat([normalised[:, 1:] - normalised[:, :-1], points[:, 1:, 2:]], axis=2)
  ink_lengths = tf.maximum(lengths - 1, 0)
  return tf.where(tf.sequence_mask(ink_lengths, tf.shape(ink)[1])[..., None], ink, 0.0), ink_lengths


def decode_tf(ink, bbox, origin, ink_lengths):
  """`decode` for padded batches, in TensorFlow ops.

  Args:
    ink: float32 ``[batch, time, 3]`` tutorial ink, padded.
    bbox: float32 ``[batch, 4]``; origin: float32 ``[batch, 3]`` (records).
    ink_lengths: int32 ``[batch]``.

  Returns:
    points: float32 ``[batch, time + 1, 3]`` absolute, zero beyond lengths.
    lengths: int32 ``[batch]``, ``ink_lengths + 1``.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  ink_lengths = tf.cast(ink_lengths, tf.int32)
  lower, scale = bbox[:, None, :2], bbox[:, None, 2:]
  start = (origin[:, None, :2] - lower) / scale
  deltas = tf.where(tf.sequence_mask(ink_lengths, tf.shape(ink)[1])[..., None], ink[..., :2], 0.0)
  normalised = tf.concat([start, start + tf.cumsum(deltas, axis=1)], axis=1)
  points = tf.concat([normalised * scale + lower, tf.concat([origin[:, None, 2:], ink[..., 2:]], axis=1)], axis=2)
  lengths = ink_lengths + 1
  return tf.where(tf.sequence_mask(lengths, tf.shape(points)[1])[..., None], points, 0.0), lengths


def to_stroke5(ink, ink_lengths):
  """Tutorial stroke-3 ink -> sketch-rnn stroke-5 ``(dx, dy, p1, p2, p3)``.

  Args:
    ink: float32 ``[batch, time, 3]``; ink_lengths: int32 ``[batch]``.

  Returns:
    float32 ``[batch, time, 5]``: p1 = pen stays down, p2 = pen lifts after
    this point, p3 = end of drawing; padding rows are ``(0, 0, 0, 0, 1)``.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  valid = tf.sequence_mask(ink_lengths, tf.shape(ink)[1])[..., None]
  lifted = ink[..., 2:3]
  stroke5 = tf.concat([ink[..., :2], 1.0 - lifted, lifted, tf.zeros_like(lifted)], axis=2)
  return tf.where(valid, stroke5, tf.constant([0.0, 0.0, 0.0, 0.0, 1.0]))
