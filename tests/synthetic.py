"""Made-up drawings in Google's simplified ndjson format, for tests that need no real drawing.

The unit tests of formats, the records schema, metrics and run directories
use these, so that they run anywhere; the tests that measure fidelity to
Google's data (rasteriser against ``numpy_bitmap``, the tutorial's
preprocessing) read the shared data (`conftest.data_dir`).

Each word gets its own shape (a closed loop whose number of corners comes from
the word), so that a model can tell the words apart, with per-drawing jitter.
"""

import json
import zlib

import numpy as np


def drawing(word, rng):
  """One drawing of ``word``: a list of strokes ``[xs, ys]`` of ints in [0, 255]."""
  corners = 3 + zlib.crc32(word.encode()) % 5
  # Points along each side: from a bare polygon to a dense outline, so lengths vary as real ones do.
  steps = rng.integers(1, 40)
  angles = np.linspace(0, 2 * np.pi, corners + 1) + rng.uniform(0, 2 * np.pi)
  radius = rng.uniform(60, 120)
  centre = rng.uniform(radius, 255 - radius, size=2)
  corner_points = centre + radius * np.stack([np.cos(angles), np.sin(angles)], axis=1)
  share = np.linspace(0, 1, steps, endpoint=False)[None, :, None]
  outline = (corner_points[:-1, None] * (1 - share) + corner_points[1:, None] * share).reshape(-1, 2)
  outline = np.concatenate([outline, corner_points[-1:]]) + rng.normal(0, 3, size=(len(outline) + 1, 2))
  strokes = [outline]
  if rng.random() < 0.5:  # A second stroke: a line across, so that drawings differ in strokes.
    strokes.append(centre + rng.uniform(-radius, radius, size=(2, 2)) / 2)
  return [[np.clip(np.round(s[:, 0]), 0, 255).astype(int).tolist(), np.clip(np.round(s[:, 1]), 0, 255).astype(
      int).tolist()] for s in strokes]


def record(word, key_id, rng):
  """One ndjson record (a dict) of ``word`` with the fields Google's simplified files have."""
  return {"word": word, "countrycode": "XX", "timestamp": "2017-03-01 00:00:00.00000 UTC", "recognized": True,
          "key_id": str(key_id), "drawing": drawing(word, rng)}


def write_ndjson(path, word, count, seed=0):
  """Writes ``count`` drawings of ``word`` to ``path`` (one JSON object a line); returns ``path``."""
  rng = np.random.default_rng([seed, zlib.crc32(word.encode())])
  first_key = 1_000_000 * (1 + zlib.crc32(word.encode()) % 1000)
  with open(path, "w", encoding="utf-8") as f:
    for i in range(count):
      f.write(json.dumps(record(word, first_key + i, rng)) + "\n")
  return str(path)
