"""The TFRecord schema, defined once, and the layout of a records directory.

The writer (`serialize`), the readers (`parse_spec`, `parse`, TFDS metadata via
`tfds_features`) and the exporter all derive from `FIELDS` below.

A records directory holds (see tfrecords/README.md):
  quickdraw-{train,eval,test}.tfrecord-XXXXX-of-YYYYY   the shards
  classes.txt                                         one class name a line
  stats.json                                          counts, lengths, skips
  dataset_info.json, features.json                    tensorflow-datasets metadata
"""

import dataclasses
import errno
import functools
import json
import os
import re
import tempfile
import unicodedata

import numpy as np

from quickdraw_tf import cli
from quickdraw_tf import files

DATASET_NAME = "quickdraw"
SPLITS = ("train", "eval", "test")
FILE_FORMAT = "tfrecord"
FILENAME_TEMPLATE = "{DATASET}-{SPLIT}.{FILEFORMAT}-{SHARD_X_OF_Y}"
CLASSES_FILE = "classes.txt"
STATS_FILE = "stats.json"
# Written last by make_records: a directory without it is not complete.
COMPLETE_MARKER = "dataset_info.json"
# What make_records writes besides the shards (tensorflow-datasets adds the labels file).
METADATA_FILES = (CLASSES_FILE, STATS_FILE, "features.json", "class_index.labels.txt", COMPLETE_MARKER)
# The exact name of a shard, for directories written before stats.json listed its files.
SHARD_NAME_RE = re.compile(rf"{DATASET_NAME}-({'|'.join(SPLITS)})\.{FILE_FORMAT}-\d{{5}}-of-\d{{5}}")


class RecordsError(cli.Error, ValueError):
  """Records that cannot be read or cannot feed the requested model; the message says what to run."""


@dataclasses.dataclass(frozen=True)
class Field:
  """One feature of the tf.Example schema: its name, dtype, shape (None: variable length) and meaning."""
  name: str
  dtype: str  # "float32", "int64" or "string"
  shape: tuple  # None for the variable leading dimension of ink
  doc: str


FIELDS = (
    Field("ink", "float32", (None, 3),
          "tutorial ink, flattened [n, 3]: bbox-normalised deltas (first point dropped), stroke-end bit"),
    Field("shape", "int64", (2,), "shape of ink: [n, 3]"),
    Field("class_index", "int64", (), "index into classes.txt"),
    Field("word", "string", (), "class name"),
    Field("key_id", "string", (), "QuickDraw key_id, empty when the source has none"),
    Field("countrycode", "string", (), "two-letter country code, empty when unknown"),
    Field("recognized", "int64", (), "1 or 0 as Google's game judged it, -1 when unknown"),
    Field("bbox", "float32", (4,), "x_min, y_min, x_scale, y_scale used to normalise ink"),
    Field("origin", "float32", (3,), "the dropped first point: absolute x, y, stroke-end bit"),
)
IMAGE_FIELD = "image"  # optional PNG, uint8 [size, size, 1], 0 = background, 255 = ink


# --- Writing: tf.train.Example's protobuf wire format, encoded directly ---------

_ONE_BYTE = tuple(bytes([i]) for i in range(128))


def _varint(value):
  """Protobuf base-128 varint of an int64 (a negative one as 10 bytes of two's complement)."""
  if 0 <= value < 128:
    return _ONE_BYTE[value]
  value = int(value) & 0xFFFFFFFFFFFFFFFF
  out = bytearray()
  while value > 0x7F:
    out.append((value & 0x7F) | 0x80)
    value >>= 7
  out.append(value)
  return bytes(out)


def _field(tag, payload):
  """One length-delimited protobuf field: tag byte, length varint, payload."""
  return tag + _varint(len(payload)) + payload


# Tags: Example.features, Features.feature (map entries), map entry key and
# value, Feature's oneof (bytes_list, float_list, int64_list), and the value
# list inside BytesList / FloatList / Int64List (all field 1).
_FEATURES = _ENTRY = _KEY = _LIST_VALUE = b"\x0a"
_VALUE = b"\x12"
_KIND = {"string": b"\x0a", "float32": b"\x12", "int64": b"\x1a"}


def _entry(key, dtype, payload):
  """A Features map entry from the packed (or, for strings, the one) value's bytes."""
  value_list = _field(_LIST_VALUE, payload) if payload or dtype == "string" else b""
  return _field(_ENTRY, key + _field(_VALUE, _field(_KIND[dtype], value_list)))


def _payload(dtype, value):
  if dtype == "string":
    return value if isinstance(value, bytes) else value.encode("utf-8")
  if dtype == "float32":
    return np.asarray(value, "<f4").tobytes()
  return b"".join(_varint(v) for v in np.ravel(value).tolist())


@functools.lru_cache(maxsize=65536)
def _entry_prefix(key, dtype, length):
  """The bytes of a map entry before its payload: they depend only on the payload's length."""
  entry = _entry(key, dtype, bytes(length))
  return entry[:len(entry) - length]


@functools.lru_cache(maxsize=4096)
def _cached_entry(key, dtype, value):
  """`_entry` of a hashable value: class, word, country and shape repeat across drawings."""
  return _entry(key, dtype, _payload(dtype, value))


# Values unique to each drawing: not worth memoising.
_UNIQUE = ("key_id", IMAGE_FIELD)
# Map entries in key order, as deterministic serialization sorts them: (name, dtype, key bytes).
_ENTRIES = tuple((name, dtype, _field(_KEY, name.encode()))
                 for name, dtype in sorted([(f.name, f.dtype) for f in FIELDS] + [(IMAGE_FIELD, "string")]))


def serialize(values, image_png=None):
  """Encodes one drawing as a serialized ``tf.train.Example``.

  Writes protobuf's wire format directly: the very bytes that
  ``tf.train.Example.SerializeToString(deterministic=True)`` gives for the same
  features (map entries sorted by name, number lists packed), at a fraction of
  the cost of building the message field by field. Entries of repeating values
  (class, word, country, shape) are memoised.

  Args:
    values: dict with every name of `FIELDS`: numpy arrays or sequences for
      shaped fields (``ink`` float32 ``[n, 3]``), Python ``int`` for int64
      scalars, ``str`` for strings.
    image_png: optional PNG bytes for the ``image`` feature.

  Returns:
    bytes.
  """
  entries = []
  for name, dtype, key in _ENTRIES:
    value = image_png if name == IMAGE_FIELD else values[name]
    if value is None:
      continue
    if isinstance(value, np.ndarray) or name in _UNIQUE:
      payload = _payload(dtype, value)
      entries.append(_entry_prefix(key, dtype, len(payload)) + payload)
    else:
      entries.append(_cached_entry(key, dtype, tuple(value) if isinstance(value, (list, tuple)) else value))
  return _field(_FEATURES, b"".join(entries))


def parse_spec(with_image=False):
  """Feature spec for ``tf.io.parse_example`` / ``parse_single_example``.

  ``ink`` parses as a flat float32 list; `parse` reshapes it to ``[n, 3]``.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  dtypes = {"float32": tf.float32, "int64": tf.int64, "string": tf.string}
  spec = {}
  for field in FIELDS:
    if field.shape and field.shape[0] is None:
      spec[field.name] = tf.io.RaggedFeature(dtypes[field.dtype])
    else:
      spec[field.name] = tf.io.FixedLenFeature(field.shape, dtypes[field.dtype])
  if with_image:
    spec[IMAGE_FIELD] = tf.io.FixedLenFeature((), tf.string)
  return spec


def parse(serialized, with_image=False):
  """Decodes one serialized example.

  Returns:
    dict of tensors: ``ink`` float32 ``[n, 3]``, ``shape`` int64 ``[2]``,
    ``class_index`` int64 ``[]``, ``word``/``key_id``/``countrycode`` string
    ``[]``, ``recognized`` int64 ``[]``, ``bbox`` float32 ``[4]``, ``origin``
    float32 ``[3]`` and, with ``with_image``, ``image`` uint8 ``[s, s, 1]``.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  example = tf.io.parse_single_example(serialized, parse_spec(with_image))
  example["ink"] = tf.reshape(example["ink"], [-1, 3])
  if with_image:
    example[IMAGE_FIELD] = tf.io.decode_png(example[IMAGE_FIELD], channels=1)
  return example


def tfds_features(class_names, image_size=0):
  """The same schema as a ``tfds.features.FeaturesDict``, for the TFDS metadata."""
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  features = {}
  for field in FIELDS:
    if field.name == "class_index":
      features[field.name] = tfds.features.ClassLabel(names=list(class_names))
    elif field.dtype == "string":
      features[field.name] = tfds.features.Text()
    else:
      features[field.name] = tfds.features.Tensor(shape=field.shape, dtype=np.dtype(field.dtype))
  if image_size:
    features[IMAGE_FIELD] = tfds.features.Image(shape=(image_size, image_size, 1), encoding_format="png")
  return tfds.features.FeaturesDict(features)


def shard_path(records_dir, split, index, num_shards):
  """Path of one shard, in TFDS's default file naming."""
  return os.path.join(records_dir, f"{DATASET_NAME}-{split}.{FILE_FORMAT}-{index:05d}-of-{num_shards:05d}")


def renumber_shards(records_dir, split, shards, rename, remove):
  """Gives the non-empty written shards of one split their final names, renumbered; removes the empty ones.

  The one naming step of both writers (make_records' local one and the Beam pipeline's).

  Args:
    records_dir: where the final shards go (`shard_path`).
    split: str, one of `SPLITS`.
    shards: (path, examples) of each written shard, in their order.
    rename: (source, destination) -> None, replacing any destination.
    remove: path -> None.

  Returns:
    list of int, examples per final shard.
  """
  kept = [(path, n) for path, n in shards if n]
  for path, n in shards:
    if not n:
      remove(path)
  for index, (path, _) in enumerate(kept):
    final = shard_path(records_dir, split, index, len(kept))
    if path != final:  # An object store's rename is a copy and a delete: onto itself it would delete the shard.
      rename(path, final)
  return [n for _, n in kept]


def shard_paths(records_dir, split):
  """Sorted shard paths of one split of a records directory (may be empty).

  The shards stats.json lists: other files of the directory (the user's own,
  whatever their names) are never read as shards.
  """
  listed = _listed_shards(records_dir)
  if listed is None:  # No stats.json yet, or one from before it listed the shards.
    listed = [os.path.basename(p) for p in _gfile().glob(os.path.join(records_dir, f"{DATASET_NAME}-{split}.*"))]
  return sorted(os.path.join(records_dir, name) for name in listed
                if SHARD_NAME_RE.fullmatch(name) and SHARD_NAME_RE.fullmatch(name).group(1) == split)


def _listed_shards(records_dir):
  """Names of the shards stats.json lists, or None when it lists none."""
  try:
    lengths = read_stats(records_dir)["shard_lengths"]
    return [os.path.basename(shard_path(records_dir, split, i, len(n))) for split, n in lengths.items()
            for i in range(len(n))]
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return None


def owned_files(records_dir):
  """Names of the files make_records wrote in ``records_dir``: what its next run may replace.

  The shards stats.json lists (for a directory written before it listed
  them: the names of the exact shard pattern) and the metadata files. Every
  other file is the user's and is left alone.
  """
  names = set(files.for_path(records_dir).listdir(records_dir))
  shards = _listed_shards(records_dir)
  if shards is None:
    shards = [n for n in names if SHARD_NAME_RE.fullmatch(n)]
  return sorted((set(shards) | set(METADATA_FILES)) & names)


def class_name_problem(name):
  """Why ``name`` cannot be a class name, or None when it can.

  A name is one line of classes.txt and one item of ``--categories``: a
  non-empty string without control characters, line or paragraph separators,
  or leading or trailing whitespace (which ``--categories`` would strip).
  """
  if not isinstance(name, str):
    return f"class name {name!r} is not a string"
  if not name.strip():
    return f"class name {name!r} is empty or blank"
  if name != name.strip():
    return f"class name {name!r} has leading or trailing whitespace"
  bad = [c for c in name if unicodedata.category(c) in ("Cc", "Zl", "Zp")]
  if bad:
    return f"class name {name!r} holds control or line-break character(s) {bad!r}"
  return None


def write_classes(records_dir, class_names):
  """Writes classes.txt: one name a line, in class_index order (names checked by `class_name_problem`)."""
  for name in class_names:
    problem = class_name_problem(name)
    if problem:
      raise ValueError(problem)
  write_text(os.path.join(records_dir, CLASSES_FILE), "".join(name + "\n" for name in class_names))


def write_text(path, text):
  """Writes ``text`` (str) to ``path`` as UTF-8, line ends as given; a URL through ``tf.io.gfile``."""
  with files.for_path(path).open(path, "wb") as f:
    f.write(text.encode("utf-8"))


def read_classes(records_dir):
  """Class names of a records directory, in class_index order: exactly what `write_classes` wrote.

  Raises:
    RecordsError: a line that is no valid class name (a blank line would
      shift every later index), naming the file and line.
  """
  path = os.path.join(records_dir, CLASSES_FILE)
  lines = _read_bytes(path).decode("utf-8").split("\n")  # Split at \n only: a lone \r does not end a line.
  if lines[-1] == "":
    lines.pop()
  for number, name in enumerate(lines, 1):
    problem = class_name_problem(name)
    if problem:
      raise RecordsError(f"{path}:{number}: {problem}; rewrite the records with python -m quickdraw_tf.make_records")
  return lines


def read_stats(records_dir):
  """stats.json of a records directory, as a dict."""
  return json.loads(_read_bytes(os.path.join(records_dir, STATS_FILE)).decode("utf-8"))


def is_complete(records_dir):
  """True when make_records finished writing this directory."""
  return _gfile().exists(os.path.join(records_dir, COMPLETE_MARKER))


def _gfile():
  """`tf.io.gfile`: the readers above take a directory on any file system TensorFlow knows (gs://, s3://, ...).

  Imported when first needed, so that make_records' converter processes, which
  import this module, do not pay for TensorFlow.
  """
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  return tf.io.gfile


def _read_bytes(path):
  """A file's bytes through `tf.io.gfile`; its errors as Python's (FileNotFoundError, OSError), as `open` raises them."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  try:
    with tf.io.gfile.GFile(path, "rb") as f:
      return f.read()
  except tf.errors.NotFoundError:
    raise FileNotFoundError(errno.ENOENT, os.strerror(errno.ENOENT), path) from None
  except tf.errors.OpError as e:
    raise OSError(f"{path}: {e.message}") from None


def _shard_bytes(records_dir, shard_lengths):
  """split -> bytes of its shards (`shard_path` names) in ``records_dir``."""
  size = files.for_path(records_dir).size
  return {split: sum(size(shard_path(records_dir, split, i, len(lengths))) for i in range(len(lengths)))
          for split, lengths in shard_lengths.items()}


def write_tfds_metadata(records_dir, class_names, image_size, shard_lengths, description="", num_bytes=None):
  """Writes dataset_info.json and features.json so that TFDS can load the directory.

  Args:
    records_dir: the directory holding the shards (local, or a URL).
    class_names: list of str.
    image_size: 0, or the side of the stored images.
    shard_lengths: dict split -> list of example counts per shard.
    description: free text for the dataset card.
    num_bytes: dict split -> bytes of its shards; None: measured in ``records_dir``.
  """
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  if cli.is_url(records_dir):
    # TFDS writes through etils' epath, which knows some schemes only (gs://, s3://): written here, then copied.
    with tempfile.TemporaryDirectory() as local:
      shards = {os.path.basename(shard_path(local, split, i, len(n))) for split, n in shard_lengths.items()
                for i in range(len(n))}
      for name in shards:  # TFDS takes the file naming from the shards' names: empty stand-ins.
        open(os.path.join(local, name), "wb").close()  # pylint: disable=consider-using-with
      write_tfds_metadata(local, class_names, image_size, shard_lengths, description,
                          num_bytes=_shard_bytes(records_dir, shard_lengths))
      for name in set(os.listdir(local)) - shards:
        _gfile().copy(os.path.join(local, name), os.path.join(records_dir, name), overwrite=True)
    return
  template = tfds.core.ShardedFileTemplate(
      data_dir=records_dir, template=FILENAME_TEMPLATE, dataset_name=DATASET_NAME, filetype_suffix=FILE_FORMAT)
  num_bytes = num_bytes or _shard_bytes(records_dir, shard_lengths)
  split_infos = [tfds.core.SplitInfo(name=split, shard_lengths=lengths, num_bytes=num_bytes[split],
                                     filename_template=template)
                 for split, lengths in shard_lengths.items() if lengths]
  tfds.folder_dataset.write_metadata(
      data_dir=records_dir,
      features=tfds_features(class_names, image_size),
      split_infos=split_infos,
      filename_template=template,
      check_data=False,
      description=description or "Quick, Draw! drawings (Google, CC BY 4.0) written by quickdraw_tf.make_records.",
      homepage="https://github.com/googlecreativelab/quickdraw-dataset",
  )
