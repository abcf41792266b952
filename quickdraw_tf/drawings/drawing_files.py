"""A user's drawings from files: QuickDraw ndjson lines and PNG pictures.

What ``predict``, ``visualize`` and ``generate`` read, read one way: an ndjson
line is usable when ``make_records`` would keep it (`ink.check_usable`).
"""

import json

import numpy as np

from quickdraw_tf.drawings import ink as ink_lib


def read_ndjson(path):
  """Yields (line number, points float32 [n, 3] or an error message)."""
  with open(path, encoding="utf-8") as f:
    for number, line in enumerate(f, 1):
      if not line.strip():
        continue
      try:
        record = json.loads(line)
        points = ink_lib.strokes_to_points(record["drawing"] if isinstance(record, dict) else record)
        ink_lib.check_usable(points)  # What make_records would skip is not served either.
        yield number, points
      except (ValueError, KeyError, TypeError, OverflowError, RecursionError) as e:
        yield number, f"{type(e).__name__}: {e}"


def read_png(path):
  """A PNG -> uint8 ``[1, h, w, 1]`` with ink bright, as the models were trained."""
  from PIL import Image  # pylint: disable=g-import-not-at-top
  image = np.asarray(Image.open(path).convert("L"))
  if image.mean() > 127:  # Dark strokes on a light page: invert.
    image = 255 - image
  return image[None, ..., None].astype(np.uint8)
