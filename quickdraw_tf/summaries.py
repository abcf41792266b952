"""Pictures for people: drawings titled with their classes, confusion matrices.

Plain Pillow, returning uint8 RGB arrays ``[h, w, 3]`` that TensorBoard
(``tf.summary.image``) and PNG files both take.
"""

import numpy as np
from PIL import Image
from PIL import ImageDraw

_CELL = 96  # pixels per drawing in a grid
_TITLE = 24


def drawing_grid(images, titles, columns=8):
  """A grid of drawings, each with a title line under it.

  Args:
    images: float ``[n, h, w, 1]`` in [0, 1], 1 = ink.
    titles: n strings, e.g. "cat / pred dog".
    columns: drawings per row.

  Returns:
    uint8 ``[rows * (96 + 24), columns * 96, 3]``.
  """
  images = np.asarray(images)
  rows = -(-len(images) // columns)
  canvas = Image.new("RGB", (columns * _CELL, rows * (_CELL + _TITLE)), "white")
  draw = ImageDraw.Draw(canvas)
  for i, (image, title) in enumerate(zip(images, titles)):
    x, y = (i % columns) * _CELL, (i // columns) * (_CELL + _TITLE)
    pixels = (255 - np.clip(image[..., 0], 0, 1) * 255).astype(np.uint8)  # Dark ink on white.
    canvas.paste(Image.fromarray(pixels).resize((_CELL - 8, _CELL - 8)), (x + 4, y + 4))
    draw.text((x + 3, y + _CELL), title[:16], fill="black")
  return np.asarray(canvas)


def confusion_image(matrix, class_names, max_classes=60):
  """A row-normalised confusion matrix as a heat map with class labels.

  Args:
    matrix: int ``[k, k]``, rows = true class, columns = predicted.
    class_names: k strings.
    max_classes: beyond this many classes labels are left out.

  Returns:
    uint8 RGB image.
  """
  matrix = np.asarray(matrix, np.float64)
  k = len(matrix)
  cell = max(4, min(24, 720 // max(k, 1)))
  label = 110 if k <= max_classes else 0
  rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
  heat = (255 * (1 - rows)).astype(np.uint8)  # White = 0, dark = all of the row.
  grid = Image.fromarray(np.stack([heat, heat, np.full_like(heat, 255)], -1)).resize((k * cell, k * cell),
                                                                                     Image.NEAREST)
  canvas = Image.new("RGB", (label + k * cell + 2, label + k * cell + 2), "white")
  canvas.paste(grid, (label, label))
  draw = ImageDraw.Draw(canvas)
  if label:
    for i, name in enumerate(class_names):
      draw.text((2, label + i * cell + max(0, cell // 2 - 6)), name[:17], fill="black")
      draw.text((label + i * cell + 2, 2 + (i % 8) * 12), name[:3], fill="black")
  draw.text((2, 2), "true \\ pred", fill="gray")
  return np.asarray(canvas)


def save_png(image, path):
  Image.fromarray(np.asarray(image, np.uint8)).save(path)
