"""Ink -> image, with the geometry of Google's ``numpy_bitmap`` rendering.

Google drew each simplified drawing (coordinates 0-255, top-left aligned) on a
256-unit canvas, bounding box centred, with a line 16 units wide, round caps
and joins, 16 units of padding per side plus half a line width, anti-aliased,
then scaled the whole to 28x28. `render_png` reproduces those bitmaps exactly
through cairosvg (make_records' offline renderer).
"""

import io

import numpy as np

from quickdraw_tf import ink as ink_lib

CANVAS = 256.0
LINE_WIDTH = 16.0
PADDING = 16.0
# Side of the square viewport, in canvas units, that maps onto the image.
VIEWPORT = CANVAS + 2 * PADDING + LINE_WIDTH


def canvas_points(points):
  """Places simplified-frame points on Google's 256-unit canvas.

  Args:
    points: float ``[n, 3]`` absolute points; drawings not in the simplified
      frame yet are fitted to it (`ink.to_frame`).

  Returns:
    float64 ``[n, 2]``: shifted by ``(256 - max) / 2`` per axis, Google's own
    centring (it assumes the minimum is 0, which simplification leaves within
    a unit or two of it).
  """
  xy = ink_lib.to_frame(points)[:, :2].astype(np.float64)
  return xy + (CANVAS - xy.max(axis=0)) / 2


def to_svg(points, size):
  """An SVG document of the drawing: white strokes on a transparent ``size``-px square."""
  xy = canvas_points(points)
  polylines = []
  for xs, ys in ink_lib.points_to_strokes(np.concatenate([xy, np.asarray(points)[:, 2:]], 1)):
    if len(xs) == 1:  # A dot: a zero-length segment draws a round cap, as cairo does.
      xs, ys = np.repeat(xs, 2), np.repeat(ys, 2)
    coords = " ".join(f"{x:.3f},{y:.3f}" for x, y in zip(xs, ys))
    polylines.append(f'<polyline points="{coords}"/>')
  origin = -(PADDING + LINE_WIDTH / 2)
  return (f'<svg xmlns="http://www.w3.org/2000/svg" width="{size}" height="{size}" '
          f'viewBox="{origin} {origin} {VIEWPORT} {VIEWPORT}">'
          f'<g fill="none" stroke="#fff" stroke-width="{LINE_WIDTH}" '
          f'stroke-linecap="round" stroke-linejoin="round">{"".join(polylines)}</g></svg>')


def render(points, size=28):
  """Renders a drawing with cairosvg.

  Args:
    points: float ``[n, 3]`` absolute points (x, y, stroke-end bit).
    size: side of the square image in pixels.

  Returns:
    uint8 ``[size, size]``: 0 = background, 255 = ink.
  """
  import cairosvg  # pylint: disable=g-import-not-at-top
  from PIL import Image  # pylint: disable=g-import-not-at-top
  png = cairosvg.svg2png(bytestring=to_svg(points, size).encode())
  return np.asarray(Image.open(io.BytesIO(png)).getchannel("A"))


def encode_png(image):
  """uint8 ``[h, w]`` -> grayscale PNG bytes."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  out = io.BytesIO()
  Image.fromarray(np.asarray(image, np.uint8)).save(out, format="PNG")
  return out.getvalue()


# --- In-graph rasteriser (training pipeline and exported model) -------------


def _frame(xy, valid):
  """Puts padded drawings ``[b, t, 2]`` on the 256-unit canvas, as `ink.to_frame` then `canvas_points` do."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  big = tf.constant(3.0e38)
  lower = tf.reduce_min(tf.where(valid[..., None], xy, big), axis=1, keepdims=True)
  upper = tf.reduce_max(tf.where(valid[..., None], xy, -big), axis=1, keepdims=True)
  extent = tf.reduce_max(upper - lower, axis=2, keepdims=True)
  in_frame = ((tf.reduce_min(lower, axis=2, keepdims=True) >= 0) &
              (tf.reduce_max(upper, axis=2, keepdims=True) <= ink_lib.SIMPLIFIED_EXTENT) &
              (extent >= ink_lib.FRAME_MIN_EXTENT))
  scale = tf.where(extent > 0, ink_lib.SIMPLIFIED_EXTENT / tf.maximum(extent, 1e-30), 1.0)
  xy = tf.where(in_frame, xy, (xy - lower) * scale)
  upper = tf.where(in_frame, upper, (upper - lower) * scale)
  return xy + (CANVAS - upper) / 2


def rasterize(points, lengths, size=28, supersample=8, x_supersample=16):
  """Renders padded batches of drawings in TensorFlow ops.

  Same geometry as `render` and Google's ``numpy_bitmap``: drawings outside
  the simplified frame are fitted to it (`ink.to_frame`), centred on the
  256-unit canvas, drawn with a 16-unit line with round caps and joins, and
  the padded viewport mapped onto ``size`` pixels. A pixel's value is the
  share of its sub-pixel samples (``supersample`` rows of ``x_supersample``)
  within half a line width of a segment.

  Each segment's line is a capsule, which cuts a row of samples in one
  interval; intervals become coverage through a difference array, so the
  work grows with segments x rows, not segments x samples, and sampling each
  row finely costs next to nothing.

  Args:
    points: float32 ``[batch, max_points, 3]``: absolute x, y in any scale and
      a stroke-end bit (1 on the last point of each stroke).
    lengths: int32 ``[batch]``: valid points per row; the rest is ignored.
    size: output side in pixels.
    supersample: sample rows per pixel.
    x_supersample: samples per pixel along a row.

  Returns:
    float32 ``[batch, size, size, 1]`` in [0, 1], 1 = ink.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  points = tf.convert_to_tensor(points, tf.float32)
  lengths = tf.cast(lengths, tf.int32)
  batch, steps = tf.shape(points)[0], tf.shape(points)[1]
  valid = tf.sequence_mask(lengths, steps)
  xy = _frame(points[..., :2], valid)

  # One segment per valid point: to the next point of the same stroke, or a
  # zero-length one (a round dot) at a stroke's last point.
  connected = (points[..., 2] < 0.5) & tf.sequence_mask(lengths - 1, steps)
  a = xy
  b = tf.where(connected[..., None], tf.concat([xy[:, 1:], xy[:, -1:]], axis=1), xy)

  rows_n, cols_n = size * supersample, size * x_supersample
  origin = -(PADDING + LINE_WIDTH / 2)
  row_step, col_step = VIEWPORT / rows_n, VIEWPORT / cols_n
  rows = origin + (tf.range(rows_n, dtype=tf.float32) + 0.5) * row_step  # [R] canvas y of sample rows
  first = origin + 0.5 * col_step  # Canvas x of sample column 0.
  radius = LINE_WIDTH / 2
  inf = tf.constant(float("inf"))

  ax, ay = a[..., 0, None], a[..., 1, None]  # [B, T, 1]
  dx, dy = b[..., 0, None] - ax, b[..., 1, None] - ay
  c = rows[None, None, :]  # [1, 1, R]

  def disc(px, py):
    h2 = radius**2 - (c - py)**2
    h = tf.sqrt(tf.maximum(h2, 0.0))
    return tf.where(h2 >= 0, px - h, inf), tf.where(h2 >= 0, px + h, -inf)

  lo_a, hi_a = disc(ax, ay)
  lo_b, hi_b = disc(ax + dx, ay + dy)
  # The band between the end discs: within ``radius`` of the line through the
  # segment, and projecting inside it. Each is an x-interval on the row.
  length2 = dx * dx + dy * dy
  length = tf.sqrt(length2)
  k = dy * ax + dx * (c - ay)  # Distance condition: |k - dy * x| <= radius * length.
  safe_dy = tf.where(dy == 0, 1.0, dy)
  e1, e2 = (k - radius * length) / safe_dy, (k + radius * length) / safe_dy
  near_lo = tf.where(dy == 0, tf.where(tf.abs(c - ay) <= radius, -inf, inf), tf.minimum(e1, e2))
  near_hi = tf.where(dy == 0, tf.where(tf.abs(c - ay) <= radius, inf, -inf), tf.maximum(e1, e2))
  m = dy * (c - ay)  # Projection condition: 0 <= dx * (x - ax) + m <= length2.
  safe_dx = tf.where(dx == 0, 1.0, dx)
  p1, p2 = ax - m / safe_dx, ax + (length2 - m) / safe_dx
  inside = (m >= 0) & (m <= length2)
  along_lo = tf.where(dx == 0, tf.where(inside, -inf, inf), tf.minimum(p1, p2))
  along_hi = tf.where(dx == 0, tf.where(inside, inf, -inf), tf.maximum(p1, p2))
  band_lo = tf.where(length2 > 0, tf.maximum(near_lo, along_lo), inf)
  band_hi = tf.where(length2 > 0, tf.minimum(near_hi, along_hi), -inf)
  lo = tf.minimum(tf.minimum(lo_a, lo_b), tf.where(band_lo <= band_hi, band_lo, inf))
  hi = tf.maximum(tf.maximum(hi_a, hi_b), tf.where(band_lo <= band_hi, band_hi, -inf))

  # Samples j with lo <= first + j * col_step <= hi, as +1/-1 events per row.
  start = tf.math.ceil((tf.maximum(lo, first - col_step) - first) / col_step)
  stop = tf.math.floor((tf.minimum(hi, first + cols_n * col_step) - first) / col_step) + 1
  start = tf.cast(tf.clip_by_value(start, 0, cols_n), tf.int32)
  stop = tf.cast(tf.clip_by_value(stop, 0, cols_n), tf.int32)
  weight = tf.cast(valid[..., None] & (stop > start), tf.float32)  # [B, T, R]
  row_base = (tf.range(batch)[:, None, None] * rows_n + tf.range(rows_n)[None, None, :]) * (cols_n + 1)
  ids = tf.concat([tf.reshape(row_base + start, [-1]), tf.reshape(row_base + stop, [-1])], 0)
  events = tf.concat([tf.reshape(weight, [-1]), -tf.reshape(weight, [-1])], 0)
  counts = tf.math.unsorted_segment_sum(events, ids, batch * rows_n * (cols_n + 1))
  counts = tf.reshape(counts, [batch, rows_n, cols_n + 1])
  covered = tf.cast(tf.cumsum(counts, axis=2)[..., :cols_n] > 0.5, tf.float32)
  covered = tf.reshape(covered, [batch, size, supersample, size, x_supersample])
  return tf.reduce_mean(covered, axis=[2, 4])[..., None]
