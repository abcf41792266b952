"""make_records --beam_pipeline_options: the same records as the local pool, split by split, and its failures.

Runs where apache-beam is installed (`pip install '.[beam]'`); the test that it
is asked for without Beam runs everywhere.
"""

import collections
import gzip
import json
import os
import re
import shutil
import signal
import socket
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from quickdraw_tf import make_records
from quickdraw_tf import pipelines
from quickdraw_tf.drawings import ink
from quickdraw_tf.pipelines import conversion
from quickdraw_tf.pipelines import journal
from quickdraw_tf.pipelines import records
from tests.test_make_records import _close_pipe
from tests.test_make_records import _open_for_writing

WORDS = ("cat", "airplane", "bicycle")
IN_MEMORY = "runner=DirectRunner,direct_num_workers=1,direct_running_mode=in_memory"
MULTI_PROCESSING = "runner=DirectRunner,direct_num_workers=2,direct_running_mode=multi_processing"
# stats.json entries that depend on how the run went, not on what it wrote.
RUN_ENTRIES = ("seconds", "cpu_seconds", "drawings_per_second", "workers", "shard_lengths")


def _beam():
  return pytest.importorskip("apache_beam", reason="apache-beam is not installed: pip install '.[beam]'")


def _multisets(records_dir):
  """split -> Counter of serialized examples."""
  return {split: collections.Counter(r.numpy() for r in tf.data.TFRecordDataset(records.shard_paths(records_dir, split)))
          for split in records.SPLITS}


def _both(inputs, tmp_path, beam_options=IN_MEMORY, **kwargs):
  """Converts ``inputs`` locally (2 workers) and with Beam; asserts the same records and counts; returns Beam's dir."""
  kwargs.setdefault("progress", False)
  local, beam = tmp_path / "local", tmp_path / "beam"
  local_stats = make_records.convert(inputs, str(local), workers=2, **kwargs)
  beam_stats = make_records.convert(inputs, str(beam), beam_pipeline_options=beam_options, **kwargs)
  assert _multisets(local) == _multisets(beam)
  assert ({k: v for k, v in local_stats.items() if k not in RUN_ENTRIES} ==
          {k: v for k, v in beam_stats.items() if k not in RUN_ENTRIES})
  assert json.loads((beam / records.STATS_FILE).read_text())["counts"] == local_stats["counts"]
  for name in (records.CLASSES_FILE, "features.json"):
    assert (local / name).read_bytes() == (beam / name).read_bytes()
  for split in records.SPLITS:
    assert sum(beam_stats["shard_lengths"][split]) == local_stats["totals"][split]
  return beam


@pytest.fixture(scope="module")
def real_inputs(data_dir, tmp_path_factory):
  """Real drawings: simplified and raw ndjson, the same gzipped, and a file with bad lines."""
  root = tmp_path_factory.mktemp("real")
  for source in ("simplified_lamnguyen", "raw_exupery"):
    os.makedirs(root / source)
    for word in WORDS:
      shutil.copy(os.path.join(data_dir, "strokes", source, f"{word}.ndjson"), root / source)
  os.makedirs(root / "gz")
  with open(os.path.join(data_dir, "strokes", "simplified_vlandham", "cat.ndjson"), "rb") as f:
    (root / "gz" / "cat.ndjson.gz").write_bytes(gzip.compress(f.read()))
  good = {"word": "cat", "key_id": "b1", "drawing": [[[0, 10, 20], [0, 5, 0]]]}
  (root / "bad.ndjson").write_text("\n".join([
      json.dumps(good), "not json", json.dumps({"word": "cat"}), json.dumps({**good, "key_id": "b2", "drawing": [[[0], [0]]]}),
      json.dumps({**good, "word": "a\nb", "key_id": "b3"}), json.dumps({**good, "key_id": "b4", "drawing": [[[0, 1e400], [0, 1]]]}),
      json.dumps(good)]) + "\n")  # The last: a duplicate by key_id and geometry.
  (root / "dog.ndjson.gz").write_text("not gzip")
  return root


# Each mode once, the multi-processing one with images: what the "done when" runs.
@pytest.mark.parametrize("image_size, beam_options", [(0, IN_MEMORY), (28, MULTI_PROCESSING)],
                         ids=["ink-in_memory", "image28-multi_processing"])
def test_beam_writes_the_local_records_and_counts(real_inputs, tmp_path, image_size, beam_options):
  """Simplified, raw and gzipped ndjson and a file with bad lines: the local records, stats.json and TFDS."""
  _beam()
  beam = _both([str(real_inputs)], tmp_path, beam_options=beam_options, image_size=image_size)
  stats = json.loads((beam / records.STATS_FILE).read_text())
  assert {"duplicate", "malformed_json", "missing_drawing", "too_few_points", "bad_word", "not_gzip"} <= set(
      stats["skipped"])
  # The first bad records are reported with their lines, as the local path does (equal stats above).
  assert {(e["reason"], e["line"]) for e in stats["skipped_examples"][:5]} == {
      ("malformed_json", 2), ("missing_drawing", 3), ("too_few_points", 4), ("bad_word", 5), ("non_finite", 6)}
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder_from_directory(str(beam))
  assert sum(1 for _ in builder.as_dataset(split="train")) == stats["totals"]["train"]


def test_beam_in_multi_processing_mode_and_max_per_class(real_inputs, tmp_path):
  """--max_per_class keeps the same drawings in both paths: the first new ones in input order."""
  _beam()
  beam = _both([str(real_inputs / "simplified_lamnguyen"), str(real_inputs / "raw_exupery")], tmp_path,
               beam_options=MULTI_PROCESSING, max_per_class=10)
  stats = json.loads((beam / records.STATS_FILE).read_text())
  per_class = sum((collections.Counter(counts) for counts in stats["counts"].values()), collections.Counter())
  assert stats["skipped"]["over_max_per_class"] > 0 and set(per_class.values()) == {10}


def test_beam_numpy_bitmap_and_npz(data_dir, tmp_path):
  _beam()
  os.makedirs(tmp_path / "npy")
  for word in ("apple", "airplane"):
    np.save(tmp_path / "npy" / f"{word}.npy",
            np.load(os.path.join(data_dir, "bitmaps28", "numpy_bitmap_prefix", f"{word}.npy"))[:60])
  os.makedirs(tmp_path / "bitmaps")
  _both([str(tmp_path / "npy")], tmp_path / "bitmaps")
  with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", "cat.ndjson")) as f:
    drawings = np.empty(24, dtype=object)
    drawings[:] = [ink.points_to_stroke3(ink.strokes_to_points(json.loads(line)["drawing"])).astype(np.int16)
                   for line in f][:24]
  os.makedirs(tmp_path / "npz")
  np.savez(tmp_path / "npz" / "cat.npz", train=drawings[:16], valid=drawings[16:20], test=drawings[20:])
  os.makedirs(tmp_path / "sketch_rnn")
  _both([str(tmp_path / "npz")], tmp_path / "sketch_rnn", image_size=28)  # Rendered from npz strokes, too.


def test_a_failing_pipeline_leaves_no_complete_looking_directory(real_inputs, tmp_path, monkeypatch):
  _beam()

  def broken(chunk):
    raise ZeroDivisionError(f"broken on {chunk.source.path}")

  monkeypatch.setattr(conversion, "_convert_chunk", broken)  # In memory: the pipeline runs in this process.
  with pytest.raises(Exception, match="broken on"):
    make_records.convert([str(real_inputs / "simplified_lamnguyen")], str(tmp_path / "out"), progress=False,
                         beam_pipeline_options=IN_MEMORY)
  assert os.listdir(tmp_path / "out") == []
  monkeypatch.undo()
  _both([str(real_inputs / "simplified_lamnguyen")], tmp_path)  # The next run gives the whole set.


def test_a_killed_pipeline_leaves_no_complete_looking_directory_and_a_rerun_gives_the_local_records(data_dir, tmp_path):
  """SIGKILL to make_records and its Beam workers while they read: no dataset_info.json; the next run is whole.

  The input is a named pipe the test holds open: once a write larger than the
  pipe's buffer returns, the pipeline has opened its input and is reading it,
  and cannot have finished, however fast or slow the machine.
  """
  _beam()
  with open(os.path.join(data_dir, "strokes", "simplified_vlandham", "horse.ndjson"), "rb") as f:
    lines = f.read()
  assert len(lines) > 1 << 16  # More than a pipe holds: the write returns only once the pipeline reads.
  os.makedirs(tmp_path / "in")
  fifo, out = tmp_path / "in" / "horse.ndjson", tmp_path / "beam"  # Where `_both` writes the rerun.
  os.mkfifo(fifo)
  # --categories: the launcher does not scan a pipe for class names, which would read it before the pipeline.
  process = subprocess.Popen([sys.executable, "-m", "quickdraw_tf.make_records", f"--input={tmp_path / 'in'}",
                              f"--output_dir={out}", "--categories=horse", "--progress=false",
                              f"--beam_pipeline_options={MULTI_PROCESSING}"],
                             stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                             start_new_session=True)  # Its own process group: the Beam workers die with it.
  writer = _open_for_writing(fifo, process)
  try:
    assert process.poll() is None, "the run ended before it read its input"
    writer.write(lines)
    os.killpg(process.pid, signal.SIGKILL)  # As a lost machine: no cleanup runs.
  finally:
    _close_pipe(writer)
  process.wait(timeout=120)
  assert process.returncode == -signal.SIGKILL
  assert not records.is_complete(str(out)) and os.listdir(out) == [f".partial-{process.pid}"]
  fifo.unlink()
  fifo.write_bytes(lines)  # The same input, now a file: the rerun converts it whole.
  beam = _both([str(tmp_path / "in")], tmp_path, beam_options=IN_MEMORY, categories=["horse"])
  assert beam == out and records.is_complete(str(out)) and not [n for n in os.listdir(out) if n.startswith(".")]


def test_beam_asked_for_without_beam_is_a_one_line_error(tmp_path, monkeypatch):
  monkeypatch.setitem(sys.modules, "apache_beam", None)  # As where it is not installed: import fails.
  monkeypatch.delitem(sys.modules, "quickdraw_tf.pipelines.beam_records", raising=False)
  monkeypatch.delattr(pipelines, "beam_records", raising=False)
  with pytest.raises(make_records.MakeRecordsError, match=r"^--beam_pipeline_options needs Apache Beam: pip install "
                     r"'quickdraw_tf\[beam\]' \(or leave the option out to convert with the local pool\)$"):
    make_records.convert([str(tmp_path)], str(tmp_path / "out"), beam_pipeline_options=IN_MEMORY)
  assert not os.path.exists(tmp_path / "out")


def _ram():
  """Beam's ``ram://`` stand-in for a bucket (tests/ram_filesystem.py), registered by importing it."""
  _beam()
  from tests import ram_filesystem  # pylint: disable=g-import-not-at-top
  return ram_filesystem


def test_bucket_inputs_and_output_give_the_local_records(real_inputs, tmp_path):
  """--input and --output_dir URLs (a bucket: here ``ram://``, no directories to Beam): the local path's records."""
  ram = _ram()
  bucket = f"ram://bucket-{os.getpid()}"
  ram.copy_tree(str(real_inputs), f"{bucket}/in")
  out = f"{bucket}/records"
  local_stats = make_records.convert([str(real_inputs)], str(tmp_path / "local"), workers=2, progress=False)
  stats = make_records.convert([f"{bucket}/in"], out, beam_pipeline_options=IN_MEMORY, progress=False)
  assert _multisets(out) == _multisets(tmp_path / "local")
  same = [{k: v for k, v in st.items() if k not in RUN_ENTRIES} for st in (local_stats, stats)]
  assert json.dumps(same[0], sort_keys=True).replace(str(real_inputs), f"{bucket}/in") == json.dumps(
      same[1], sort_keys=True)  # The same counts and bad records, named by their URLs.
  assert records.read_stats(out)["counts"] == local_stats["counts"] and records.is_complete(out)
  for name in (records.CLASSES_FILE, "features.json"):
    assert tf.io.gfile.GFile(f"{out}/{name}", "rb").read() == (tmp_path / "local" / name).read_bytes()
  assert not [n for n in tf.io.gfile.listdir(out) if n.startswith(".")]  # No stage or Beam temp left.
  # TFDS reads the copied directory (its paths go through etils, which has no ram://; gs:// it reads in place).
  ram.copy_tree(out, str(tmp_path / "copy"))
  import tensorflow_datasets as tfds  # pylint: disable=g-import-not-at-top
  builder = tfds.builder_from_directory(str(tmp_path / "copy"))
  assert sum(1 for _ in builder.as_dataset(split="test")) == stats["totals"]["test"]
  # A glob URL, and a rerun into the same bucket directory: the old set replaced, a user's file kept.
  tf.io.gfile.GFile(f"{out}/notes.txt", "w").write("mine")
  again = make_records.convert([f"{bucket}/in/simplified_lamnguyen/*.ndjson"], out, num_shards=2,
                               beam_pipeline_options=IN_MEMORY, progress=False)
  assert again["totals"] != stats["totals"] and records.read_stats(out)["totals"] == again["totals"]
  assert sorted(n for n in tf.io.gfile.listdir(out) if records.SHARD_NAME_RE.fullmatch(n)) == sorted(
      os.path.basename(p) for split in records.SPLITS for p in records.shard_paths(out, split))
  assert tf.io.gfile.GFile(f"{out}/notes.txt").read() == "mine"
  tf.io.gfile.rmtree(bucket)


def _dead_pid():
  process = subprocess.Popen([sys.executable, "-c", ""])
  process.wait()
  return process.pid


def test_a_bucket_commit_cut_short_is_finished_by_the_next_run_and_other_hosts_stages_are_left(tmp_path, caplog):
  """A run that died mid-commit into a bucket (marker gone, journal written): the next run completes it first."""
  ram = _ram()
  out = f"ram://commit-{os.getpid()}/records"
  good = {"word": "cat", "key_id": "k", "drawing": [[[0, 10, 20], [0, 5, 0]]]}
  (tmp_path / "cat.ndjson").write_text("\n".join(json.dumps({**good, "key_id": f"k{i}", "drawing": [[[0, 10, i + 20], [0, 5, 0]]]})
                                                for i in range(40)) + "\n")
  first = make_records.convert([str(tmp_path / "cat.ndjson")], out, beam_pipeline_options=IN_MEMORY, progress=False)
  # A second run, dead (its pid ended) after it marked its set ready and removed the old marker.
  second = make_records.convert([str(tmp_path / "cat.ndjson")], str(tmp_path / "second"), num_shards=3,
                                progress=False)
  dead = f"{out}/.partial-{_dead_pid()}-{socket.gethostname()}"
  ram.copy_tree(str(tmp_path / "second"), dead)
  assert journal.mark_ready(out, dead) == dead and tf.io.gfile.exists(f"{dead}/{journal.JOURNAL}")  # In place.
  tf.io.gfile.remove(f"{out}/{records.COMPLETE_MARKER}")
  other_host = f"{out}/.partial-1-another-host"
  tf.io.gfile.makedirs(other_host)
  tf.io.gfile.GFile(f"{other_host}/x", "w").write("theirs")
  with caplog.at_level("WARNING"):
    journal.remove_stage(journal.prepare_output(out))  # What the next run does first.
  assert records.is_complete(out) and records.read_stats(out)["shard_lengths"] == second["shard_lengths"]
  assert second["shard_lengths"] != first["shard_lengths"]
  assert _multisets(out) == _multisets(tmp_path / "second")
  assert sorted(n for n in tf.io.gfile.listdir(out) if n.startswith(".")) == [".partial-1-another-host"]
  assert "left ram://" in caplog.text and "another-host" in caplog.text
  tf.io.gfile.rmtree(f"ram://commit-{os.getpid()}")


def test_a_url_without_beam_options_is_a_one_line_error_naming_the_option(tmp_path):
  """The local pool reads and writes local files: a URL asks for --beam_pipeline_options, before anything is made."""
  for inputs, output_dir, named in (([str(tmp_path), "gs://b/cat.ndjson"], str(tmp_path / "out"), "--input=gs://b/cat.ndjson"),
                                    ([str(tmp_path)], "s3://b/records", "--output_dir=s3://b/records")):
    with pytest.raises(make_records.MakeRecordsError, match=rf"^{re.escape(named)}: the local pool reads and writes local "
                       r"\(or mounted\) files only: add --beam_pipeline_options \(.*docs/beam\.md\)$"):
      make_records.convert(inputs, output_dir)
  assert os.listdir(tmp_path) == []


def test_a_missing_bucket_input_is_counted_and_named(tmp_path):
  _ram()
  with pytest.raises(make_records.MakeRecordsError, match=r"^no usable input file in \['ram://nothing-here/in'\]"):
    make_records.convert(["ram://nothing-here/in"], str(tmp_path / "out"), beam_pipeline_options=IN_MEMORY)


def test_a_scheme_beam_has_no_file_system_for_is_a_one_line_error():
  """gs:// without apache-beam[gcp], say: TensorFlow may list the inputs, then Beam could not read them."""
  _beam()
  from quickdraw_tf.pipelines import beam_records  # pylint: disable=g-import-not-at-top
  with pytest.raises(make_records.MakeRecordsError, match=r"^nosuchfs:// paths: Beam cannot read or write them: "
                     r"Unable to get filesystem"):
    beam_records._check_file_systems(["/tmp/x", "nosuchfs://b/in/cat.ndjson"])  # pylint: disable=protected-access
  beam_records._check_file_systems(["/tmp/x"])  # pylint: disable=protected-access


def test_a_failing_pipeline_into_a_bucket_leaves_nothing_that_looks_complete(real_inputs, monkeypatch):
  _ram()
  out = f"ram://failing-{os.getpid()}/records"

  def broken(chunk):
    raise ZeroDivisionError(f"broken on {chunk.source.path}")

  monkeypatch.setattr(conversion, "_convert_chunk", broken)
  with pytest.raises(Exception, match="broken on"):
    make_records.convert([str(real_inputs / "simplified_lamnguyen")], out, progress=False,
                         beam_pipeline_options=IN_MEMORY)
  assert not records.is_complete(out) and tf.io.gfile.listdir(out) == []
  tf.io.gfile.rmtree(f"ram://failing-{os.getpid()}")
