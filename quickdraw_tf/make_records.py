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
from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.drawings import raster
from quickdraw_tf.drawings import sources
from quickdraw_tf.pipelines import records

# Skip reasons that are not bad input: --strict does not stop on them.
NOT_ERRORS = ("duplicate", "over_max_per_class", "other_category")
REPORTED_SKIPS = 5
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
_KEY_HASH, _GEOMETRY_HASH = COLUMNS.index("key_hash"), COLUMNS.index("geometry_hash")


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
               countrycode="", recognized=_UNKNOWN_RECOGNIZED, bbox=np.zeros(4), origin=np.zeros(3)),
          raster.encode_png(pixels.reshape(raster.BITMAP_SIZE, raster.BITMAP_SIZE))))
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
        if not isinstance(item, sources.Chunk):
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

  def add_error(self, error):
    """Counts a `sources.SourceError`."""
    self.add(error.reason, error.path, error.line, error.message)

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


class _Deduplicator:
  """Tells drawings already seen, by the same key_id or the same geometry, from new ones."""

  def __init__(self):
    self._keys, self._geometry = _HashSet(), _HashSet()

  def duplicates(self, table):
    """Whether each row of a `COLUMNS` table repeats an earlier one (of this table or an earlier one).

    Args:
      table: uint64 ``[k, len(COLUMNS)]``; a key_hash of 0 means no key_id.

    Returns:
      list of k bools. The rows are remembered: a later table's copies of them are duplicates.
    """
    key_hashes, geometry_hashes = table[:, _KEY_HASH], table[:, _GEOMETRY_HASH]
    # Hashes seen in earlier tables, looked up for the whole table at once; the
    # recent sets hold those added since the last flush, this table's included.
    old_keys = self._keys.in_runs(key_hashes).tolist()
    old_geometries = self._geometry.in_runs(geometry_hashes).tolist()
    recent_keys, recent_geometries = self._keys.recent, self._geometry.recent
    duplicates = []
    for key_hash, geometry_hash, old_key, old_geometry in zip(key_hashes.tolist(), geometry_hashes.tolist(),
                                                              old_keys, old_geometries):
      duplicates.append(bool((key_hash and (old_key or key_hash in recent_keys)) or old_geometry or
                             geometry_hash in recent_geometries))
      # Both identities are remembered even for a duplicate: a later copy may share only one of them.
      if key_hash:
        recent_keys.add(key_hash)
      recent_geometries.add(geometry_hash)
    self._keys.flush()
    self._geometry.flush()
    return duplicates


class _Tally:
  """The drawings written, by split, class and ink length; and whether a class has its --max_per_class."""

  def __init__(self, num_classes, max_per_class):
    self.max_per_class = max_per_class  # 0: no limit.
    self.per_class = [0] * num_classes  # [class_index]
    self.counts = [[0] * num_classes for _ in records.SPLITS]  # [split code][class_index]
    self.lengths = collections.Counter()  # ink length -> drawings

  @property
  def written(self):
    return sum(self.per_class)

  def full(self, class_index):
    return bool(self.max_per_class) and self.per_class[class_index] >= self.max_per_class

  def add(self, split, class_index, ink_length):
    """Counts a drawing written; ``split`` is its code, an index into records.SPLITS."""
    self.per_class[class_index] += 1
    self.counts[split][class_index] += 1
    self.lengths[ink_length] += 1


class _ShardWriter:
  """The shards of a records set, written in ``partial`` under temporary names until `commit` names them.

  Opened by the constructor; ``with`` closes the files, on an error too. The
  files stay in ``partial``, which a failed run removes and the next run
  removes after a killed one: the records directory gets them from `_commit`.
  """

  def __init__(self, partial, num_shards):
    """``num_shards``: ((split, count), ...) as in `Options`."""
    import tensorflow as tf  # pylint: disable=g-import-not-at-top

    self._partial = partial
    counts = dict(num_shards)
    # [split code][shard], split codes as in `COLUMNS`: indices into records.SPLITS.
    self._writers = [[tf.io.TFRecordWriter(self._temporary(split, i)) for i in range(counts[split])]
                     for split in records.SPLITS]
    self.lengths = [[0] * len(w) for w in self._writers]  # [split code][shard] examples written.

  def _temporary(self, split, shard):
    return os.path.join(self._partial, f"{split}-{shard:05d}.tmp")

  def __enter__(self):
    return self

  def __exit__(self, *exc_info):
    for writer in itertools.chain.from_iterable(self._writers):
      writer.close()

  def write(self, split, shard, example):
    """Appends a serialized example to shard ``shard`` of split code ``split``."""
    self._writers[split][shard].write(example)
    self.lengths[split][shard] += 1

  def commit(self):
    """Gives the closed non-empty shards their final names, renumbered; removes the empty ones.

    Returns:
      dict split -> examples per final shard.
    """
    final_lengths = {}
    for code, split in enumerate(records.SPLITS):
      kept = [i for i, n in enumerate(self.lengths[code]) if n]
      final_lengths[split] = [self.lengths[code][i] for i in kept]
      for i in range(len(self.lengths[code])):
        if i in kept:
          os.replace(self._temporary(split, i), records.shard_path(self._partial, split, kept.index(i), len(kept)))
        else:
          os.remove(self._temporary(split, i))
    return final_lengths


def _chunk_stream(found, chunk_size):
  """The `sources.Chunk`s of the `sources.Source`s ``found``, in order; a file that fails ends in its SourceError."""
  for source in found:
    try:
      yield from sources.chunks(source, chunk_size)
    except sources.SourceError as e:
      yield e


def _convert_here(stream):
  """`_Workers.imap` without workers: converts the chunks in this process."""
  for item in stream:
    yield convert_chunk(item) if isinstance(item, sources.Chunk) else item


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
  _check_splits(eval_fraction, test_fraction, num_shards)
  partial = _prepare_output(output_dir)
  try:
    skips = _Skips(strict)
    plan = _plan(inputs, categories, image_size, skips)
    options = Options(class_index={w: i for i, w in enumerate(plan.class_names)}, image_size=plan.image_size,
                      max_points=max_points, eval_fraction=eval_fraction, test_fraction=test_fraction,
                      num_shards=_shard_counts(num_shards, eval_fraction, test_fraction),
                      categories_given=categories is not None)
    tally = _Tally(len(plan.class_names), max_per_class)
    with _ShardWriter(partial, options.num_shards) as shards:
      _convert_sources(plan.sources, options, workers, shards, skips, tally, chunk_size, progress)
    _check_written(plan, tally, skips)
    stats = _stats(plan, options, tally, skips, workers, started, shards.commit())
    _write_metadata(partial, stats)
  except BaseException:
    shutil.rmtree(partial, ignore_errors=True)
    raise
  # From here on the new set is complete: a failure leaves it for the next run to move into place.
  _commit(output_dir, _mark_ready(output_dir, partial))
  return stats


def _check_splits(eval_fraction, test_fraction, num_shards):
  """Raises MakeRecordsError unless the split fractions leave room for training data and there is a shard."""
  if not 0 <= eval_fraction < 1 or not 0 <= test_fraction < 1 or eval_fraction + test_fraction >= 1:
    raise MakeRecordsError(f"--eval_fraction={eval_fraction} and --test_fraction={test_fraction} must be in [0, 1) "
                           "and leave room for training data")
  if num_shards < 1:
    raise MakeRecordsError(f"--num_shards must be at least 1, got {num_shards}")


@dataclasses.dataclass(frozen=True)
class _Plan:
  """What a run reads and the classes it writes, as `_plan` decides them.

  Attributes:
    sources: list of `sources.Source` to convert, sorted by path.
    class_names: list of str; a class's index is its position.
    has_ink: False when the input is numpy_bitmap images only.
    image_size: int, the side of the stored images; 0 for none.
    left_out: list of str, the paths of files of other categories than
      --categories, not read.
  """
  sources: list
  class_names: list
  has_ink: bool
  image_size: int
  left_out: list


def _plan(inputs, categories, image_size, skips):
  """The sources to convert and the classes to write; input errors go to ``skips``.

  Args:
    inputs: list of str: files, directories or globs.
    categories: list of str (--categories), or None for all the words found.
    image_size: --stored_image_size.

  Returns:
    A `_Plan`; its image_size is numpy_bitmap's side when the input is images only.
  """
  found, problems = sources.find_sources(inputs)
  for problem in problems:
    skips.add_error(problem)
  if not found:
    raise MakeRecordsError(f"no usable input file in {inputs} (expected {', '.join(sources.SUFFIXES)})")
  formats = {source.format for source in found}
  has_ink = formats != {"npy"}
  if "npy" in formats and has_ink:
    npy_paths = [source.path for source in found if source.format == "npy"]
    raise MakeRecordsError("numpy_bitmap .npy files hold images only and cannot share a records directory with "
                           f"vector drawings: convert them separately ({npy_paths[:3]})")
  if not has_ink and image_size not in (0, raster.BITMAP_SIZE):
    raise MakeRecordsError(f"numpy_bitmap images are {raster.BITMAP_SIZE}x{raster.BITMAP_SIZE}: --stored_image_size must be 0 or "
                           f"{raster.BITMAP_SIZE}, got {image_size} (the input pipeline resizes them)")
  if not has_ink:
    image_size = raster.BITMAP_SIZE
  if categories is None:
    # Names that cannot be a class are left out here; their records are counted as bad_word.
    class_names = sorted(w for w in set().union(*map(sources.scan_words, found)) if not records.class_name_problem(w))
    left_out = []
  else:
    class_names, left_out = _given_classes(categories, found)
  selected, left_out_set = [], set(left_out)
  for source in found:
    if source.path in left_out_set:
      continue
    if source.format != "ndjson" and source.word not in class_names:
      # npz and npy files are named after their class: one that cannot be a class name.
      skips.add("bad_word", source.path, 0, records.class_name_problem(source.word) or "not a class name")
    else:
      selected.append(source)
  return _Plan(selected, class_names, has_ink, image_size, left_out)


def _given_classes(categories, found):
  """--categories, checked, and the paths of the `sources.Source`s ``found`` that hold other categories.

  Returns:
    (class_names, left_out): lists of str.
  """
  class_names = list(categories)
  for name in class_names:
    if records.class_name_problem(name):
      raise MakeRecordsError(f"--categories: {records.class_name_problem(name)}")
  # Google's files hold one category each: those of other categories are left out unread.
  left_out = []
  for source in found:
    first = sources.first_word(source)
    if first is not None and first not in class_names and source.word == first:
      left_out.append(source.path)
  return class_names, left_out


def _convert_sources(found, options, workers, shards, skips, tally, chunk_size, progress):
  """Converts the `sources.Source`s ``found`` and writes the drawings kept into ``shards``.

  Args:
    options: the `Options` the converters run with.
    workers: converter processes; with 1, this process converts.
    shards: the open `_ShardWriter`.
    tally: the `_Tally` to count the drawings written in.
    chunk_size: records per `sources.Chunk`.

  The workers are closed on return (terminated on an exception).
  """
  frozen_before = gc.get_freeze_count()
  gc.freeze()  # Imported objects: out of the collector's way, and not copied into forked workers.
  pool = _Workers(workers, options) if workers > 1 else None
  if not pool:
    _init_worker(options)
  try:
    stream = _chunk_stream(found, chunk_size)
    _write_results(pool.imap(stream) if pool else _convert_here(stream), shards, skips, tally, progress)
  except BaseException:
    if pool:
      pool.close(wait=False)
    raise
  finally:
    if not frozen_before:  # As the caller had it.
      gc.unfreeze()
  if pool:
    pool.close()  # Done with them: their CPU time now counts in this process's children.


def _write_results(results, shards, skips, tally, progress):
  """Writes the drawings of converted chunks, in input order, that are new and within --max_per_class.

  Args:
    results: `convert_chunk` results, and in place of the rest of a file
      that could not be read its `sources.SourceError`.
    shards: the open `_ShardWriter`.
    tally: the `_Tally` to count the drawings written in.
  """
  from tqdm import tqdm  # pylint: disable=g-import-not-at-top

  deduplicator = _Deduplicator()
  bar = tqdm(unit=" drawings", disable=not progress, smoothing=0.1, mininterval=0.5)
  try:
    for result in results:
      if isinstance(result, sources.SourceError):
        skips.add_error(result)
        continue
      blob, table, chunk_skips = result
      for reason, path, line, message in chunk_skips:
        skips.add(reason, path, line, message)
      start = 0
      for (end, split, shard, class_index, _, _, length), duplicate in zip(table.tolist(),
                                                                           deduplicator.duplicates(table)):
        begin, start = start, end
        if duplicate:
          skips.counts["duplicate"] += 1
        elif tally.full(class_index):
          skips.counts["over_max_per_class"] += 1
        else:
          shards.write(split, shard, blob[begin:end])
          tally.add(split, class_index, length)
      bar.update(len(table) + len(chunk_skips))
  finally:
    bar.close()


def _check_written(plan, tally, skips):
  """Raises MakeRecordsError when no drawing was written, or under --strict when a class got none (else warns)."""
  if not tally.written:
    raise MakeRecordsError(f"no drawing was written from {len(plan.sources)} file(s); skips: {dict(skips.counts)}")
  missing = [w for i, w in enumerate(plan.class_names) if not tally.per_class[i]]
  if missing:
    message = f"{len(missing)} categories have no drawing: {missing[:10]}"
    if skips.strict:
      raise MakeRecordsError(message + " (--strict)")
    logging.warning("%s", message)


def _write_metadata(partial, stats):
  """Writes the class list, stats.json and the TFDS metadata into ``partial``, from the `_stats` dict."""
  records.write_classes(partial, stats["classes"])
  with open(os.path.join(partial, records.STATS_FILE), "w", encoding="utf-8") as f:
    json.dump(stats, f, indent=1)
  records.write_tfds_metadata(partial, stats["classes"], stats["image_size"], stats["shard_lengths"])


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


def _stats(plan, options, tally, skips, workers, started, shard_lengths):
  """The stats.json dict.

  Args:
    plan: the `_Plan` run.
    tally: the `_Tally` of the drawings written.
    started: (wall seconds, CPU seconds) when `convert` began, after the
      imports; the workers must be closed, so that their CPU time counts.
    shard_lengths: split -> drawings per final shard.
  """
  elapsed = (time.time() - started[0], _cpu_seconds() - started[1])
  counts = {split: dict(zip(plan.class_names, tally.counts[code])) for code, split in enumerate(records.SPLITS)}
  return {
      "classes": plan.class_names,
      "has_ink": plan.has_ink,
      "image_size": options.image_size,
      "totals": {split: sum(counts[split].values()) for split in records.SPLITS},
      "counts": counts,
      "ink_length_percentiles": _percentiles(tally.lengths),
      "skipped": dict(sorted(skips.counts.items())),
      "skipped_examples": skips.examples,
      "inputs": [source.path for source in plan.sources],
      "options": {"eval_fraction": options.eval_fraction, "test_fraction": options.test_fraction,
                  "num_shards": dict(options.num_shards), "max_points": options.max_points},
      "workers": workers,
      "seconds": round(elapsed[0], 2),  # after imports: scan, conversion, writing
      "cpu_seconds": round(elapsed[1], 2),  # the same span, this process and its workers
      "drawings_per_second": round(tally.written / max(elapsed[0], 1e-9), 1),
      "shard_lengths": shard_lengths,
      "files_left_out": plan.left_out,
  }


def _percentiles(lengths):
  """{'p50': ..., 'p90': ..., 'p95': ..., 'p99': ..., 'max': ...} of ``lengths`` (value -> count); {} if empty."""
  if not lengths:
    return {}
  values = np.array(sorted(lengths))
  cumulative = np.cumsum([lengths[v] for v in values]) / sum(lengths.values())
  percentiles = {f"p{p}": int(values[np.searchsorted(cumulative, p / 100.0)]) for p in (50, 90, 95, 99)}
  percentiles["max"] = int(values[-1])
  return percentiles


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
    from quickdraw_tf.drawings import download  # pylint: disable=g-import-not-at-top
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
