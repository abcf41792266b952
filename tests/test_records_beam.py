"""make_records --beam_pipeline_options: the same records as the local pool, split by split, and its failures.

Runs where apache-beam is installed (`pip install '.[beam]'`); the test that it
is asked for without Beam runs everywhere.
"""

import collections
import gzip
import json
import os
import shutil
import signal
import subprocess
import sys

import numpy as np
import pytest
import tensorflow as tf

from quickdraw_tf import make_records
from quickdraw_tf import pipelines
from quickdraw_tf.drawings import ink
from quickdraw_tf.pipelines import conversion
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


def test_bucket_inputs_and_outputs_are_a_one_line_error_naming_the_limitation(tmp_path):
  """The launcher finds inputs and moves the output with local file calls: a URL says so, before anything is made."""
  with pytest.raises(make_records.MakeRecordsError, match=r"^--input=gs://b/cat\.ndjson: make_records reads local \(or "
                     r"mounted\) files only, with --beam_pipeline_options too; .*\(docs/beam\.md\)$"):
    make_records.convert([str(tmp_path), "gs://b/cat.ndjson"], str(tmp_path / "out"), beam_pipeline_options=IN_MEMORY)
  with pytest.raises(make_records.MakeRecordsError, match=r"^--output_dir=s3://b/records: make_records writes a local "
                     r"\(or mounted\) directory only, .*train reads --records=gs://\.\.\.; docs/beam\.md\)$"):
    make_records.convert([str(tmp_path)], "s3://b/records")
  assert os.listdir(tmp_path) == []
