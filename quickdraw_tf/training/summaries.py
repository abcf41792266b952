"""Pictures for people: drawings titled with their classes, confusion matrices.

Plain Pillow, returning uint8 RGB arrays ``[h, w, 3]`` that TensorBoard
(``tf.summary.image``) and PNG files both take.
"""

import os
import time

import keras
import numpy as np
from PIL import Image
from PIL import ImageDraw
from PIL import ImageFont
import tensorflow as tf

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

  Rows are true classes, labelled on the left; columns are predicted classes,
  labelled above with the names turned upright; cells large enough show
  their count.

  Args:
    matrix: int ``[k, k]``, rows = true class, columns = predicted.
    class_names: k strings.
    max_classes: beyond this many classes labels are left out.

  Returns:
    uint8 RGB image ``[label + k * cell + 2, label + k * cell + 2, 3]``.
  """
  matrix = np.asarray(matrix, np.float64)
  k = len(matrix)
  cell = max(4, min(32, 720 // max(k, 1)))
  label_font, count_font = font(min(13, max(8, cell - 4))), font(min(11, max(8, cell // 3)))
  names = [name[:18] for name in class_names]
  measure = ImageDraw.Draw(Image.new("RGB", (1, 1)))
  label = (int(max(measure.textlength(n, font=label_font) for n in names)) + 8) if k <= max_classes and k else 0
  label = max(label, 70) if label else 0
  rows = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
  heat = (255 * (1 - rows)).astype(np.uint8)  # White = 0, dark = all of the row.
  grid = Image.fromarray(np.stack([heat, heat, np.full_like(heat, 255)], -1)).resize((k * cell, k * cell),
                                                                                     Image.NEAREST)
  canvas = Image.new("RGB", (label + k * cell + 2, label + k * cell + 2), "white")
  canvas.paste(grid, (label, label))
  draw = ImageDraw.Draw(canvas)
  if label:
    for i, name in enumerate(names):
      draw.text((2, label + i * cell + cell // 2), name, fill="black", font=label_font, anchor="lm")
      column = Image.new("RGB", (label, cell), "white")  # Written sideways, then turned upright.
      ImageDraw.Draw(column).text((4, cell // 2), name, fill="black", font=label_font, anchor="lm")
      canvas.paste(column.rotate(90, expand=True), (label + i * cell, 0))
    if cell >= 20:
      for (i, j), count in np.ndenumerate(matrix):
        if count:
          draw.text((label + j * cell + cell // 2, label + i * cell + cell // 2), str(int(count)),
                    fill="white" if rows[i, j] > 0.5 else "black", font=count_font, anchor="mm")
  draw.text((2, 2), "true \\ pred", fill="gray", font=font(10))
  return np.asarray(canvas)


def save_png(image, path):
  """Writes ``image`` (uint8 ``[h, w]`` or ``[h, w, 3]``) as a PNG at ``path``."""
  Image.fromarray(np.asarray(image, np.uint8)).save(path)


# Viridis at five stops: dark blue (low) to yellow (high), legible on screen and in print.
_VIRIDIS = np.array([[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]], np.float64)
_GRID_GAP = 2
_GRID_LABEL = 12


def font(size=13):
  """Pillow's default font at ``size`` px (FreeType), or its small bitmap font where FreeType is missing."""
  try:
    return ImageFont.load_default(size=size)
  except (TypeError, OSError, ImportError):  # Pillow < 10.1, or no FreeType.
    return ImageFont.load_default()


def colormap(values):
  """float ``[...]`` in [0, 1] -> uint8 ``[..., 3]`` viridis colours."""
  values = np.clip(np.asarray(values, np.float64), 0, 1)
  stops = np.linspace(0, 1, len(_VIRIDIS))
  return np.stack([np.interp(values, stops, _VIRIDIS[:, i]) for i in range(3)], -1).round().astype(np.uint8)


def feature_grid(maps, title="", columns=0, min_cell=48, colour=True, labels=True):
  """A grid of 2-D maps (feature maps, filter patterns), each stretched to its own range.

  A map with no range of its own (all one value, or 1x1) is shown at its
  level within the range of all the maps, so dead and 1x1 maps stay honest.

  Args:
    maps: float ``[n, h, w]``.
    title: a text line above the grid ("" for none).
    columns: maps per row (0: ``ceil(sqrt(n))``).
    min_cell: each map is enlarged by a whole factor ``zoom = max(1,
      ceil(min_cell / max(h, w)))`` (nearest neighbour).
    colour: viridis (low dark blue, high yellow) rather than grey.
    labels: True: each map's index in a 12 px line under its cell; a list:
      these n strings there instead; False: no label line.

  Returns:
    uint8 ``[title_h + rows * (h * zoom + label_h + 2) + 2, width, 3]``,
    with ``rows = ceil(n / columns)``, ``title_h`` 18 with a title else 0,
    ``label_h`` 12 with labels else 0, and ``width = columns * (w * zoom +
    2) + 2``, or the title's width plus 6 where that is wider.
  """
  maps = np.asarray(maps, np.float64)
  n, h, w = maps.shape
  columns = columns or int(np.ceil(np.sqrt(n)))
  rows = -(-n // columns)
  zoom = max(1, -(-min_cell // max(h, w)))
  cell_h, cell_w = h * zoom, w * zoom
  label_h = _GRID_LABEL if labels is not False else 0
  if labels is True:
    labels = [str(i) for i in range(n)]
  title_h = 18 if title else 0
  title_font, label_font = font(13), font(10)
  low, high = maps.reshape(n, -1).min(axis=1), maps.reshape(n, -1).max(axis=1)
  span = high - low
  overall_low, overall_span = maps.min(), max(maps.max() - maps.min(), 1e-12)
  # Own range where there is one, else the level within all maps.
  scaled = np.where((span > 1e-12 * max(overall_span, 1))[:, None, None],
                    (maps - low[:, None, None]) / np.maximum(span, 1e-30)[:, None, None],
                    (maps - overall_low) / overall_span)
  pixels = colormap(scaled) if colour else np.repeat((scaled[..., None] * 255).round().astype(np.uint8), 3, -1)
  width = columns * (cell_w + _GRID_GAP) + _GRID_GAP
  if title:
    width = max(width, int(np.ceil(ImageDraw.Draw(Image.new("RGB", (1, 1))).textlength(title, font=title_font))) + 6)
  canvas = Image.new("RGB", (width, title_h + rows * (cell_h + label_h + _GRID_GAP) + _GRID_GAP), "white")
  draw = ImageDraw.Draw(canvas)
  if title:
    draw.text((3, 1), title, fill="black", font=title_font)
  for i in range(n):
    x = _GRID_GAP + (i % columns) * (cell_w + _GRID_GAP)
    y = title_h + _GRID_GAP + (i // columns) * (cell_h + label_h + _GRID_GAP)
    canvas.paste(Image.fromarray(pixels[i]).resize((cell_w, cell_h), Image.NEAREST), (x, y))
    if label_h:
      draw.text((x + 1, y + cell_h), labels[i], fill="dimgray", font=label_font)
  return np.asarray(canvas)


class EpochSummaries(keras.callbacks.Callback):
  """TensorBoard summaries after every epoch, in ``<log_dir>/train`` and ``<log_dir>/validation``.

  Writes examples/s (optimizer steps times ``batch_size`` over the epoch's
  time) and `train_scalars`; a subclass draws its pictures in
  `write_validation`, inside the validation writer.
  """

  def __init__(self, log_dir, batch_size):
    super().__init__()
    self.train_writer = tf.summary.create_file_writer(os.path.join(log_dir, "train"))
    self.validation_writer = tf.summary.create_file_writer(os.path.join(log_dir, "validation"))
    self.batch_size = batch_size
    self._epoch_start = (0.0, 0)  # time, optimizer step

  def _optimizer_step(self):
    return int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))

  def on_epoch_begin(self, epoch, logs=None):
    self._epoch_start = (time.time(), self._optimizer_step())

  def on_epoch_end(self, epoch, logs=None):
    seconds, steps = time.time() - self._epoch_start[0], self._optimizer_step() - self._epoch_start[1]
    with self.train_writer.as_default(step=epoch):
      tf.summary.scalar("examples_per_second", steps * self.batch_size / max(seconds, 1e-9))
      for name, value in self.train_scalars().items():
        tf.summary.scalar(name, value)
    with self.validation_writer.as_default(step=epoch):
      self.write_validation(epoch)
    self.train_writer.flush()
    self.validation_writer.flush()

  def train_scalars(self):
    """{name: float} to write in train/ after this epoch."""
    return {}

  def write_validation(self, epoch):
    """Writes this epoch's validation summaries (the default writer is set)."""
