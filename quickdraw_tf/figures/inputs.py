"""The drawing a figure explains: read from an ndjson file or a PNG, and as the model reads it."""

import dataclasses
import os

import numpy as np
import tensorflow as tf

from quickdraw_tf import cli
from quickdraw_tf.drawings import drawing_files
from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.pipelines import data


class VisualizeError(cli.Error, ValueError):
  """A problem with the user's input; the message names the file or flag."""


@dataclasses.dataclass
class Drawing:
  """One user drawing: vector ``points`` float32 ``[n, 3]`` or a PNG ``image`` uint8 ``[1, h, w, 1]``."""
  where: str
  points: np.ndarray = None
  image: np.ndarray = None


def read_drawing(path, index=0):
  """Reads drawing ``index`` (0-based, counting drawings, not blank lines) of an ndjson file, or a PNG.

  Uses `drawing_files.read_ndjson` and `drawing_files.read_png`, as predict reads
  its input.

  Args:
    path: an ndjson file of QuickDraw drawings, or a ``.png`` of one drawing.
    index: which drawing of the ndjson file.

  Returns:
    `Drawing`.

  Raises:
    VisualizeError: missing file, a drawing that does not parse or has fewer
      than 2 points, an index past the end, an unreadable PNG.
  """
  if not os.path.isfile(path):
    raise VisualizeError(f"{path}: no such file")
  if path.lower().endswith(".png"):
    try:
      return Drawing(path, image=drawing_files.read_png(path))
    except (OSError, ValueError) as e:
      raise VisualizeError(f"{path}: not a readable PNG image: {e}") from None
  count = 0
  try:
    for number, points in drawing_files.read_ndjson(path):
      if count == index:
        where = f"{path}:{number}"
        if isinstance(points, str):
          raise VisualizeError(f"{where}: not a QuickDraw drawing: {points}")
        if len(points) < 2:
          raise VisualizeError(f"{where}: the drawing has {len(points)} point; at least 2 are needed")
        return Drawing(where, points=points)
      count += 1
  except UnicodeDecodeError as e:
    raise VisualizeError(f"{path}: not a text (ndjson) file: {e}") from None
  raise VisualizeError(f"{path} holds {count} drawing(s); --index={index} is past the end")


def model_features(spec, drawing, image_size=None):
  """The model's input dict for one drawing, preprocessed as export's serving signature does.

  Args:
    spec: the model's `models.ModelSpec`.
    drawing: `Drawing`.
    image_size: the model's image side (image models).

  Returns:
    dict of tensors with batch 1: ``ink`` float32 ``[1, n - 1, 3 or 5]`` and
    ``ink_length`` int32 ``[1]`` (sequence models), ``image`` float32
    ``[1, s, s, 1]`` in [0, 1] (image models).

  Raises:
    VisualizeError: a PNG for a model that reads strokes.
  """
  if drawing.image is not None:
    if spec.uses_ink:
      raise VisualizeError(f"{drawing.where}: model {spec.name!r} reads strokes, which a PNG does not hold: give "
                           "an ndjson file of drawings")
    return data.model_inputs(spec, image=drawing.image, image_size=image_size)
  points, length = tf.constant(drawing.points[None]), tf.constant([len(drawing.points)], tf.int32)
  encoded, encoded_length = ink_lib.encode_tf(points, length)
  return data.model_inputs(spec, encoded, encoded_length, points, length, image_size=image_size)
