"""make_records end to end: formats, splits, duplicates, bad input, atomic output, TFDS."""

import glob
import gzip
import io
import json
import os
import re
import shutil
import signal
import subprocess
import sys
import threading

import numpy as np
import pytest
import tensorflow as tf

from quickdraw_tf import files
from quickdraw_tf import make_records
from quickdraw_tf.drawings import ink
from quickdraw_tf.drawings import raster
from quickdraw_tf.pipelines import conversion
from quickdraw_tf.pipelines import dedup
from quickdraw_tf.pipelines import journal
from quickdraw_tf.pipelines import plan
from quickdraw_tf.pipelines import records

WORDS = ("cat", "airplane", "bicycle")


def _write_lines(path, lines):
  with open(path, "w") as f:
    f.write("".join(line + "\n" for line in lines))


def _read_split(records_dir, split, with_image=False):
  paths = records.shard_paths(records_dir, split)
  return [{k: v.numpy() for k, v in records.parse(r, with_image).items()} for r in tf.data.TFRecordDataset(paths)]


def _convert(inputs, output_dir, **kwargs):
  kwargs.setdefault("workers", 1)
  kwargs.setdefault("progress", False)
  return make_records.convert(inputs, str(output_dir), **kwargs)


def _cli(*args, **kwargs):
  return subprocess.run([sys.executable, "-m", "quickdraw_tf.make_records", "--progress=false", *args],
                        capture_output=True, text=True, timeout=300, **kwargs)


@pytest.fixture(scope="module")
def real_inputs(data_dir, tmp_path_factory):
  """Real drawings of three words: Google simplified (lamnguyen) and raw (exupery)."""
  root = tmp_path_factory.mktemp("real")
  for source in ("simplified_lamnguyen", "raw_exupery"):
    os.makedirs(root / source)
    for word in WORDS:
      shutil.copy(os.path.join(data_dir, "strokes", source, f"{word}.ndjson"), root / source)
  return root


def test_round_trip_exact_values(tmp_path):
  """Hand-written drawing -> records -> the exact ink, metadata and geometry back."""
  _write_lines(tmp_path / "cat.ndjson", [json.dumps({
      "word": "cat", "key_id": "42", "countrycode": "FR", "recognized": True,
      "drawing": [[[0, 10], [0, 20]], [[5], [5]]]})])
  stats = _convert([str(tmp_path / "cat.ndjson")], tmp_path / "out", eval_fraction=0, test_fraction=0)
  assert stats["totals"] == {"train": 1, "eval": 0, "test": 0}
  (example,) = _read_split(tmp_path / "out", "train")
  np.testing.assert_allclose(example["ink"], [[1, 1, 1], [-0.5, -0.75, 1]])
  np.testing.assert_array_equal(example["shape"], [2, 3])
  assert (example["word"], example["key_id"], example["countrycode"]) == (b"cat", b"42", b"FR")
  assert example["recognized"] == 1 and example["class_index"] == 0
  np.testing.assert_allclose(ink.decode(example["ink"], example["bbox"], example["origin"]),
                             [[0, 0, 0], [10, 20, 1], [5, 5, 1]], atol=1e-5)
  assert records.read_classes(tmp_path / "out") == ["cat"]


def test_real_drawings_round_trip_and_tfds(real_inputs, tmp_path):
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  out = tmp_path / "out"
  stats = _convert([str(real_inputs / "simplified_lamnguyen")], out, image_size=28)
  assert sum(stats["totals"].values()) == 75 and set(stats["classes"]) == set(WORDS)
  assert set(stats["ink_length_percentiles"]) == {"p50", "p90", "p95", "p99", "max"}
  by_key = {}
  for word in WORDS:
    with open(real_inputs / "simplified_lamnguyen" / f"{word}.ndjson") as f:
      for line in f:
        record = json.loads(line)
        by_key[record["key_id"]] = record
  seen = 0
  for split in records.SPLITS:
    for example in _read_split(out, split, with_image=True):
      record = by_key[example["key_id"].decode()]
      points = ink.strokes_to_points(record["drawing"])
      np.testing.assert_allclose(example["ink"], ink.encode(points)[0])
      np.testing.assert_array_equal(example["image"][..., 0], raster.render(points, 28))
      assert stats["classes"][example["class_index"]] == record["word"] == example["word"].decode()
      seen += 1
  assert seen == 75
  # tensorflow-datasets reads the same directory with its own metadata.
  builder = tfds.builder_from_directory(str(out))
  assert builder.info.features["class_index"].names == stats["classes"]
  tfds_examples = list(builder.as_dataset(split="train").as_numpy_iterator())
  assert len(tfds_examples) == stats["totals"]["train"]
  assert tfds_examples[0]["ink"].shape[1] == 3 and tfds_examples[0]["image"].shape == (28, 28, 1)


def test_split_determinism_across_workers_and_file_order(real_inputs, tmp_path):
  files = sorted(glob.glob(str(real_inputs / "*" / "*.ndjson")))
  a = _convert(files, tmp_path / "a", workers=1)
  b = _convert(list(reversed(files)), tmp_path / "b", workers=2)
  names = sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "a" / "quickdraw-*")))
  assert names == sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "b" / "quickdraw-*")))
  for name in names:  # The very same bytes, shard by shard.
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()
  assert a["totals"] == b["totals"]
  # And a drawing's split does not depend on which other categories are converted.
  c = _convert([str(real_inputs / "simplified_lamnguyen" / "cat.ndjson")], tmp_path / "c")
  splits_all = {e["key_id"]: s for s in records.SPLITS for e in _read_split(tmp_path / "a", s) if e["word"] == b"cat"}
  splits_cat = {e["key_id"]: s for s in records.SPLITS for e in _read_split(tmp_path / "c", s)}
  assert splits_cat and all(splits_all[k] == s for k, s in splits_cat.items())
  assert sum(c["totals"].values()) == 25


@pytest.mark.parametrize("flush_at", [dedup.HashSet.FLUSH_AT, 8])
def test_duplicates_written_once(real_inputs, tmp_path, monkeypatch, flush_at):
  """raw_exupery and simplified_lamnguyen share key_ids; a copied file repeats geometry.

  With a tiny flush size the de-duplication index moves hashes into its sorted
  runs every few drawings, and must find them there as well.
  """
  monkeypatch.setattr(dedup.HashSet, "FLUSH_AT", flush_at)
  simplified = real_inputs / "simplified_lamnguyen" / "cat.ndjson"
  no_keys = tmp_path / "nokeys"
  os.makedirs(no_keys)
  with open(simplified) as f:  # Same drawings without key_id: caught by geometry.
    _write_lines(no_keys / "cat.ndjson", [json.dumps({"word": "cat", "drawing": json.loads(l)["drawing"]}) for l in f])
  raw = real_inputs / "raw_exupery" / "cat.ndjson"
  with open(raw) as f:
    raw_keys = {json.loads(line)["key_id"] for line in f}
  with open(simplified) as f:
    shared = len(raw_keys & {json.loads(line)["key_id"] for line in f})
  stats = _convert([str(simplified), str(raw), str(no_keys)], tmp_path / "out")
  assert shared > 0
  assert stats["skipped"]["duplicate"] == shared + 25
  assert sum(stats["totals"].values()) == len(raw_keys) + 25 - shared
  key_ids = [e["key_id"] for s in records.SPLITS for e in _read_split(tmp_path / "out", s)]
  assert len(key_ids) == len(set(key_ids))


def test_npz_keeps_its_splits(data_dir, tmp_path):
  """A sketch-rnn .npz built from real drawings: its train/valid/test become train/eval/test."""
  with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", "cat.ndjson")) as f:
    drawings = [ink.points_to_stroke3(ink.strokes_to_points(json.loads(line)["drawing"])).astype(np.int16)
                for line in f]

  def objects(arrays):
    out = np.empty(len(arrays), dtype=object)
    out[:] = arrays
    return out

  np.savez(tmp_path / "cat.npz", train=objects(drawings[:15]), valid=objects(drawings[15:20]),
           test=objects(drawings[20:]))
  stats = _convert([str(tmp_path / "cat.npz")], tmp_path / "out")
  assert stats["totals"] == {"train": 15, "eval": 5, "test": 5}
  (first,) = [e for e in _read_split(tmp_path / "out", "eval")][:1]
  assert first["word"] == b"cat" and first["ink"].shape[1] == 3


def test_numpy_bitmap_gives_image_only_records(data_dir, tmp_path):
  bitmaps = np.load(os.path.join(data_dir, "bitmaps28", "numpy_bitmap_prefix", "snowflake.npy"))[:50]
  np.save(tmp_path / "snowflake.npy", bitmaps)
  stats = _convert([str(tmp_path / "snowflake.npy")], tmp_path / "out")
  assert stats["has_ink"] is False and stats["image_size"] == 28 and sum(stats["totals"].values()) == 50
  images = {e["image"].tobytes() for s in records.SPLITS for e in _read_split(tmp_path / "out", s, True)}
  assert images == {row.reshape(28, 28, 1).tobytes() for row in bitmaps}
  with pytest.raises(make_records.MakeRecordsError, match="cannot share"):
    _convert([str(tmp_path / "snowflake.npy"), os.path.join(data_dir, "strokes", "simplified_lamnguyen",
                                                            "cat.ndjson")], tmp_path / "mixed")


# --- Bad input ---------------------------------------------------------------

GOOD = json.dumps({"word": "cat", "key_id": "1", "drawing": [[[0, 10, 20], [0, 5, 0]]]})
BAD_LINES = [
    ("malformed_json", '{"word": "cat", "drawing": [[[0, 1], [0, 1]]'),
    ("missing_drawing", json.dumps({"word": "cat", "key_id": "2"})),
    ("empty_drawing", json.dumps({"word": "cat", "key_id": "3", "drawing": []})),
    ("mismatched_lengths", json.dumps({"word": "cat", "key_id": "4", "drawing": [[[0, 1, 2], [0, 1]]]})),
    ("non_finite", '{"word": "cat", "key_id": "5", "drawing": [[[0, NaN], [0, 1]]]}'),
    ("non_finite", '{"word": "cat", "key_id": "6", "drawing": [[[0, Infinity], [0, 1]]]}'),
    ("unknown_category", json.dumps({"word": "dog", "key_id": "7", "drawing": [[[0, 1], [0, 1]]]})),
    ("too_few_points", json.dumps({"word": "cat", "key_id": "8", "drawing": [[[4], [4]]]})),
    # A 400-digit integer: OverflowError in numpy before it was a skip.
    ("non_finite", '{"word": "cat", "key_id": "9", "drawing": [[[0, 1%s], [0, 1]]]}' % ("0" * 400)),
    # Finite in float32, but the extent overflows: inf bbox scale and NaN ink before.
    ("non_finite", json.dumps({"word": "cat", "key_id": "10", "drawing": [[[-3e38, 3e38], [0, 1]]]})),
    ("bad_stroke", json.dumps({"word": "cat", "key_id": "11", "drawing": [[[0, True], [0, 1]]]})),
    ("bad_stroke", json.dumps({"word": "cat", "key_id": "12", "drawing": [[["0", "7"], [0, 1]]]})),
    # A bool among the coordinates of a line whose `recognized` is a bool too.
    ("bad_stroke", json.dumps({"word": "cat", "key_id": "19", "recognized": True, "drawing": [[[0, 19], [0, False]]]})),
    ("bad_word", json.dumps({"word": ["cat"], "key_id": "13", "drawing": [[[0, 13], [0, 1]]]})),  # unhashable
    ("bad_word", json.dumps({"word": "", "key_id": "14", "drawing": [[[0, 14], [0, 1]]]})),
    ("bad_word", json.dumps({"word": "  ", "key_id": "15", "drawing": [[[0, 15], [0, 1]]]})),
    ("bad_word", json.dumps({"word": "c\nat", "key_id": "16", "drawing": [[[0, 16], [0, 1]]]})),
    ("bad_word", json.dumps({"word": "c\rat", "key_id": "17", "drawing": [[[0, 17], [0, 1]]]})),
]


@pytest.fixture
def bad_inputs(tmp_path):
  root = tmp_path / "bad"
  os.makedirs(root)
  _write_lines(root / "cat.ndjson", [GOOD] + [line for _, line in BAD_LINES])
  # A gzip file cut short: the lines before the cut are kept.
  data = gzip.compress(("\n".join(json.dumps({"word": "cat", "key_id": f"g{i}", "drawing": [[[0, i + 1], [0, 1]]]})
                                  for i in range(2000)) + "\n").encode())
  os.makedirs(tmp_path / "gz")
  (tmp_path / "gz" / "cat.ndjson.gz").write_bytes(data[:len(data) // 2])
  np.savez(root / "cat.npz", training=np.zeros(3))  # Not sketch-rnn keys.
  os.makedirs(tmp_path / "empty_dir")
  (tmp_path / "empty_dir" / "notes.txt").write_text("nothing here")
  return root, tmp_path / "empty_dir", tmp_path / "gz" / "cat.ndjson.gz"


def test_bad_input_is_skipped_and_counted(bad_inputs, tmp_path):
  root, empty_dir, _ = bad_inputs
  stats = _convert([str(root), str(empty_dir)], tmp_path / "out", categories=["cat"])
  skipped = stats["skipped"]
  expected = {}
  for reason, _ in BAD_LINES:
    expected[reason] = expected.get(reason, 0) + 1
  for reason, count in expected.items():
    assert skipped[reason] == count, reason
  assert skipped["bad_npz"] == 1 and skipped["no_usable_file"] == 1
  assert sum(stats["totals"].values()) == 1  # The one good line.
  # The first reports name file and line.
  first = stats["skipped_examples"][0]
  assert first["file"].endswith("cat.ndjson") or first["file"].endswith("empty_dir")
  lines = {e["reason"]: e["line"] for e in stats["skipped_examples"] if e["file"].endswith("cat.ndjson")}
  assert lines["malformed_json"] == 2 and lines["missing_drawing"] == 3 and lines["unknown_category"] == 8


def test_strict_stops_at_first_bad_record_with_file_and_line(bad_inputs, tmp_path):
  root, _, _ = bad_inputs
  result = _cli(f"--input={root / 'cat.ndjson'}", f"--output_dir={tmp_path / 'out'}", "--strict", "--workers=1",
                "--categories=cat")
  assert result.returncode == 1
  assert f"{root / 'cat.ndjson'}:2" in result.stderr and "malformed_json" in result.stderr
  assert not glob.glob(str(tmp_path / "out" / "quickdraw-*")) and not records.is_complete(tmp_path / "out")
  assert not glob.glob(str(tmp_path / "out" / ".partial-*"))


STRICT_CASES = [(reason, line, number) for number, (reason, line) in enumerate(BAD_LINES, 2)]


@pytest.mark.parametrize("reason, line, number", STRICT_CASES, ids=[f"{r}-{n}" for r, _, n in STRICT_CASES])
def test_strict_names_file_and_line_for_every_bad_record(reason, line, number, tmp_path):
  """With --strict each kind of bad line alone is an error that names its file, line and reason."""
  path = tmp_path / "cat.ndjson"
  _write_lines(path, [GOOD] * (number - 1) + [line, GOOD])
  with pytest.raises(make_records.MakeRecordsError, match=f"{re.escape(str(path))}:{number}: .*\\[{reason}\\]"):
    _convert([str(path)], tmp_path / "out", categories=["cat"], strict=True)
  assert not glob.glob(str(tmp_path / "out" / "quickdraw-*")) and not records.is_complete(tmp_path / "out")


def test_strict_stops_at_bad_files(bad_inputs, tmp_path):
  root, empty_dir, truncated = bad_inputs
  for inputs, pattern in (([str(root / "cat.npz")], r"cat\.npz: missing sketch-rnn keys .*\[bad_npz\]"),
                          ([str(empty_dir), str(truncated)], r"empty_dir: no usable file .*\[no_usable_file\]"),
                          ([str(truncated)], r"cat\.ndjson\.gz:\d+: unreadable .*\[truncated_file\]")):
    with pytest.raises(make_records.MakeRecordsError, match=pattern):
      _convert(inputs, tmp_path / "out", strict=True)
    assert not records.is_complete(tmp_path / "out")


def test_gzip_and_plain_give_the_same_records(real_inputs, tmp_path):
  plain = real_inputs / "raw_exupery" / "bicycle.ndjson"
  os.makedirs(tmp_path / "gz")
  (tmp_path / "gz" / "bicycle.ndjson.gz").write_bytes(gzip.compress(plain.read_bytes()))
  a = _convert([str(plain)], tmp_path / "a")
  b = _convert([str(tmp_path / "gz")], tmp_path / "b", workers=2)
  assert a["totals"] == b["totals"] and sum(a["totals"].values()) > 20
  for name in sorted(os.path.basename(p) for p in glob.glob(str(tmp_path / "a" / "quickdraw-*"))):
    assert (tmp_path / "a" / name).read_bytes() == (tmp_path / "b" / name).read_bytes()


def test_serialize_writes_the_bytes_of_tf_train_example(real_inputs):
  """records.serialize encodes protobuf itself: byte for byte tf.train.Example's deterministic output."""

  def reference(values, image):
    feature = {}
    for field in records.FIELDS:
      value = np.ravel(values[field.name]).tolist()
      if field.dtype == "string":
        feature[field.name] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[v.encode() for v in value]))
      elif field.dtype == "float32":
        feature[field.name] = tf.train.Feature(float_list=tf.train.FloatList(value=value))
      else:
        feature[field.name] = tf.train.Feature(int64_list=tf.train.Int64List(value=value))
    if image is not None:
      feature[records.IMAGE_FIELD] = tf.train.Feature(bytes_list=tf.train.BytesList(value=[image]))
    return tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString(deterministic=True)

  cases = []
  with open(real_inputs / "raw_exupery" / "cat.ndjson") as f:
    for i, line in enumerate(f):
      record = json.loads(line)
      encoded, bbox, origin = ink.encode(ink.strokes_to_points(record["drawing"]))
      cases.append((dict(ink=encoded, shape=encoded.shape, class_index=i * 997, word="chat noir é", key_id=record["key_id"],
                         countrycode=record["countrycode"], recognized=(-1, 0, 1)[i % 3], bbox=bbox, origin=origin),
                    os.urandom(300 * i) if i % 2 else None))
  empty = np.zeros((0, 3), np.float32)
  cases.append((dict(ink=empty, shape=empty.shape, class_index=0, word="", key_id="", countrycode="", recognized=-1,
                     bbox=np.zeros(4), origin=np.zeros(3)), b""))
  for values, image in cases:
    serialized = records.serialize(values, image)
    assert serialized == reference(values, image)
    parsed = records.parse(serialized, with_image=False)
    np.testing.assert_array_equal(parsed["ink"].numpy(), values["ink"])


def test_truncated_gzip_keeps_what_was_readable(bad_inputs, tmp_path):
  _, _, truncated = bad_inputs
  stats = _convert([str(truncated)], tmp_path / "out")
  assert stats["skipped"]["truncated_file"] == 1
  assert 100 < sum(stats["totals"].values()) < 2000  # The drawings before the cut.
  with pytest.raises(make_records.MakeRecordsError, match=r"cat\.ndjson\.gz:\d+: .*truncated_file"):
    _convert([str(truncated)], tmp_path / "strict", strict=True)
  # Named after no category: the words before the damage still give the class.
  shutil.copy(truncated, tmp_path / "drawings.ndjson.gz")
  assert _convert([str(tmp_path / "drawings.ndjson.gz")], tmp_path / "renamed")["totals"] == stats["totals"]


def test_nothing_usable_is_an_error(bad_inputs, tmp_path):
  _, empty_dir, _ = bad_inputs
  result = _cli(f"--input={empty_dir}", f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 1 and "no usable input file" in result.stderr
  result = _cli(f"--input={tmp_path / 'missing'}", f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 1 and "no usable input file" in result.stderr


def test_wrong_flags_are_rejected(tmp_path):
  result = _cli("--input=x", "--num_shards=0")
  assert result.returncode != 0 and "num_shards" in result.stderr
  result = _cli("--no_such_flag=1")
  assert result.returncode != 0 and "no_such_flag" in result.stderr
  result = _cli(f"--input={tmp_path}", "--eval_fraction=0.7", "--test_fraction=0.5")
  assert result.returncode == 1 and "eval_fraction" in result.stderr
  assert "--stored_image_size" in _cli("--help").stdout


def test_the_deprecated_image_size_flag_still_stores_images(real_inputs, tmp_path):
  source = str(real_inputs / "simplified_lamnguyen" / f"{WORDS[0]}.ndjson")
  result = _cli(f"--input={source}", f"--output_dir={tmp_path / 'out'}", "--image_size=28", "--workers=1")
  assert result.returncode == 0 and "--image_size is deprecated; it is now --stored_image_size" in result.stderr
  with open(tmp_path / "out" / records.STATS_FILE) as f:
    assert json.load(f)["image_size"] == 28
  result = _cli(f"--input={source}", f"--output_dir={tmp_path / 'out2'}", "--image_size=28", "--stored_image_size=28")
  assert result.returncode == 1 and "give --stored_image_size only" in result.stderr


def test_categories_file_orders_classes(real_inputs, tmp_path):
  (tmp_path / "classes.txt").write_text("bicycle\ncat\n")
  stats = _convert([str(real_inputs / "simplified_lamnguyen")], tmp_path / "out",
                   categories=plan.read_categories(str(tmp_path / "classes.txt")))
  assert stats["classes"] == ["bicycle", "cat"]
  # airplane.ndjson, not read: a file left out, not a bad record.
  assert [os.path.basename(p) for p in stats["files_left_out"]] == ["airplane.ndjson"]
  assert stats["skipped"] == {} and sum(stats["totals"].values()) == 50
  result = _cli(f"--input={real_inputs / 'simplified_lamnguyen'}", f"--output_dir={tmp_path / 'cli'}",
                "--categories=bicycle,cat", "--workers=1")
  assert result.returncode == 0, result.stderr
  assert "left out 1 input file(s) of categories not in --categories" in result.stdout
  assert "bad records" not in result.stderr and "other_category" not in result.stdout + result.stderr


def test_max_per_class_and_max_points(real_inputs, tmp_path):
  stats = _convert([str(real_inputs / "simplified_lamnguyen")], tmp_path / "out", max_per_class=10, max_points=60)
  per_class = {w: sum(stats["counts"][s][w] for s in records.SPLITS) for w in WORDS}
  assert all(n == 10 for n in per_class.values())
  assert stats["skipped"]["too_many_points"] > 0
  assert all(len(e["ink"]) < 60 for s in records.SPLITS for e in _read_split(tmp_path / "out", s))


def _open_for_writing(fifo, process):
  """Opens a named pipe to write: returns once ``process`` has opened it to read (or has ended).

  The open blocks until a reader comes; should the process end without
  opening the pipe, a watchdog opens it so that the test fails instead of hanging.
  """
  def unblock():
    process.wait()
    try:
      os.close(os.open(fifo, os.O_RDONLY | os.O_NONBLOCK))
    except OSError:
      pass

  threading.Thread(target=unblock, daemon=True).start()
  return open(fifo, "wb", buffering=0)


def _close_pipe(writer):
  """Closes the writing end of a named pipe whose reader may be gone (killed)."""
  try:
    writer.close()
  except BrokenPipeError:
    pass


def test_interrupted_run_leaves_no_complete_looking_output(data_dir, tmp_path):
  """Interrupted mid-way, a run leaves the earlier records as they were, and nothing that looks complete.

  Its input is a named pipe that the test holds open: when the signal comes the
  run has opened its input and cannot have finished, however fast or slow the
  machine. After a SIGKILL the next run removes what the killed one left.
  """
  out = tmp_path / "out"
  _write_records(tmp_path, out, ["cat"], num_shards=1)
  before = {n: (out / n).read_bytes() for n in os.listdir(out)}
  with open(os.path.join(data_dir, "strokes", "simplified_vlandham", "horse.ndjson"), "rb") as f:
    lines = f.read()
  os.makedirs(tmp_path / "in")
  fifo = tmp_path / "in" / "horse.ndjson"
  os.mkfifo(fifo)
  for sig in (signal.SIGINT, signal.SIGKILL):
    process = subprocess.Popen([sys.executable, "-m", "quickdraw_tf.make_records", f"--input={tmp_path / 'in'}",
                                f"--output_dir={out}", "--categories=horse", "--workers=2", "--progress=false"],
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               # SIGINT as a terminal sends it: a shell starts background jobs with it ignored,
                               # and a child inherits that (a suite started with & would see no interrupt).
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    writer = _open_for_writing(fifo, process)
    try:
      assert process.poll() is None, "the run ended before it read its input"
      writer.write(lines * 3)  # Several chunks, converted while the pipe stays open.
      process.send_signal(sig)
    finally:
      # The end of the input, only now: a SIGINT that came while the run was in C
      # code and then blocked reading the pipe is acted on once the read returns
      # (a KeyboardInterrupt before the next Python line: before any output).
      _close_pipe(writer)
    process.wait(timeout=120)
    assert process.returncode != 0
    assert {n: (out / n).read_bytes() for n in os.listdir(out) if not n.startswith(".")} == before
    leftovers = [n for n in os.listdir(out) if n.startswith(".")]
    # A clean interrupt removes its temporary files; a killed run cannot, and leaves its partial directory.
    assert leftovers == ([] if sig == signal.SIGINT else [f".partial-{process.pid}"])
  _write_records(tmp_path, out, ["dog"], num_shards=1)  # The next run: the killed run's directory goes.
  assert [n for n in os.listdir(out) if n.startswith(".")] == [] and records.read_classes(out) == ["dog"]


def test_worker_failure_stops_the_run_cleanly(real_inputs, tmp_path, monkeypatch):
  """A bug in a converter process ends the run with its traceback; nothing is left behind."""

  def broken(chunk):
    raise ZeroDivisionError(f"broken on {chunk.source.path}")

  monkeypatch.setattr(conversion, "_convert_chunk", broken)  # Inherited by the forked workers.
  with pytest.raises(RuntimeError, match="(?s)converter process failed.*ZeroDivisionError: broken on"):
    _convert([str(real_inputs / "simplified_lamnguyen")], tmp_path / "out", workers=2)
  assert os.listdir(tmp_path / "out") == []


def test_render_matches_google_numpy_bitmap(data_dir):
  """Rows 0-24 of numpy_bitmap_prefix are the lamnguyen drawings: all 22 categories."""
  differences = []
  for path in sorted(glob.glob(os.path.join(data_dir, "bitmaps28", "numpy_bitmap_prefix", "*.npy"))):
    word = os.path.basename(path)[:-4]
    bitmaps = np.load(path, mmap_mode="r")
    with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", f"{word}.ndjson")) as f:
      for row, line in enumerate(f):
        image = raster.render(ink.strokes_to_points(json.loads(line)["drawing"]), 28)
        differences.append(np.abs(image.astype(float).ravel() - bitmaps[row]).mean())
  assert len(differences) == 22 * 25
  print(f"cairosvg render vs numpy_bitmap: mean absolute difference {np.mean(differences):.4f}")
  assert np.mean(differences) <= 0.05


def test_png_encoding_round_trip():
  image = (np.arange(28 * 28) % 256).astype(np.uint8).reshape(28, 28)
  from PIL import Image  # pylint: disable=g-import-not-at-top
  np.testing.assert_array_equal(np.asarray(Image.open(io.BytesIO(raster.encode_png(image)))), image)


# --- Names, values and output directories of issue 11 -------------------------


def _lines(*records_):
  return [json.dumps(r) for r in records_]


def test_words_that_cannot_be_class_names_are_skipped_and_classes_round_trip(tmp_path):
  """Without --categories the words found become classes: blank or multi-line ones are skipped, not written."""
  drawing = [[[0, 10, 20], [0, 5, 0]]]
  _write_lines(tmp_path / "drawings.ndjson", _lines(
      {"word": "cat", "key_id": "1", "drawing": drawing},
      {"word": "The Eiffel Tower", "key_id": "2", "drawing": [[[0, 1], [0, 1]]]},
      {"word": "", "key_id": "3", "drawing": drawing},
      {"word": " ", "key_id": "4", "drawing": drawing},
      {"word": "a\nb", "key_id": "5", "drawing": drawing},
      {"word": "dog\u2028", "key_id": "6", "drawing": drawing},
      {"key_id": "7", "drawing": [[[0, 2], [0, 2]]]}))  # No word, and the file is named after no class.
  stats = _convert([str(tmp_path / "drawings.ndjson")], tmp_path / "out")
  assert stats["classes"] == ["The Eiffel Tower", "cat"] == records.read_classes(tmp_path / "out")
  assert stats["skipped"] == {"bad_word": 4, "no_word": 1}
  messages = {e["line"]: e["message"] for e in stats["skipped_examples"]}
  assert "no 'word'" in messages[7] and "--categories" not in messages[7]
  examples = [e for s in records.SPLITS for e in _read_split(tmp_path / "out", s)]
  assert sorted(e["word"] for e in examples) == [b"The Eiffel Tower", b"cat"]
  for e in examples:  # Labels agree with classes.txt.
    assert stats["classes"][e["class_index"]].encode() == e["word"]


@pytest.mark.parametrize("text, line", [("cat\n\ndog\n", 2), ("cat\n  \n", 2), ("c\rat\ndog\n", 1)])
def test_read_classes_refuses_what_would_shift_or_split_labels(tmp_path, text, line):
  (tmp_path / records.CLASSES_FILE).write_bytes(text.encode())
  with pytest.raises(records.RecordsError, match=f"classes.txt:{line}: "):
    records.read_classes(tmp_path)


def test_classes_file_round_trips_exactly(tmp_path):
  names = ["The Eiffel Tower", "été", "a,b", "x", "庭"]
  records.write_classes(tmp_path, names)
  assert records.read_classes(tmp_path) == names
  for bad in ("", " cat", "a\nb", "a\rb", "a\x00b", ["cat"]):
    with pytest.raises(ValueError):
      records.write_classes(tmp_path, [bad])


def test_no_record_with_non_finite_values_is_written(tmp_path):
  """Huge but float32-finite coordinates in ndjson and npz: skipped as non_finite; all written values finite."""
  _write_lines(tmp_path / "cat.ndjson", [GOOD] + _lines(
      {"word": "cat", "key_id": "a", "drawing": [[[-3e38, 3e38], [0, 1]]]},
      {"word": "cat", "key_id": "b", "drawing": [[[0, 1], [-3.4e38, 3.4e38]]]},
      {"word": "cat", "key_id": "c", "drawing": [[[0, 1, 2], [-3e38, 0, 3e38], [0, 1, 2]]]}))  # raw
  stroke3 = np.empty(3, dtype=object)
  stroke3[:] = [np.array([[0, 0, 0], [3e38, 0, 0], [3e38, 0, 1]], np.float32),  # Cumulative x overflows.
                np.array([[0, 0, 0], [5, 5, 1]], np.float32), np.array([[0, 0, 0], [7, 1, 1]], np.float32)]
  np.savez(tmp_path / "dog.npz", train=stroke3, valid=stroke3[1:2], test=stroke3[2:])
  stats = _convert([str(tmp_path / "cat.ndjson"), str(tmp_path / "dog.npz")], tmp_path / "out")
  assert stats["skipped"] == {"non_finite": 4, "duplicate": 2}
  examples = [e for s in records.SPLITS for e in _read_split(tmp_path / "out", s)]
  assert len(examples) == 3
  for e in examples:
    assert np.isfinite(e["ink"]).all() and np.isfinite(e["bbox"]).all() and np.isfinite(e["origin"]).all()


def _write_records(tmp_path, out, words, num_shards):
  inputs = tmp_path / f"in_{'_'.join(words)}"
  os.makedirs(inputs, exist_ok=True)
  for w in words:
    # Each word its own geometries: a class whose drawings all repeat another's gets none, which is an error.
    _write_lines(inputs / f"{w}.ndjson", _lines(*({"word": w, "key_id": f"{w}{i}", "drawing": [[[0, i + 1], [0, ord(w[0])]]]}
                                                  for i in range(30))))
  return _convert([str(inputs)], out, num_shards=num_shards)


def test_users_files_in_the_output_dir_are_kept(tmp_path):
  """Only what make_records wrote is replaced: the user's quickdraw-* files stay, even the input itself."""
  out = tmp_path / "out"
  os.makedirs(out / "notes")
  user_files = {"quickdraw-notes.txt": "mine", "quickdraw-train.tfrecord-00000-of-00003.bak": "backup",
                "notes/quickdraw-x": "nested"}
  for name, text in user_files.items():
    (out / name).write_text(text)
  _write_lines(out / "quickdraw-cat.ndjson", [GOOD])
  stats = _convert([str(out / "quickdraw-cat.ndjson")], out, categories=["cat"])
  assert sum(stats["totals"].values()) == 1
  first = _write_records(tmp_path, out, ["cat", "dog"], num_shards=4)
  second = _write_records(tmp_path, out, ["cat"], num_shards=2)  # Fewer shards: the first run's extra ones go.
  for name, text in user_files.items():
    assert (out / name).read_text() == text
  assert (out / "quickdraw-cat.ndjson").read_text() == GOOD + "\n"
  assert first["classes"] == ["cat", "dog"] and records.read_classes(out) == ["cat"]
  shards = sorted(os.path.basename(p) for s in records.SPLITS for p in records.shard_paths(out, s))
  assert shards == sorted(n for n in os.listdir(out) if records.SHARD_NAME_RE.fullmatch(n))
  assert sum(1 for s in records.SPLITS for _ in _read_split(out, s)) == sum(second["totals"].values()) == 30
  assert sorted(n for n in os.listdir(out) if n.startswith(".")) == []


def _dead_pid():
  process = subprocess.Popen([sys.executable, "-c", "pass"])
  process.wait()
  return process.pid


def test_directories_of_dead_runs_are_removed(tmp_path):
  out = tmp_path / "out"
  _write_records(tmp_path, out, ["cat"], num_shards=1)
  dead, live = _dead_pid(), subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"],
                                             stdin=subprocess.PIPE)
  try:
    for name in (f".partial-{dead}", f".ready-{dead}", f".partial-{live.pid}"):
      os.makedirs(out / name)
      (out / name / "quickdraw-train.tfrecord-00000-of-00001").write_text("half")
    _write_records(tmp_path, out, ["dog"], num_shards=1)
    # The dead run's ready set is not moved in: the directory held complete records.
    assert sorted(n for n in os.listdir(out) if n.startswith(".")) == [f".partial-{live.pid}"]
    assert records.read_classes(out) == ["dog"]
  finally:
    live.communicate(b"")


class _Killed(BaseException):
  """Stands for a SIGKILL: no cleanup code catches it."""


def test_a_kill_at_any_point_of_the_commit_leaves_a_complete_set(tmp_path, monkeypatch):
  """The replacement of old records by new, stopped after each of its file operations in turn.

  After every stop the directory is complete (old or new records) or the new
  set is complete beside it; the next run's recovery then leaves the new set
  (old if the commit had not begun), and the user's file throughout.
  """
  out, ready_paths = tmp_path / "out", []
  _write_records(tmp_path, out, ["cat", "dog"], num_shards=4)
  (out / "quickdraw-mine.txt").write_text("mine")
  old = {n: (out / n).read_bytes() for n in os.listdir(out) if not n.startswith(".")}
  monkeypatch.setattr(journal, "commit", lambda output_dir, ready: ready_paths.append(ready))
  _write_records(tmp_path, out, ["cat"], num_shards=2)  # Stops before its commit.
  monkeypatch.undo()
  (ready,) = ready_paths
  snapshot = tmp_path / "snapshot"
  shutil.copytree(out, snapshot)
  ready_files = [n for n in os.listdir(ready) if n != journal.JOURNAL]
  new = {"quickdraw-mine.txt": b"mine", **{n: (snapshot / os.path.basename(ready) / n).read_bytes() for n in ready_files}}
  stop_after = 0
  while True:
    shutil.rmtree(out)
    shutil.copytree(snapshot, out)
    operations = []

    def operation(real, *args):
      if len(operations) == stop_after:
        raise _Killed()
      operations.append(args)
      return real(*args)

    # The journal's file calls (quickdraw_tf/files.py), each one a stopping point.
    monkeypatch.setattr(files.LocalFiles, "replace", staticmethod(lambda *a: operation(os.replace, *a)))
    monkeypatch.setattr(files.LocalFiles, "remove", staticmethod(lambda *a: operation(os.remove, *a)))
    try:
      journal.commit(str(out), ready)
      finished = True
    except _Killed:
      finished = False
    monkeypatch.undo()
    assert records.is_complete(out) or records.is_complete(ready), stop_after
    journal.recover(str(out))  # What the next run does first.
    expected = old if stop_after == 0 else new
    assert {n: (out / n).read_bytes() for n in os.listdir(out)} == expected, stop_after
    if finished:
      break
    stop_after += 1
  assert stop_after > 10  # Every removal and move was a stopping point.


@pytest.mark.parametrize("case", ["file", "under_a_file", "missing_parent", "unwritable"])
def test_unusable_output_dir_is_an_error_before_any_input_is_read(case, tmp_path, monkeypatch):
  out = tmp_path / "out"
  if case == "file":
    out.write_text("not a directory")
    pattern = "is not a directory"
  elif case == "under_a_file":  # mkdir -p cannot help: a file stands where a directory would be.
    (tmp_path / "file").write_text("not a directory")
    out = tmp_path / "file" / "sub" / "out"
    pattern = f"^--output_dir={re.escape(str(out))} lies under {re.escape(str(tmp_path / 'file'))}, which is not a " \
              "directory: choose another --output_dir$"
  elif case == "missing_parent":
    out = tmp_path / "missing" / "out"
    pattern = "parent directory .* does not exist: create it"
  else:
    os.makedirs(tmp_path / "locked")
    os.chmod(tmp_path / "locked", 0o500)
    out = tmp_path / "locked" / "out"
    pattern = "cannot write into .*: [Pp]ermission denied"
    if os.geteuid() == 0:  # root writes anyway: what the system answers anyone else.
      real_mkdir = os.mkdir

      def mkdir(path, *args):
        if str(path).startswith(str(tmp_path / "locked")):
          raise PermissionError(13, "Permission denied")
        return real_mkdir(path, *args)

      monkeypatch.setattr(os, "access", lambda path, mode: not str(path).startswith(str(tmp_path / "locked")))
      monkeypatch.setattr(os, "mkdir", mkdir)

  def read(*args):
    raise AssertionError(f"input read: {args}")

  for name in ("find_files", "scan_words", "chunks"):
    monkeypatch.setattr(make_records.sources, name, read)
  with pytest.raises(make_records.MakeRecordsError, match=pattern):
    _convert([str(tmp_path / "cat.ndjson")], out)
  monkeypatch.undo()
  assert not os.path.isdir(out)


def test_output_dir_error_is_one_line_and_comes_before_a_download(tmp_path):
  (tmp_path / "out").write_text("not a directory")
  # Nothing listens on port 9: a download would fail, after a while, with another message.
  result = _cli("--download=cat", "--download_url=http://127.0.0.1:9", f"--cache_dir={tmp_path / 'cache'}",
                f"--output_dir={tmp_path / 'out'}")
  assert result.returncode == 1 and "Traceback" not in result.stderr
  assert result.stderr.strip().splitlines() == [
      f"make_records: error: --output_dir={tmp_path / 'out'} is not a directory: remove it or choose another "
      "--output_dir"]
  assert not os.path.exists(tmp_path / "cache")


def test_a_gz_file_that_is_not_gzip_has_its_own_reason_and_gives_no_class(tmp_path):
  """A plain file named .gz is skipped as not_gzip (not truncated_file), and its name enters no class list."""
  _write_lines(tmp_path / "cat.ndjson", [GOOD])
  _write_lines(tmp_path / "dog.ndjson.gz", [GOOD.replace('"cat"', '"dog"').replace('"1"', '"2"')])  # Not compressed.
  (tmp_path / "bird.ndjson").write_text("")  # Empty: no class either.
  stats = _convert([str(tmp_path)], tmp_path / "out")
  assert stats["skipped"] == {"not_gzip": 1}
  assert stats["skipped_examples"][0]["file"] == str(tmp_path / "dog.ndjson.gz")
  assert stats["classes"] == ["cat"] == records.read_classes(tmp_path / "out")


def test_a_class_whose_records_are_all_skipped_is_an_error(tmp_path):
  """No class without drawings in classes.txt: the run stops, naming it and the --categories that leaves it out."""
  _write_lines(tmp_path / "cat.ndjson", [GOOD])
  _write_lines(tmp_path / "dog.ndjson", [json.dumps({"word": "dog", "key_id": "2", "drawing": [[[0], [0]]]})])
  with pytest.raises(make_records.MakeRecordsError, match=r"1 categories have no drawing: \['dog'\] .*"
                     r"too_few_points.*--categories=cat$"):
    _convert([str(tmp_path)], tmp_path / "out")
  assert not os.path.exists(tmp_path / "out" / records.CLASSES_FILE)


@pytest.mark.parametrize("word", ["cat", "The Eiffel Tower", "a\nb", "c\rat", "dog\u2028", " cat", "cat ", 3, ["cat"]])
def test_demo_ndjson_lines_follow_the_class_name_rule_of_make_records(word, tmp_path):
  """POST /ndjson refuses a word (400) that make_records would skip; a line it answers, make_records keeps."""
  from quickdraw_tf import demo  # pylint: disable=g-import-not-at-top

  points, request = demo.parse_drawing(json.dumps({"drawing": [[[0, 40, 90], [0, 60, 10]]], "word": word}).encode())
  problem = records.class_name_problem(word)
  if problem:
    with pytest.raises(demo.RequestError, match='"word": '):
      demo.Demo.ndjson_line(None, points, request)
    return
  _write_lines(tmp_path / "saved.ndjson", [demo.Demo.ndjson_line(None, points, request)])
  stats = _convert([str(tmp_path / "saved.ndjson")], tmp_path / "out")
  assert stats["classes"] == [word] and stats["skipped"] == {}


def test_records_on_another_file_system_are_read_as_train_reads_them(real_inputs, tmp_path):
  """Records copied to a bucket-like file system (TensorFlow's ram://, as gs:// would be) feed train's pipeline."""
  from quickdraw_tf import models  # pylint: disable=g-import-not-at-top
  from quickdraw_tf.pipelines import data  # pylint: disable=g-import-not-at-top

  stats = _convert([str(real_inputs / "simplified_lamnguyen")], tmp_path / "out", num_shards=2)
  bucket = f"ram://records-{os.getpid()}"
  tf.io.gfile.makedirs(bucket)
  for name in os.listdir(tmp_path / "out"):
    tf.io.gfile.copy(str(tmp_path / "out" / name), f"{bucket}/{name}")
  assert records.is_complete(bucket) and records.read_classes(bucket) == stats["classes"]
  assert records.read_stats(bucket)["totals"] == stats["totals"]
  assert len(records.shard_paths(bucket, "train")) == len(stats["shard_lengths"]["train"])
  features, labels = next(iter(data.make_dataset(bucket, "train", models.get("rnn"), 4, deterministic=True)))
  assert labels.shape[0] == 4
  with pytest.raises(FileNotFoundError):  # As open() says it, so that the callers' messages still apply.
    records.read_stats(f"{bucket}-missing")
