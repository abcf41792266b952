"""Input files: find them, tell their format and word, and cut them into work chunks.

`find_sources` turns the user's inputs into `Source`s once; `chunks` cuts one
into `Chunk`s, small picklable work units handed to converter processes.
Reading stays streaming (a chunk at a time), so memory does not grow with
input size.

Formats, chosen by file name and content:
  *.ndjson, *.ndjson.gz, *.jsonl   Google simplified or raw ndjson (per record:
                                   strokes of 3 lists are raw, of 2 simplified)
  *.npz                            sketch-rnn stroke-3 arrays under train/valid/test
  *.npy                            numpy_bitmap, uint8 [N, 784] 28x28 images
"""

import dataclasses
import glob
import gzip
import itertools
import json
import os
import re
import stat
import typing
import zlib

import numpy as np

from quickdraw_tf import cli
from quickdraw_tf import files

NDJSON_SUFFIXES = (".ndjson", ".ndjson.gz", ".jsonl", ".jsonl.gz")
NPZ_SUFFIX = ".npz"
NPY_SUFFIX = ".npy"
SUFFIXES = NDJSON_SUFFIXES + (NPZ_SUFFIX, NPY_SUFFIX)
# Prefixes of Google's bucket file names as people usually save them.
_WORD_PREFIXES = ("full_simplified_", "full_raw_", "full_numpy_bitmap_", "full-simplified-", "full-raw-")
# sketch-rnn split name -> records split.
NPZ_SPLITS = {"train": "train", "valid": "eval", "test": "test"}
NPZ_SPLITS_REQUIRED = ("train", "valid", "test")
_WORD_RE = re.compile(rb'"word"\s*:\s*"((?:[^"\\]|\\.)*)"')
_FIRST_WORD_RE = re.compile(rb'^[^\n]*?"word"\s*:\s*"((?:[^"\\\n]|\\.)*)"', re.M)
_SCAN_BLOCK = 1 << 24  # Bytes of whole lines searched at once by `scan_words`.


@dataclasses.dataclass(frozen=True)
class Source:
  """One input file, as `find_sources` found it.

  Attributes:
    path: str, normalised.
    format: 'ndjson', 'npz' or 'npy' (see the module docstring).
    word: str, the category the file is named after (`word_of`); an ndjson
      file's records name their own.
    size: int bytes of a regular file; None for anything else (a named pipe
      can be read once only, by the conversion).
  """
  path: str
  format: str
  word: str
  size: typing.Optional[int]


@dataclasses.dataclass(frozen=True)
class Chunk:
  """Consecutive records of one source: the work unit of a converter process.

  Attributes:
    source: the `Source` they come from.
    start: where the first is: ndjson, its line number (from 1); npz, its index
      in ``npz_split``'s array; npy, its row.
    records: ndjson, list of bytes lines; npz, list of stroke-3 arrays (int16
      ``[n, 3]``); npy, uint8 ``[k, 784]``.
    npz_split: npz only, the sketch-rnn split: 'train', 'valid' or 'test'.
  """
  source: Source
  start: int
  records: typing.Any
  npz_split: typing.Optional[str] = None


class SourceError(ValueError):
  """Unusable input; ``reason`` is a counter name, ``path``/``line`` where it is."""

  def __init__(self, reason, path, line, message):
    super().__init__(f"{path}:{line}: {message}" if line else f"{path}: {message}")
    self.reason, self.path, self.line, self.message = reason, path, line, message

  def __reduce__(self):  # Picklable, so that it can cross between processes.
    return SourceError, (self.reason, self.path, self.line, self.message)


def kind_of(path):
  """'ndjson', 'npz', 'npy' or None."""
  lower = path.lower()
  if lower.endswith(NDJSON_SUFFIXES):
    return "ndjson"
  if lower.endswith(NPZ_SUFFIX):
    return "npz"
  if lower.endswith(NPY_SUFFIX):
    return "npy"
  return None


def word_of(path):
  """The category a file is named after: ``full_raw_alarm clock.ndjson`` -> ``alarm clock``."""
  name = os.path.basename(path)
  for suffix in sorted(SUFFIXES, key=len, reverse=True):
    if name.lower().endswith(suffix):
      name = name[:-len(suffix)]
      break
  for prefix in _WORD_PREFIXES:
    if name.startswith(prefix):
      return name[len(prefix):]
  return name


def find_files(inputs):
  """Expands files, directories (recursively) and globs into usable input files.

  Args:
    inputs: list of str: local paths, or URLs of any file system
      ``tf.io.gfile`` knows (gs://, hdfs://, ...), found through it.

  Returns:
    (files, problems): the files sorted by path, so that the output does not
    depend on the order of the arguments; problems is a list of SourceError
    for arguments that matched nothing usable.
  """
  paths, problems = set(), []
  for pattern in inputs:
    try:
      found, what = _find(pattern)
    except OSError as e:  # A URL whose file system cannot be reached or is not known.
      found, what = [], f"cannot list it: {e}"
    if not found:
      problems.append(SourceError("no_usable_file", pattern, 0, what))
    paths.update(f if cli.is_url(f) else os.path.normpath(f) for f in found)
  return sorted(paths), problems


def _find(pattern):
  """(usable files of one --input, and if none why)."""
  fs = files.for_path(pattern)
  matches = sorted(fs.glob(pattern)) if glob.has_magic(pattern) else [pattern]
  found = []
  for match in matches:
    if fs.isdir(match):
      for root, _, names in fs.walk(match):
        found.extend(os.path.join(root, n) for n in names if kind_of(n))
    elif fs.isfile(match) and kind_of(match):
      found.append(match)
  if found:
    return found, None
  if not matches or not any(fs.exists(m) for m in matches):
    return found, "no such file or directory"
  return found, f"no usable file (expected {', '.join(SUFFIXES)})"


def find_sources(inputs):
  """The usable input files of ``inputs`` (files, directories, globs), as `Source`s.

  Returns:
    (sources, problems): list of `Source` sorted by path, and list of
    `SourceError`, as `find_files` returns them.
  """
  paths, problems = find_files(inputs)
  return [Source(path, kind_of(path), word_of(path), _regular_size(path)) for path in paths], problems


def _regular_size(path):
  """Bytes of a regular file (links followed); None for anything else or a file that cannot be read."""
  try:
    if cli.is_url(path):
      return files.for_path(path).size(path)
    status = os.stat(path)
  except OSError:
    return None
  return status.st_size if stat.S_ISREG(status.st_mode) else None


def _open_text_lines(path, opener=None):
  """The bytes of an ndjson file, gunzipped where its name ends in .gz; ``opener(path)`` opens it (default: open,
  or for a URL ``tf.io.gfile.GFile``)."""
  if opener is None and not cli.is_url(path):
    return (gzip.open if path.lower().endswith(".gz") else open)(path, "rb")
  raw = opener(path) if opener else files.for_path(path).open(path, "rb")
  return gzip.GzipFile(fileobj=raw, mode="rb") if path.lower().endswith(".gz") else raw


def _word_matches(path, pattern):
  """Raw matches of ``pattern`` in a file, searched a block of whole lines at a time.

  Returns:
    (matches, lines): set of bytes, and whether any line could be read.
  """
  matches, lines_read = set(), False
  try:
    with _open_text_lines(path) as f:
      for lines in iter(lambda: f.readlines(_SCAN_BLOCK), []):
        lines_read = True
        matches.update(pattern.findall(b"".join(lines)))
  except (OSError, EOFError, zlib.error):
    try:  # A damaged file: again line by line, to keep the words before the damage.
      with _open_text_lines(path) as f:
        for line in f:
          lines_read = True
          matches.update(pattern.findall(line))
    except (OSError, EOFError, zlib.error):
      pass
  return matches, lines_read


def _json_string(raw):
  """The str a JSON string's bytes between its quotes stand for; raises ValueError."""
  return json.loads(b'"' + raw + b'"')


def scan_words(source):
  """Category names in one `Source` (each record's first ``"word"``), without parsing whole records.

  Returns:
    set of str: empty for a file with no line that can be read (an empty or
    unreadable file holds no class); the file's name when no line names a
    word (its records take that class). Unreadable parts are ignored here;
    the conversion counts them.
  """
  if source.format != "ndjson":
    return {source.word}
  matches, lines_read = _word_matches(source.path, _WORD_RE)
  if len(matches) > 1:
    # Several words: some may come from other keys further along a line; take each line's first.
    matches, _ = _word_matches(source.path, _FIRST_WORD_RE)
  words = set()
  for match in matches:
    try:
      words.add(_json_string(match))
    except ValueError:
      pass
  return words or ({source.word} if lines_read else set())


def first_word(source):
  """The word of a `Source`'s first record, or None when it cannot be read cheaply."""
  if source.format != "ndjson":
    return source.word
  if source.size is None:  # A named pipe: it can be read once only, by the conversion.
    return None
  try:
    with _open_text_lines(source.path) as f:
      words = _WORD_RE.search(f.readline() or b"")
    return _json_string(words.group(1)) if words else None
  except Exception:  # pylint: disable=broad-except
    return None


def chunks(source, chunk_size, opener=None):
  """Cuts one `Source` into `Chunk`s of at most ``chunk_size`` records, in file order.

  ``opener(path)``, when given, opens the file as a binary file object (e.g.
  Beam's ``FileSystems.open``, for files on any file system it knows); by
  default the file is opened here, an npy file memory-mapped.

  Yields:
    `Chunk`.

  Raises:
    SourceError: a truncated or corrupt file (after the chunks read before the
      damage were yielded), an npz without the sketch-rnn keys, an npy of the
      wrong shape.
  """
  return _CHUNKERS[source.format](source, chunk_size, opener)


def chunk_stream(found, chunk_size, opener=None):
  """The `Chunk`s of the `Source`s ``found``, in order; a file that fails ends in its `SourceError`, yielded."""
  for source in found:
    try:
      yield from chunks(source, chunk_size, opener)
    except SourceError as e:
      yield e


def _ndjson_chunks(source, chunk_size, opener):
  path = source.path
  lines, first = [], 1  # Lines read but not yielded yet, and the number of the first of them.
  try:
    with _open_text_lines(path, opener) as f:
      if not path.lower().endswith(".gz"):  # Plain: a whole chunk of lines at a time.
        for block in iter(lambda: list(itertools.islice(f, chunk_size)), []):
          yield Chunk(source, first, block)
          first += len(block)
      else:  # Gzip: a line at a time, so that the lines before damage in the stream are kept.
        for line in f:
          lines.append(line)
          if len(lines) == chunk_size:
            yield Chunk(source, first, lines)
            lines, first = [], first + chunk_size
  except (EOFError, zlib.error, OSError) as e:
    if isinstance(e, gzip.BadGzipFile) and first == 1 and not lines:  # Damaged from its first bytes.
      raise SourceError("not_gzip", path, 0, f"not a gzip file, though its name ends in .gz: {e}") from None
    if lines:
      yield Chunk(source, first, lines)
    last = first + len(lines) - 1
    raise SourceError("truncated_file", path, last + 1, f"unreadable after line {last}: {e}") from None
  if lines:
    yield Chunk(source, first, lines)


def _npz_chunks(source, chunk_size, opener):
  path = source.path
  try:
    # sketch-rnn stores object arrays of int16 [n, 3]: they need pickle.
    data = np.load(opener(path) if opener else path, allow_pickle=True, encoding="latin1")
    missing = [k for k in NPZ_SPLITS_REQUIRED if k not in data.files]
  except Exception as e:  # pylint: disable=broad-except
    raise SourceError("bad_npz", path, 0, f"not a readable npz: {e}") from None
  if missing:
    raise SourceError("bad_npz", path, 0,
                      f"missing sketch-rnn keys {missing} (found {data.files}; expected train, valid, test)")
  for key in NPZ_SPLITS_REQUIRED:
    arrays = data[key]
    for start in range(0, len(arrays), chunk_size):
      yield Chunk(source, start, list(arrays[start:start + chunk_size]), key)


def _npy_chunks(source, chunk_size, opener):
  path = source.path
  try:
    images = np.load(opener(path)) if opener else np.load(path, mmap_mode="r")
  except Exception as e:  # pylint: disable=broad-except
    raise SourceError("bad_npy", path, 0, f"not a readable npy: {e}") from None
  if images.ndim != 2 or images.shape[1] != 784 or images.dtype != np.uint8:
    raise SourceError("bad_npy", path, 0,
                      f"expected numpy_bitmap uint8 [N, 784], found {images.dtype} {list(images.shape)}")
  for start in range(0, len(images), chunk_size):
    yield Chunk(source, start, np.array(images[start:start + chunk_size]))  # Copied out of the memory map.


_CHUNKERS = {"ndjson": _ndjson_chunks, "npz": _npz_chunks, "npy": _npy_chunks}
