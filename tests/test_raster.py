"""raster.rasterize: geometry on hand-made drawings, invariances, and Google's bitmaps."""

import glob
import io
import json
import os

import numpy as np
import pytest
import tensorflow as tf

from quickdraw_tf.drawings import ink
from quickdraw_tf.drawings import raster


def _batch(drawings):
  """list of points [n, 3] -> padded float32 [b, t, 3] and lengths."""
  steps = max(len(p) for p in drawings)
  points = np.zeros((len(drawings), steps, 3), np.float32)
  for i, p in enumerate(drawings):
    points[i, :len(p)] = p
  return points, np.array([len(p) for p in drawings], np.int32)


def _image(points):
  return raster.rasterize(*_batch([np.asarray(points, np.float32)])).numpy()[0, ..., 0]


def _pixel(canvas):
  """Canvas units -> pixel coordinate on a 28-px image."""
  return (canvas + raster.PADDING + raster.LINE_WIDTH / 2) / raster.VIEWPORT * 28


def test_horizontal_line_lands_on_expected_rows():
  # A full-width line at y = 0: Google centres it at y = 128, 8 units either side.
  image = _image([[0, 0, 0], [255, 0, 1]])
  top, bottom = _pixel(128 - 8), _pixel(128 + 8)  # 13.26 .. 14.74
  rows = np.flatnonzero(image.max(axis=1) > 0)
  np.testing.assert_array_equal(rows, [int(top), int(bottom)])
  for row in rows:  # Coverage of the middle columns = share of the row inside the line (8 sample rows).
    expected = min(bottom, row + 1) - max(top, row)
    assert abs(image[row, 5:23].mean() - expected) <= 1 / 8 + 1e-6
  columns = np.flatnonzero(image.max(axis=0) > 0)
  assert columns[0] == int(_pixel(0.5 - 8)) and columns[-1] == int(_pixel(255.5 + 8))


def test_vertical_line_is_the_transposed_horizontal_one():
  horizontal = _image([[0, 0, 0], [255, 0, 1]])
  vertical = _image([[0, 0, 0], [0, 255, 1]])
  np.testing.assert_allclose(vertical, horizontal.T, atol=1 / 8 + 1e-6)


def test_dot_is_a_centred_round_blob():
  image = _image([[100, 100, 1]])
  assert image.sum() > 0
  np.testing.assert_allclose(image, image[::-1, ::-1], atol=1 / 8 + 1e-6)  # Centred.
  np.testing.assert_allclose(image, image.T, atol=1 / 8 + 1e-6)  # Round.
  # Area of a disc of radius 8 units, in pixels.
  assert abs(image.sum() - np.pi * (8 * 28 / raster.VIEWPORT)**2) < 0.15


def _real(data_dir, word):
  with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", f"{word}.ndjson")) as f:
    return [ink.strokes_to_points(json.loads(line)["drawing"]) for line in f]


def test_padding_and_batch_neighbours_do_not_change_an_image(data_dir):
  drawings = _real(data_dir, "bicycle")[:6]
  together = raster.rasterize(*_batch(drawings)).numpy()
  for i, points in enumerate(drawings):
    padded = np.concatenate([points, np.full((13, 3), 7.0, np.float32)])  # Junk past the length.
    alone = raster.rasterize(padded[None], [len(points)]).numpy()[0]
    np.testing.assert_array_equal(alone, together[i])


def test_any_scale_is_fitted_to_the_same_image(data_dir):
  points = _real(data_dir, "cat")[3]
  small = points * np.array([0.5, 0.5, 1], np.float32)  # Out of the frame: fitted.
  large = points * np.array([3.7, 3.7, 1], np.float32) + np.array([-40, 900, 0], np.float32)
  a, b = _image(small), _image(large)
  assert np.abs(a - b).max() <= 2 / 128 and np.abs(a - b).mean() < 1e-3


def test_matches_google_numpy_bitmap(data_dir):
  """Rows 0-24 of each numpy_bitmap_prefix array are the lamnguyen drawings: all 22 categories."""
  differences = []
  for path in sorted(glob.glob(os.path.join(data_dir, "bitmaps28", "numpy_bitmap_prefix", "*.npy"))):
    bitmaps = np.load(path, mmap_mode="r")[:25].astype(np.float32)
    images = raster.rasterize(*_batch(_real(data_dir, os.path.basename(path)[:-4]))).numpy()
    differences.extend(np.abs(images.reshape(25, -1) * 255 - bitmaps).mean(axis=1))
  assert len(differences) == 550
  print(f"in-graph rasteriser vs numpy_bitmap: mean absolute difference {np.mean(differences):.3f}")
  assert np.mean(differences) <= 1.0


def test_cairosvg_and_in_graph_renderers_agree_at_64px(data_dir):
  drawings = _real(data_dir, "flower")[:5]
  images = raster.rasterize(*_batch(drawings), size=64).numpy()[..., 0] * 255
  reference = np.stack([raster.render(p, 64) for p in drawings]).astype(np.float32)
  assert np.abs(images - reference).mean() < 2.0


def test_runs_in_tf_function_and_dataset_map(data_dir):
  points, lengths = _batch(_real(data_dir, "fish")[:4])
  expected = raster.rasterize(points, lengths, 32).numpy()
  traced = tf.function(lambda p, n: raster.rasterize(p, n, 32))(points, lengths).numpy()
  mapped = next(iter(tf.data.Dataset.from_tensors((points, lengths)).map(
      lambda p, n: raster.rasterize(p, n, 32)))).numpy()
  assert expected.shape == (4, 32, 32, 1) and expected.dtype == np.float32
  assert 0 <= expected.min() and expected.max() <= 1 and expected.max() == 1
  np.testing.assert_array_equal(traced, expected)
  np.testing.assert_array_equal(mapped, expected)


@pytest.mark.parametrize("strokes", [[[[0, 10, 20], [0, 5, 0]], [[30], [30]]], [[[5, 5], [5, 5]]]])
def test_to_frame_is_what_render_and_rasterize_share(strokes):
  points = ink.strokes_to_points(strokes)
  cairo = raster.render(points, 28).astype(np.float32) / 255
  assert np.abs(_image(points) - cairo).mean() < 0.05


@pytest.mark.parametrize("size", [28, 64])
def test_cairo_render_draws_the_pixels_of_the_cairosvg_reference(data_dir, size):
  drawings = [d for word in ("cat", "bicycle", "flower") for d in _real(data_dir, word)[:8]]
  drawings.append(ink.strokes_to_points([[[0, 10, 20], [0, 5, 0]], [[30], [30]]]))  # With a dot.
  for points in drawings:
    image = raster.render(points, size)
    assert image.shape == (size, size) and image.dtype == np.uint8
    np.testing.assert_array_equal(image, raster.render_svg(points, size))
  assert raster.render(drawings[0], size).max() == 255


def test_render_png_holds_the_rendered_pixels(data_dir):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  for points in _real(data_dir, "cat")[:3]:
    decoded = Image.open(io.BytesIO(raster.render_png(points, 28)))
    assert decoded.mode == "L"
    np.testing.assert_array_equal(np.asarray(decoded), raster.render(points, 28))
