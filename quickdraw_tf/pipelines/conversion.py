"""One chunk of QuickDraw input -> serialized examples, with each one's split, shard and hashes.

`convert_chunk` is the work of a converter process: it parses the records of
a `sources.Chunk` (ndjson lines, sketch-rnn stroke-3 arrays or numpy_bitmap
rows), checks them (bad ones come back as skips with a reason), encodes them
with `drawings.ink` and `drawings.raster`, and serializes them with
`pipelines.records`. Each process first calls `init` with the run's `Options`.
Splits and shards come from a hash of each drawing's key_id (of its geometry
when it has none), so they do not depend on the worker count or file order.
"""

import dataclasses
import gc
import json

import numpy as np

try:
  import orjson  # pylint: disable=g-import-not-at-top
except ImportError:  # Optional: json alone gives the same records, slower.
  orjson = None

from quickdraw_tf import cli
from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.drawings import raster
from quickdraw_tf.drawings import sources
from quickdraw_tf.pipelines import records

UNKNOWN_RECOGNIZED = -1


class MakeRecordsError(cli.Error):
  """An error that stops a make_records run, with a message for the user."""


@dataclasses.dataclass(frozen=True)
class Options:
  """What a run converts with: the classes, stored image side, --max_points, split fractions, shard counts."""
  class_index: dict  # word -> int
  image_size: int = 0
  max_points: int = 0
  eval_fraction: float = 0.1
  test_fraction: float = 0.1
  num_shards: tuple = (("train", 8), ("eval", 1), ("test", 1))
  categories_given: bool = False  # --categories named the classes (else the input's words did).


def split_of(key_hash, options):
  """'train', 'eval' or 'test' from a drawing's 64-bit key hash.

  Test takes the lowest values and eval the next ones, so growing
  --eval_fraction never moves a test drawing.
  """
  u = (key_hash & 0xFFFFFFFF) / 2.0**32
  if u < options.test_fraction:
    return "test"
  if u < options.test_fraction + options.eval_fraction:
    return "eval"
  return "train"


def shard_of(key_hash, split, options):
  """Shard index within ``split`` from the high 32 bits of the key hash."""
  return (key_hash >> 32) % dict(options.num_shards)[split]


_options = None


def init(options):
  """Sets the `Options` that `convert_chunk` uses in this process (each worker calls it once)."""
  global _options
  _options = options


def _check_length(points, options):
  if options.max_points and len(points) > options.max_points:
    raise ink_lib.InkError("too_many_points", f"drawing has {len(points)} points (--max_points={options.max_points})")
  return points


def _loads(line):
  """`json.loads`, through orjson where it can: same result, a third of the time.

  orjson rejects what strict JSON forbids but Python's json reads (NaN,
  Infinity, integers past 64 bits): those lines take json's path, so bad
  coordinates are still told apart from malformed lines.
  """
  if orjson is not None:
    try:
      return orjson.loads(line)
    except orjson.JSONDecodeError:
      pass
  return json.loads(line)


def _ndjson_record(line, file_word, options):
  """One ndjson line (bytes) -> (strokes, word, meta, whether a coordinate may be a bool); raises InkError."""
  try:
    record = _loads(line)
  except ValueError as e:
    raise ink_lib.InkError("malformed_json", f"malformed JSON: {e}") from None
  if not isinstance(record, dict) or "drawing" not in record:
    raise ink_lib.InkError("missing_drawing", "record has no 'drawing'")
  word = _word_of(record, file_word, options)
  recognized = record.get("recognized")
  # Every bool literal of the line is `recognized`'s: then none is a coordinate.
  may_hold_bools = line.count(b"true") + line.count(b"false") > isinstance(recognized, bool)
  meta = {
      "key_id": str(record.get("key_id") or ""),
      "countrycode": str(record.get("countrycode") or ""),
      "recognized": UNKNOWN_RECOGNIZED if recognized is None else int(bool(recognized)),
  }
  return record["drawing"], word, meta, may_hold_bools


def _word_of(record, file_word, options):
  """A record's class name: its ``word``, or without one the file's name when that is a class."""
  if "word" not in record:
    if file_word in options.class_index:
      return file_word
    raise ink_lib.InkError("no_word", f"record has no 'word' (and the file name gives no class: {file_word!r})")
  word = record["word"]
  if isinstance(word, str) and word in options.class_index:
    return word
  problem = records.class_name_problem(word)
  if problem:
    raise ink_lib.InkError("bad_word", problem)
  where = "--categories" if options.categories_given else "the classes found in the input"
  raise ink_lib.InkError("unknown_category", f"category {word!r} is not among {where}")


def _ndjson_drawings(chunk, options, skips):
  """An ndjson `sources.Chunk` -> list of (points, word, meta, None); bad lines go to ``skips``."""
  path = chunk.source.path
  parsed = []
  for number, line in enumerate(chunk.records, chunk.start):
    if not line or line.isspace():
      continue
    try:
      parsed.append((number,) + _ndjson_record(line, chunk.source.word, options))
    except ink_lib.InkError as e:
      skips.append((e.reason, path, number, str(e)))
  points_list = ink_lib.strokes_to_points_batch([p[1] for p in parsed], any(p[4] for p in parsed))
  drawings = []
  for (number, strokes, word, meta, _), points in zip(parsed, points_list):
    try:
      if isinstance(points, ink_lib.InkError):  # Non-finite values or bbox included: before simplification.
        raise points
      if max(map(len, strokes)) > 2:  # [xs, ys, ts]: raw data.
        points = ink_lib.simplify_raw(points)
      if len(points) < ink_lib.MIN_POINTS:
        ink_lib.check_usable(points)  # Raises too_few_points (finiteness was checked with the batch).
      drawings.append((_check_length(points, options), word, meta, None))
    except ink_lib.InkError as e:
      skips.append((e.reason, path, number, str(e)))
  return drawings


def _npz_drawing(stroke3, options):
  try:
    with np.errstate(over="ignore"):  # float32 overflow gives inf, rejected below.
      stroke3 = np.asarray(stroke3, np.float32)
  except (TypeError, ValueError, OverflowError) as e:
    raise ink_lib.InkError("bad_stroke", f"stroke-3 array is not numbers: {e}") from None
  if stroke3.ndim != 2 or stroke3.shape[1] != 3:
    raise ink_lib.InkError("bad_stroke", f"stroke-3 array of shape {list(stroke3.shape)}, expected [n, 3]")
  if not len(stroke3):
    raise ink_lib.InkError("empty_drawing", "drawing has no points")
  if not np.isfinite(stroke3).all():
    raise ink_lib.InkError("non_finite", "drawing has NaN or infinite coordinates")
  with np.errstate(over="ignore"):  # The absolute positions may overflow: check_usable says so.
    points = ink_lib.stroke3_to_points(stroke3)
  ink_lib.check_usable(points)
  return _check_length(ink_lib.fit_to_frame(points), options)


# Columns of the table `convert_chunk` returns, one row per example.
COLUMNS = ("end", "split", "shard", "class_index", "key_hash", "geometry_hash", "ink_length")
KEY_HASH, GEOMETRY_HASH = COLUMNS.index("key_hash"), COLUMNS.index("geometry_hash")


def _pack(rows, serialized):
  """Examples as one bytes blob and a uint64 table: cheap to pickle across processes.

  Args:
    rows: per example ``(split, shard, class_index, key_hash, geometry_hash,
      ink_length)``, split a name of `records.SPLITS`.
    serialized: per example, its serialized ``tf.train.Example``.

  Returns:
    (blob, table): the examples back to back, and uint64 ``[k, len(COLUMNS)]``
    whose ``end`` column is each example's end offset in the blob.
  """
  table = np.zeros((len(rows), len(COLUMNS)), np.uint64)
  if rows:
    table[:, 0] = np.cumsum([len(s) for s in serialized])
    table[:, 1:] = np.array([(records.SPLITS.index(split), *row) for split, *row in rows], np.uint64)
  return b"".join(serialized), table


def _examples(drawings, options):
  """Encodes parsed drawings.

  Args:
    drawings: list of ``(points, word, meta, split or None)``.

  Returns:
    (blob, table) as `_pack` returns them; key_hash is 0 without a key_id.
  """
  rows, serialized = [], []
  encoded = ink_lib.encode_batch([d[0] for d in drawings]) if drawings else []
  for (points, word, meta, split), (ink, bbox, origin) in zip(drawings, encoded):
    image = raster.render_png(points, options.image_size) if options.image_size else None
    class_index = options.class_index[word]
    key_id = meta.get("key_id", "")
    serialized.append(records.serialize(
        dict(ink=ink, shape=ink.shape, class_index=class_index, word=word, key_id=key_id,
             countrycode=meta.get("countrycode", ""), recognized=meta.get("recognized", UNKNOWN_RECOGNIZED),
             bbox=bbox, origin=origin), image))
    geometry_hash = ink_lib.fingerprint(points)
    key_hash = ink_lib.fingerprint(key_id) if key_id else 0
    placement = key_hash or geometry_hash
    split = split or split_of(placement, options)
    rows.append((split, shard_of(placement, split, options), class_index, key_hash, geometry_hash, len(ink)))
  return _pack(rows, serialized)


def convert_chunk(chunk):
  """Converts one chunk from `sources.chunks`.

  Returns:
    (blob, table, skips): the examples in input order as `_pack` returns
    them; skips as ``(reason, path, line, message)``.
  """
  # Parsing JSON allocates many small acyclic objects; the cyclic collector's
  # passes over them (and over every imported module) tripled the cost. It
  # runs again between chunks.
  enabled = gc.isenabled()
  gc.disable()
  try:
    return _convert_chunk(chunk)
  finally:
    if enabled:
      gc.enable()


def _convert_chunk(chunk):
  options = _options
  path, word = chunk.source.path, chunk.source.word
  drawings, skips = [], []
  if chunk.source.format == "ndjson":
    drawings = _ndjson_drawings(chunk, options, skips)
  elif chunk.source.format == "npz":
    split = sources.NPZ_SPLITS[chunk.npz_split]
    for index, stroke3 in enumerate(chunk.records, chunk.start):
      try:
        drawings.append((_npz_drawing(stroke3, options), word, {}, split))
      except ink_lib.InkError as e:
        skips.append((e.reason, path, f"{chunk.npz_split}[{index}]", str(e)))
  else:  # npy: image-only records.
    empty_ink = np.zeros((0, 3), np.float32)
    rows, serialized = [], []
    for pixels in chunk.records:
      image_hash = ink_lib.fingerprint(pixels)
      split = split_of(image_hash, options)
      serialized.append(records.serialize(
          dict(ink=empty_ink, shape=empty_ink.shape, class_index=options.class_index[word], word=word, key_id="",
               countrycode="", recognized=UNKNOWN_RECOGNIZED, bbox=np.zeros(4), origin=np.zeros(3)),
          raster.encode_png(pixels.reshape(raster.BITMAP_SIZE, raster.BITMAP_SIZE))))
      rows.append((split, shard_of(image_hash, split, options), options.class_index[word], 0, image_hash, 0))
    return _pack(rows, serialized) + (skips,)
  return _examples(drawings, options) + (skips,)

