r"""QuickDraw drawings -> sharded TFRecords (train / eval / test).

  python -m quickdraw_tf.make_records --input=../shared/data/quickdraw/strokes
  python -m quickdraw_tf.make_records --download=cat,dog --stored_image_size=28

Reads Google's simplified and raw ndjson (plain or gzipped), sketch-rnn .npz
and numpy_bitmap .npy; writes the schema of `records.py`. Splits come from a
hash of each drawing's key_id (of its geometry when it has none), so a drawing
lands in the same split whatever the worker count, file order or set of
categories. Duplicates (same key_id or same geometry) are written once.

Bad records are skipped and counted by reason (stats.json), the first few
reported with file and line; with --strict the first one stops the run.
Shards are written under a temporary directory and moved into place at the
end, dataset_info.json last: a directory without it is incomplete. Only the
files an earlier run wrote are replaced, and a replacement that a kill cut
short is finished by the next run (see `_commit`).
"""

import collections
import dataclasses
import gc
import itertools
import json
import multiprocessing
import os
import queue
import re
import resource
import shutil
import sys
import threading
import time
import traceback

from absl import app
from absl import flags
from absl import logging
import numpy as np

try:
  import orjson  # pylint: disable=g-import-not-at-top
except ImportError:  # Optional: json alone gives the same records, slower.
  orjson = None

from quickdraw_tf import DEFAULT_RECORDS_ROOT
from quickdraw_tf import cli
from quickdraw_tf import ink as ink_lib
from quickdraw_tf import raster
from quickdraw_tf import records
from quickdraw_tf import sources

# Skip reasons that are not bad input: --strict does not stop on them.
NOT_ERRORS = ("duplicate", "over_max_per_class", "other_category")
REPORTED_SKIPS = 5
BITMAP_SIDE = 28
_UNKNOWN_RECOGNIZED = -1


class MakeRecordsError(cli.Error):
  """An error that stops the run, with a message for the user."""


@dataclasses.dataclass(frozen=True)
class Options:
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


# --- Conversion of one chunk (runs in worker processes) ---------------------

_options = None


def _init_worker(options):
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
      "recognized": _UNKNOWN_RECOGNIZED if recognized is None else int(bool(recognized)),
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


def _ndjson_drawings(path, first, lines, options, skips):
  """ndjson lines -> list of (points, word, meta, None); bad ones go to ``skips``."""
  file_word = sources.word_of(path)
  parsed = []
  for number, line in enumerate(lines, first):
    if not line or line.isspace():
      continue
    try:
      parsed.append((number,) + _ndjson_record(line, file_word, options))
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
             countrycode=meta.get("countrycode", ""), recognized=meta.get("recognized", _UNKNOWN_RECOGNIZED),
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
  kind, path = chunk[0], chunk[1]
  word = sources.word_of(path)
  drawings, skips = [], []
  if kind == "ndjson":
    _, _, first, lines = chunk
    drawings = _ndjson_drawings(path, first, lines, options, skips)
  elif kind == "npz":
    _, _, npz_split, start, arrays = chunk
    for index, stroke3 in enumerate(arrays, start):
      try:
        drawings.append((_npz_drawing(stroke3, options), word, {}, sources.NPZ_SPLITS[npz_split]))
      except ink_lib.InkError as e:
        skips.append((e.reason, path, f"{npz_split}[{index}]", str(e)))
  else:  # npy: image-only records.
    _, _, start, images = chunk
    empty_ink = np.zeros((0, 3), np.float32)
    rows, serialized = [], []
    for pixels in images:
      image_hash = ink_lib.fingerprint(pixels)
      split = split_of(image_hash, options)
      serialized.append(records.serialize(
          dict(ink=empty_ink, shape=empty_ink.shape, class_index=options.class_index[word], word=word, key_id="",
               countrycode="", recognized=_UNKNOWN_RECOGNIZED, bbox=np.zeros(4), origin=np.zeros(3)),
          raster.encode_png(pixels.reshape(BITMAP_SIDE, BITMAP_SIDE))))
      rows.append((split, shard_of(image_hash, split, options), options.class_index[word], 0, image_hash, 0))
    return _pack(rows, serialized) + (skips,)
  return _examples(drawings, options) + (skips,)


class _WorkerFailure:
  """An unexpected exception in a worker, carried back with its traceback."""

  def __init__(self, text):
    self.text = text


def _serve(chunks, results, inherited, options):
  """A worker process: converts the chunks arriving on ``chunks`` until None or EOF.

  One thread receives chunks as they come and another sends results, so this
  process converts without waiting on either pipe: the parent never blocks
  sending a chunk (no deadlock), and a result larger than the pipe's buffer
  does not hold the next conversion up until the parent reads it.
  """
  for other in inherited:  # The parent's pipe ends: closed here, so EOF reaches us if the parent dies.
    other.close()
  _init_worker(options)
  inbox, outbox = queue.SimpleQueue(), queue.SimpleQueue()

  def receive():
    while True:
      try:
        chunk = chunks.recv()
      except (EOFError, OSError):
        chunk = None
      inbox.put(chunk)
      if chunk is None:
        return

  def send():
    for result in iter(outbox.get, None):
      try:
        results.send(result)
      except OSError:  # The parent is gone.
        return

  threading.Thread(target=receive, daemon=True).start()
  sender = threading.Thread(target=send, daemon=True)
  sender.start()
  for chunk in iter(inbox.get, None):
    try:
      outbox.put(convert_chunk(chunk))
    except Exception:  # pylint: disable=broad-except
      outbox.put(_WorkerFailure(traceback.format_exc()))
  outbox.put(None)
  sender.join()


_PIPE_BUFFER = 1 << 20


def _widen(conn):
  """Gives a pipe a 1 MiB buffer where the system allows (Linux), so a whole chunk or result fits."""
  try:
    import fcntl  # pylint: disable=g-import-not-at-top
    fcntl.fcntl(conn.fileno(), fcntl.F_SETPIPE_SZ, _PIPE_BUFFER)
  except (ImportError, AttributeError, OSError):
    pass


class _Workers:
  """Forked converter processes that take chunks in turn; results come back in input order.

  Chunk i goes to worker ``i % count`` and results are read back in the same
  turn. Unlike ``multiprocessing.Pool``, no helper threads pickle and
  unpickle in the parent, where they fought the writing loop for the GIL.
  Each worker holds at most `DEPTH` chunks, so it has its next one at hand
  when it finishes one, and memory does not grow with the input.
  """

  DEPTH = 2

  def __init__(self, count, options):
    context = multiprocessing.get_context("fork")
    self._closed = False
    self._sends, self._receives, self._processes = [], [], []
    for _ in range(count):
      chunks_out, chunks_in = context.Pipe(duplex=False)
      results_out, results_in = context.Pipe(duplex=False)
      _widen(chunks_in)
      _widen(results_in)
      inherited = self._sends + self._receives + [chunks_in, results_out]
      process = context.Process(target=_serve, args=(chunks_out, results_in, inherited, options), daemon=True)
      process.start()
      chunks_out.close()
      results_in.close()
      self._sends.append(chunks_in)
      self._receives.append(results_out)
      self._processes.append(process)

  def imap(self, stream):
    """Converts the chunks of ``stream``; other items (file errors) pass through in place.

    Yields:
      `convert_chunk` results, and the stream's other items, in stream order.
    """
    stream = iter(stream)
    pending = collections.deque()  # Worker indices awaiting a result, and passed-through items, in stream order.
    turn = itertools.cycle(range(len(self._processes)))

    def feed():
      """Sends the next chunk to the next worker in turn; False at the end of the stream."""
      for item in stream:
        if not isinstance(item, tuple):
          pending.append(item)
          continue
        worker = next(turn)
        self._sends[worker].send(item)
        pending.append(worker)
        return True
      return False

    for _ in range(self.DEPTH * len(self._processes)):
      if not feed():
        break
    while pending:
      head = pending.popleft()
      if not isinstance(head, int):
        yield head
        continue
      result = self._receives[head].recv()
      feed()  # Keeps every worker supplied while this result is written.
      if isinstance(result, _WorkerFailure):
        raise RuntimeError(f"a converter process failed:\n{result.text}")
      yield result

  def close(self, wait=True):
    """Stops the workers: asks them to finish (``wait``) or terminates them. Idempotent."""
    if self._closed:
      return
    self._closed = True
    for send, process in zip(self._sends, self._processes):
      if wait:
        try:
          send.send(None)
        except OSError:
          pass
      else:
        process.terminate()
    for process in self._processes:
      process.join(timeout=10 if wait else None)
      if process.is_alive():
        process.terminate()
        process.join()
    for conn in self._sends + self._receives:
      conn.close()


# --- The run -----------------------------------------------------------------


def _first_word(path):
  """The word of a file's first record, or None when it cannot be read cheaply."""
  if sources.kind_of(path) != "ndjson":
    return sources.word_of(path)
  if not os.path.isfile(path):  # A named pipe: it can be read once only, by the conversion.
    return None
  try:
    with sources._open_text_lines(path) as f:  # pylint: disable=protected-access
      words = sources._WORD_RE.search(f.readline() or b"")  # pylint: disable=protected-access
    return json.loads(b'"' + words.group(1) + b'"') if words else None
  except Exception:  # pylint: disable=broad-except
    return None


def _read_categories(value):
  if os.path.isfile(value):
    with open(value, encoding="utf-8") as f:
      names = [line.strip() for line in f if line.strip() and not line.startswith("#")]
  else:
    names = [name.strip() for name in value.split(",") if name.strip()]
  if len(set(names)) != len(names):
    raise MakeRecordsError(f"--categories lists a name twice: {sorted(n for n in set(names) if names.count(n) > 1)}")
  if not names:
    raise MakeRecordsError(f"--categories={value!r} names no category")
  return names


class _HashSet:
  """A growing set of 64-bit hashes at about 8 bytes each (a Python set of ints takes about 60).

  New hashes go to a small Python set; at `flush` they are sorted into a
  uint64 run, and runs of similar size are merged, so the runs number
  O(log n) and a batch is looked up in each with one vectorised search.
  """

  FLUSH_AT = 1 << 16

  def __init__(self):
    self._runs = []  # Sorted, distinct uint64 arrays, largest first.
    self.recent = set()  # Python ints added since the last flush.

  def in_runs(self, hashes):
    """bool ``[k]``: which of uint64 ``hashes [k]`` were added before the last `flush`."""
    found = np.zeros(len(hashes), bool)
    for run in self._runs:
      index = np.minimum(np.searchsorted(run, hashes), len(run) - 1)
      found |= run[index] == hashes
    return found

  def flush(self):
    """Moves the recent hashes into the sorted runs once there are enough of them."""
    if len(self.recent) < self.FLUSH_AT:
      return
    run = np.sort(np.fromiter(self.recent, np.uint64, len(self.recent)))
    self.recent = set()
    while self._runs and len(self._runs[-1]) <= 2 * len(run):
      run = np.union1d(self._runs.pop(), run)
    self._runs.append(run)


class _Skips:
  """Counts skipped records by reason and remembers the first few."""

  def __init__(self, strict):
    self.counts = collections.Counter()
    self.examples = []
    self.strict = strict

  def add(self, reason, path, line, message):
    self.counts[reason] += 1
    where = f"{path}:{line}" if line else path
    if reason not in NOT_ERRORS:
      if self.strict:
        raise MakeRecordsError(f"{where}: {message} [{reason}] (--strict)")
      if len(self.examples) < 20:
        self.examples.append({"reason": reason, "file": path, "line": line, "message": message})
      if sum(v for k, v in self.counts.items() if k not in NOT_ERRORS) <= REPORTED_SKIPS:
        logging.warning("skipped %s: %s [%s]", where, message, reason)


def _chunk_stream(files, chunk_size):
  """All chunks of all files, in order, and in its place a `sources.SourceError` for a file that fails."""
  for path in files:
    try:
      yield from sources.chunks(path, chunk_size)
    except sources.SourceError as e:
      yield e


def _convert_here(stream):
  """`_Workers.imap` without workers: converts the chunks in this process."""
  for item in stream:
    yield convert_chunk(item) if isinstance(item, tuple) else item


def _cpu_seconds():
  """User and system CPU seconds of this process and of its reaped children (the workers, once closed)."""
  own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
  return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def _shard_counts(num_shards, eval_fraction, test_fraction):
  train_fraction = max(1.0 - eval_fraction - test_fraction, 1e-9)
  def count(fraction):
    return int(min(num_shards, max(1, round(num_shards * fraction / train_fraction))))
  return (("train", num_shards), ("eval", count(eval_fraction)), ("test", count(test_fraction)))


def convert(inputs, output_dir, categories=None, max_per_class=0, eval_fraction=0.1, test_fraction=0.1,
            num_shards=8, workers=None, image_size=0, max_points=0, strict=False, chunk_size=256, progress=True):
  """Converts QuickDraw files into a records directory.

  The new records are written aside, in ``output_dir/.partial-<pid>``, and
  replace the earlier ones only once complete (see `_commit`); of the files in
  ``output_dir`` only those an earlier run wrote are replaced.

  Args:
    inputs: files, directories or globs.
    output_dir: the records directory to (re)write; its parent must exist.
    categories: None (all found), or a list of class names (this order).
    max_per_class: keep at most this many drawings per class (0: all); the
      first ones in path order are kept.
    eval_fraction, test_fraction: shares of the hash-split (ignored for npz,
      whose train/valid/test splits are kept).
    num_shards: train shards; eval and test get a proportional number.
    workers: converter processes (default: number of cores); with 1, this
      process converts.
    image_size: 0 for no images, else the side of a rendered ``image``.
    max_points: skip drawings with more points (0: no limit).
    strict: stop at the first bad record.
    chunk_size: drawings per work unit.
    progress: show a progress bar.

  Returns:
    The stats dict also written to stats.json.

  Raises:
    MakeRecordsError: nothing usable, bad options, an output directory that
      cannot be written (before any input is read), or (strict) bad input.
  """
  # Loaded first: workers forked below inherit example_pb2 rather than each
  # paying TensorFlow's import (no TensorFlow op has run yet, so forking is
  # safe), and start-up stays out of the measured conversion time.
  from tensorflow.core.example import example_pb2  # pylint: disable=g-import-not-at-top,unused-import
  import tensorflow_datasets  # pylint: disable=g-import-not-at-top,unused-import
  started = time.time(), _cpu_seconds()
  workers = workers or os.cpu_count() or 1
  if not 0 <= eval_fraction < 1 or not 0 <= test_fraction < 1 or eval_fraction + test_fraction >= 1:
    raise MakeRecordsError(f"--eval_fraction={eval_fraction} and --test_fraction={test_fraction} must be in [0, 1) "
                           "and leave room for training data")
  if num_shards < 1:
    raise MakeRecordsError(f"--num_shards must be at least 1, got {num_shards}")
  partial = _prepare_output(output_dir)
  try:
    skips = _Skips(strict)
    files, class_names, has_ink, image_size, left_out = _plan(inputs, categories, image_size, skips)
    options = Options(class_index={w: i for i, w in enumerate(class_names)}, image_size=image_size,
                      max_points=max_points, eval_fraction=eval_fraction, test_fraction=test_fraction,
                      num_shards=_shard_counts(num_shards, eval_fraction, test_fraction),
                      categories_given=categories is not None)
    frozen_before = gc.get_freeze_count()
    gc.freeze()  # Imported objects: out of the collector's way, and not copied into forked workers.
    pool = _Workers(workers, options) if workers > 1 else None
    if not pool:
      _init_worker(options)
    try:
      stats = _write(files, partial, class_names, options, pool, workers, skips, max_per_class, chunk_size,
                     progress, has_ink, started, left_out)
    except BaseException:
      if pool:
        pool.close(wait=False)
      raise
    finally:
      if not frozen_before:  # As the caller had it.
        gc.unfreeze()
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise
  # From here on the new set is complete: a failure leaves it for the next run to move into place.
  _commit(output_dir, _mark_ready(output_dir, partial))
  return stats  # _write closed the workers, before it counted their CPU time.


def _plan(inputs, categories, image_size, skips):
  """The input files and the classes; input errors go to ``skips``.

  Returns:
    (files, class_names, has_ink, image_size, left_out): left_out are the
    files of other categories than --categories, not read.
  """
  files, problems = sources.find_files(inputs)
  for problem in problems:
    skips.add(problem.reason, problem.path, problem.line, problem.message)
  if not files:
    raise MakeRecordsError(f"no usable input file in {inputs} (expected {', '.join(sources.SUFFIXES)})")
  kinds = {sources.kind_of(f) for f in files}
  has_ink = kinds != {"npy"}
  if "npy" in kinds and has_ink:
    raise MakeRecordsError("numpy_bitmap .npy files hold images only and cannot share a records directory with "
                           f"vector drawings: convert them separately ({[f for f in files if f.endswith('.npy')][:3]})")
  if not has_ink and image_size not in (0, BITMAP_SIDE):
    raise MakeRecordsError(f"numpy_bitmap images are {BITMAP_SIDE}x{BITMAP_SIDE}: --stored_image_size must be 0 or "
                           f"{BITMAP_SIDE}, got {image_size} (the input pipeline resizes them)")
  if not has_ink:
    image_size = BITMAP_SIDE
  left_out = []
  if categories is None:
    # Names that cannot be a class are left out here; their records are counted as bad_word.
    class_names = sorted(w for w in set().union(*map(sources.scan_words, files)) if not records.class_name_problem(w))
  else:
    class_names = list(categories)
    for name in class_names:
      if records.class_name_problem(name):
        raise MakeRecordsError(f"--categories: {records.class_name_problem(name)}")
    # Google's files hold one category each: those of other categories are left out unread.
    for path in files:
      first = _first_word(path)
      if first is not None and first not in class_names and sources.word_of(path) == first:
        left_out.append(path)
  selected, left_out_set = [], set(left_out)
  for path in files:
    if path in left_out_set:
      continue
    if sources.kind_of(path) != "ndjson" and sources.word_of(path) not in class_names:
      # npz and npy files are named after their class: one that cannot be a class name.
      skips.add("bad_word", path, 0, records.class_name_problem(sources.word_of(path)) or "not a class name")
    else:
      selected.append(path)
  return selected, class_names, has_ink, image_size, left_out


def _write(files, partial, class_names, options, pool, workers, skips, max_per_class, chunk_size, progress,
           has_ink, started, left_out):
  """Converts the files, writes the kept drawings and the metadata into ``partial``; returns the stats.

  ``started`` is (wall, CPU) `convert` began at; ``pool`` the workers or None.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  num_shards = dict(options.num_shards)
  # writers[split code][shard], split codes as in `COLUMNS`: indices into records.SPLITS.
  writers = [[tf.io.TFRecordWriter(os.path.join(partial, f"{split}-{i:05d}.tmp")) for i in range(num_shards[split])]
             for split in records.SPLITS]
  shard_lengths = [[0] * len(w) for w in writers]
  counts = [[0] * len(class_names) for _ in records.SPLITS]  # [split code][class_index]
  lengths = collections.Counter()
  seen_keys, seen_geometry = _HashSet(), _HashSet()
  per_class = [0] * len(class_names)
  bar = tqdm(unit=" drawings", disable=not progress, smoothing=0.1, mininterval=0.5)
  try:
    stream = _chunk_stream(files, chunk_size)
    for result in pool.imap(stream) if pool else _convert_here(stream):
      if isinstance(result, sources.SourceError):
        skips.add(result.reason, result.path, result.line, result.message)
        continue
      blob, table, chunk_skips = result
      for reason, path, line, message in chunk_skips:
        skips.add(reason, path, line, message)
      start = 0
      # Hashes seen in earlier chunks, looked up for the whole chunk at once; the
      # recent sets hold those added since the last flush, this chunk's included.
      key_seen = seen_keys.in_runs(table[:, 4]).tolist()
      geometry_seen = seen_geometry.in_runs(table[:, 5]).tolist()
      for (end, split, shard, class_index, key_hash, geometry_hash, length), old_key, old_geometry in zip(
          table.tolist(), key_seen, geometry_seen):
        begin, start = start, end
        duplicate = ((key_hash and (old_key or key_hash in seen_keys.recent)) or old_geometry or
                     geometry_hash in seen_geometry.recent)
        # Both identities are remembered even for a duplicate: a later copy may share only one of them.
        if key_hash:
          seen_keys.recent.add(key_hash)
        seen_geometry.recent.add(geometry_hash)
        if duplicate:
          skips.counts["duplicate"] += 1
          continue
        if max_per_class and per_class[class_index] >= max_per_class:
          skips.counts["over_max_per_class"] += 1
          continue
        per_class[class_index] += 1
        writers[split][shard].write(blob[begin:end])
        shard_lengths[split][shard] += 1
        counts[split][class_index] += 1
        lengths[length] += 1
      seen_keys.flush()
      seen_geometry.flush()
      bar.update(len(table) + len(chunk_skips))
  finally:
    bar.close()
    for writer in itertools.chain.from_iterable(writers):
      writer.close()
  if pool:
    pool.close()  # Done with them: their CPU time now counts in this process's children.

  written = sum(map(sum, shard_lengths))
  if not written:
    raise MakeRecordsError(f"no drawing was written from {len(files)} file(s); skips: {dict(skips.counts)}")
  missing = [w for i, w in enumerate(class_names) if not per_class[i]]
  if missing:
    message = f"{len(missing)} categories have no drawing: {missing[:10]}"
    if skips.strict:
      raise MakeRecordsError(message + " (--strict)")
    logging.warning("%s", message)

  final_lengths = _name_shards(partial, shard_lengths)
  records.write_classes(partial, class_names)
  elapsed = (time.time() - started[0], _cpu_seconds() - started[1])
  per_split = {split: dict(zip(class_names, counts[code])) for code, split in enumerate(records.SPLITS)}
  stats = _stats(class_names, per_split, lengths, skips, has_ink, options, files, workers, elapsed, written)
  stats["shard_lengths"] = final_lengths
  stats["files_left_out"] = left_out
  with open(os.path.join(partial, records.STATS_FILE), "w", encoding="utf-8") as f:
    json.dump(stats, f, indent=1)
  records.write_tfds_metadata(partial, class_names, options.image_size, final_lengths)
  return stats


def _name_shards(partial, shard_lengths):
  """Gives the non-empty shards in ``partial`` their final names, renumbered; removes the empty ones.

  Args:
    shard_lengths: [split code][shard] drawings written.

  Returns:
    dict split -> drawings per final shard.
  """
  final_lengths = {}
  for code, split in enumerate(records.SPLITS):
    kept = [i for i, n in enumerate(shard_lengths[code]) if n]
    final_lengths[split] = [shard_lengths[code][i] for i in kept]
    for i in range(len(shard_lengths[code])):
      temporary = os.path.join(partial, f"{split}-{i:05d}.tmp")
      if i in kept:
        os.replace(temporary, records.shard_path(partial, split, kept.index(i), len(kept)))
      else:
        os.remove(temporary)
  return final_lengths


# --- The output directory: written aside, then moved into place --------------
#
# A run writes its whole records set (shards and metadata) into
# ``output_dir/.partial-<pid>``, then renames that to ``.ready-<pid>`` with a
# journal of the earlier run's files it replaces, and commits: it removes the
# old completion marker (from then on no reader takes the directory for
# complete, so none mixes old and new shards), the replaced files, then moves
# the new ones in, marker last. A run killed during the commit leaves its
# complete set in ``.ready-<pid>``; the next run finishes that commit before
# anything else. Directories of dead runs are removed.

_STAGE_RE = re.compile(r"\.(partial|ready)-(\d+)")
_JOURNAL = ".replaces.json"


def _prepare_output(output_dir):
  """Checks ``output_dir`` can be written, cleans up after dead runs, and makes this run's partial directory.

  Runs before any input is read, so a wrong --output_dir costs nothing.

  Returns:
    The partial directory's path.
  """
  output_dir = _check_output_dir(output_dir)
  partial = os.path.join(output_dir, f".partial-{os.getpid()}")
  try:
    if not os.path.isdir(output_dir):
      os.mkdir(output_dir)
    _recover(output_dir)
    shutil.rmtree(partial, ignore_errors=True)
    os.mkdir(partial)
  except OSError as e:
    raise MakeRecordsError(f"cannot write into --output_dir={output_dir}: {e.strerror or e} "
                           "(check its permissions, or choose another --output_dir)") from None
  return partial


def _check_output_dir(output_dir):
  """Raises unless ``output_dir`` is a directory or can be made one in an existing parent; returns it normalised."""
  output_dir = os.path.normpath(output_dir)
  if os.path.exists(output_dir) and not os.path.isdir(output_dir):
    raise MakeRecordsError(f"--output_dir={output_dir} is not a directory: remove it or choose another --output_dir")
  parent = os.path.dirname(os.path.abspath(output_dir))
  if not os.path.isdir(parent):
    raise MakeRecordsError(f"the parent directory of --output_dir={output_dir} does not exist: create it "
                           f"(mkdir -p {parent}) or choose another --output_dir")
  if not os.access(output_dir if os.path.isdir(output_dir) else parent, os.W_OK | os.X_OK):
    raise MakeRecordsError(f"cannot write into --output_dir={output_dir}: permission denied "
                           "(check its permissions, or choose another --output_dir)")
  return output_dir


def _alive(pid):
  """Whether process ``pid`` runs (this process's own earlier directories count as dead)."""
  if pid == os.getpid():
    return False
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # Another user's process.
    return True
  return True


def _recover(output_dir):
  """Finishes the commit a dead run left half done; removes the other directories of dead runs."""
  for name in sorted(os.listdir(output_dir)):
    stage = _STAGE_RE.fullmatch(name)
    if not stage or _alive(int(stage.group(2))):
      continue
    path = os.path.join(output_dir, name)
    # A ready set replaces the records only if the dead run had begun to (the old set is incomplete):
    # otherwise the complete records there (the old ones, or a later run's) are kept.
    if stage.group(1) == "ready" and not records.is_complete(output_dir):
      logging.warning("completing the replacement of the records in %s that process %s began", output_dir,
                      stage.group(2))
      _commit(output_dir, path)
    else:
      shutil.rmtree(path, ignore_errors=True)


def _mark_ready(output_dir, partial):
  """Journals which earlier files the new set replaces, and renames ``partial`` to its ready name."""
  new = set(os.listdir(partial))
  with open(os.path.join(partial, _JOURNAL), "w", encoding="utf-8") as f:
    json.dump(sorted(set(records.owned_files(output_dir)) - new), f)
  ready = os.path.join(output_dir, f".ready-{os.getpid()}")
  os.replace(partial, ready)
  return ready


def _commit(output_dir, ready):
  """Moves the complete set in ``ready`` into ``output_dir``; safe to redo after a kill at any point."""
  with open(os.path.join(ready, _JOURNAL), encoding="utf-8") as f:
    replaced = json.load(f)
  marker = os.path.join(output_dir, records.COMPLETE_MARKER)
  if os.path.exists(marker):
    os.remove(marker)
  for name in replaced:
    if os.path.exists(os.path.join(output_dir, name)):
      os.remove(os.path.join(output_dir, name))
  for name in sorted(set(os.listdir(ready)) - {_JOURNAL}, key=lambda n: n == records.COMPLETE_MARKER):
    os.replace(os.path.join(ready, name), os.path.join(output_dir, name))
  shutil.rmtree(ready)


def _stats(class_names, counts, lengths, skips, has_ink, options, files, workers, elapsed, written):
  """The stats.json dict.

  Args:
    counts: split -> class name -> drawings written.
    lengths: ink length -> drawings written.
    elapsed: (wall seconds, CPU seconds of this process and its workers) since
      the imports.
  """
  if lengths:
    values = np.array(sorted(lengths))
    cumulative = np.cumsum([lengths[v] for v in values]) / sum(lengths.values())
    percentiles = {f"p{p}": int(values[np.searchsorted(cumulative, p / 100.0)]) for p in (50, 90, 95, 99)}
    percentiles["max"] = int(values[-1])
  else:
    percentiles = {}
  return {
      "classes": class_names,
      "has_ink": has_ink,
      "image_size": options.image_size,
      "totals": {split: sum(counts[split].values()) for split in records.SPLITS},
      "counts": counts,
      "ink_length_percentiles": percentiles,
      "skipped": dict(sorted(skips.counts.items())),
      "skipped_examples": skips.examples,
      "inputs": files,
      "options": {"eval_fraction": options.eval_fraction, "test_fraction": options.test_fraction,
                  "num_shards": dict(options.num_shards), "max_points": options.max_points},
      "workers": workers,
      "seconds": round(elapsed[0], 2),  # after imports: scan, conversion, writing
      "cpu_seconds": round(elapsed[1], 2),  # the same span, this process and its workers
      "drawings_per_second": round(written / max(elapsed[0], 1e-9), 1),
  }


# --- Command line ------------------------------------------------------------

def define_flags():
  flags.DEFINE_multi_string("input", [], "Input files, directories or globs (repeatable).")
  flags.DEFINE_string("output_dir", None, f"Records directory (default {DEFAULT_RECORDS_ROOT}/<name>).")
  flags.DEFINE_string("name", "quickdraw", "Name of the records directory under tfrecords/.")
  flags.DEFINE_string("categories", None, "Comma-separated class names, or a file with one a line (default: all found).")
  flags.DEFINE_integer("max_per_class", 0, "Keep at most this many drawings per class (0: all).", lower_bound=0)
  flags.DEFINE_float("eval_fraction", 0.1, "Share of drawings in the eval split.")
  flags.DEFINE_float("test_fraction", 0.1, "Share of drawings in the test split.")
  flags.DEFINE_integer("num_shards", 8, "Number of train shards (eval and test get a proportional number).",
                       lower_bound=1)
  flags.DEFINE_integer("workers", None, "Converter processes (default: number of cores).", lower_bound=1)
  flags.DEFINE_integer("stored_image_size", 0, "Also store a rendered image of this side (0: no images).",
                       lower_bound=0)
  flags.DEFINE_integer("image_size", None, "Deprecated name of --stored_image_size (train's --image_size is the "
                       "side a model reads).", lower_bound=0)
  flags.DEFINE_integer("max_points", 0, "Skip drawings with more points than this (0: no limit).", lower_bound=0)
  flags.DEFINE_bool("strict", False, "Stop at the first bad record instead of skipping and counting it.")
  flags.DEFINE_list("download", [], "Categories to fetch from the public QuickDraw bucket first, e.g. cat,dog.")
  flags.DEFINE_enum("download_kind", "simplified", ["simplified", "raw", "numpy_bitmap", "sketchrnn"],
                    "Which variant of the dataset to download.")
  flags.DEFINE_string("download_url", None, "Base URL of the bucket (default: Google's public bucket).")
  flags.DEFINE_string("cache_dir", None, "Where downloads are kept (default ~/.cache/quickdraw_tf).")
  flags.DEFINE_bool("progress", True, "Show a progress bar.")


def _stored_image_size():
  """--stored_image_size, or the deprecated --image_size with a note."""
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if FLAGS.image_size is None:
    return FLAGS.stored_image_size
  if FLAGS["stored_image_size"].present:
    raise app.UsageError("give --stored_image_size only (--image_size is its deprecated name)")
  print("make_records: --image_size is deprecated; it is now --stored_image_size", file=sys.stderr)
  return FLAGS.image_size


def main(argv):
  del argv
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  inputs = list(FLAGS.input)
  output_dir = FLAGS.output_dir or os.path.join(DEFAULT_RECORDS_ROOT, FLAGS.name)
  image_size = _stored_image_size()
  try:
    if not FLAGS.output_dir:
      os.makedirs(DEFAULT_RECORDS_ROOT, exist_ok=True)
    _check_output_dir(output_dir)  # Before a download too.
  except OSError as e:
    raise MakeRecordsError(str(e)) from None
  if FLAGS.download:
    from quickdraw_tf import download  # pylint: disable=g-import-not-at-top
    kwargs = {k: v for k, v in (("base_url", FLAGS.download_url), ("cache_dir", FLAGS.cache_dir)) if v}
    inputs += download.fetch(FLAGS.download, kind=FLAGS.download_kind, progress=FLAGS.progress, **kwargs)
  if not inputs:
    raise app.UsageError("give --input (files, directories, globs) or --download=word,word")
  stats = convert(
      inputs, output_dir,
      categories=_read_categories(FLAGS.categories) if FLAGS.categories else None,
      max_per_class=FLAGS.max_per_class, eval_fraction=FLAGS.eval_fraction, test_fraction=FLAGS.test_fraction,
      num_shards=FLAGS.num_shards, workers=FLAGS.workers, image_size=image_size,
      max_points=FLAGS.max_points, strict=FLAGS.strict, progress=FLAGS.progress)
  bad = {k: v for k, v in stats["skipped"].items() if k not in NOT_ERRORS}
  print(f"wrote {sum(stats['totals'].values())} drawings of {len(stats['classes'])} classes to {output_dir} "
        f"({stats['totals']}) in {stats['seconds']} s, {stats['drawings_per_second']} drawings/s; "
        f"skipped {stats['skipped'] or 'none'}")
  if stats["files_left_out"]:
    print(f"left out {len(stats['files_left_out'])} input file(s) of categories not in --categories, unread")
  if bad:
    print(f"bad records were skipped: {bad}; see {os.path.join(output_dir, records.STATS_FILE)}", file=sys.stderr)
  return 0


if __name__ == "__main__":
  cli.run(define_flags, main)
