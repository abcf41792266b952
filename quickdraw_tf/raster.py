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
    points: float ``[n, 3]`` absolute points in the simplified frame (0-255,
      top-left aligned; `ink.fit_to_frame` puts other drawings there).

  Returns:
    float64 ``[n, 2]``: shifted by ``(256 - max) / 2`` per axis, Google's own
    centring (it assumes the minimum is 0, which simplification leaves within
    a unit or two of it).
  """
  xy = np.asarray(points, np.float64)[:, :2]
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
