"""Pictures for TensorBoard and reports: geometry and colours that can be checked."""

import numpy as np

from quickdraw_tf.training import summaries


def test_confusion_image_shades_rows_by_share_and_labels_both_axes():
  matrix = np.array([[9, 1, 0], [0, 5, 5], [0, 0, 0]])
  image = summaries.confusion_image(matrix, ["cat", "dog", "fish"])
  assert image.dtype == np.uint8 and image.shape[0] == image.shape[1]
  cell = 32  # 720 // 3, capped at 32.
  label = image.shape[0] - 3 * cell - 2

  def centre_red(i, j):  # Red channel: 255 for an empty cell, lower for a larger share of the row.
    patch = image[label + i * cell + 2:label + i * cell + 6, label + j * cell + 2:label + j * cell + 6, 0]
    return int(np.median(patch))

  assert centre_red(0, 0) < centre_red(1, 1) < centre_red(0, 1) < centre_red(0, 2) == 255
  assert centre_red(1, 1) == centre_red(1, 2)  # Same share of the row, same shade.
  assert centre_red(2, 2) == 255  # A class with no examples stays blank.
  # Names on the left and above: dark pixels in both label bands.
  assert (image[label:, :label] < 100).any() and (image[:label, label:] < 100).any()


def test_drawing_grid_puts_ink_where_the_drawing_has_it():
  image = np.zeros((2, 28, 28, 1), np.float32)
  image[0, 14, :, 0] = 1.0  # A horizontal line in the first drawing; the second is blank.
  grid = summaries.drawing_grid(image, ["cat/cat", "dog/cat"], columns=2)
  assert grid.shape == (96 + 24, 2 * 96, 3)
  first, second = grid[4:92, 4:92], grid[4:92, 96 + 4:96 + 92]
  assert (first < 128).any() and (second > 250).all()
  dark_rows = np.nonzero((first[..., 0] < 128).any(axis=1))[0]
  assert 40 <= dark_rows.mean() <= 48  # Row 14 of 28, scaled to 88 px.
