"""sources: the inputs found once as typed Sources, cut into typed Chunks."""

import gzip
import os

import numpy as np
import pytest

from quickdraw_tf.drawings import sources


def _object_array(items):
  array = np.empty(len(items), dtype=object)
  array[:] = items
  return array


def test_find_sources_types_each_file_once(tmp_path):
  (tmp_path / "full_simplified_alarm clock.ndjson").write_bytes(b'{"word": "alarm clock"}\n')
  np.save(tmp_path / "owl.npy", np.zeros((2, 784), np.uint8))
  (tmp_path / "notes.txt").write_text("not an input")
  found, problems = sources.find_sources([str(tmp_path), str(tmp_path / "owl.npy"), str(tmp_path / "missing*")])
  assert found == [
      sources.Source(str(tmp_path / "full_simplified_alarm clock.ndjson"), "ndjson", "alarm clock", 24),
      sources.Source(str(tmp_path / "owl.npy"), "npy", "owl", os.path.getsize(tmp_path / "owl.npy")),
  ]
  assert [(p.reason, p.path) for p in problems] == [("no_usable_file", str(tmp_path / "missing*"))]


def test_a_named_pipe_has_no_size_and_is_not_read_ahead(tmp_path):
  os.mkfifo(tmp_path / "cat.ndjson")
  (source,), _ = sources.find_sources([str(tmp_path)])
  assert source.size is None
  assert sources.first_word(source) is None  # Opening the pipe would block: it is left to the conversion.


@pytest.mark.parametrize("name", ["cat.ndjson", "cat.ndjson.gz"])
def test_ndjson_chunks_number_their_first_line(tmp_path, name):
  lines = [b'{"word": "cat", "n": %d}\n' % i for i in range(5)]
  path = tmp_path / name
  path.write_bytes(gzip.compress(b"".join(lines)) if name.endswith(".gz") else b"".join(lines))
  (source,), _ = sources.find_sources([str(path)])
  chunks = list(sources.chunks(source, 2))
  assert [(c.source, c.start, c.records, c.npz_split) for c in chunks] == [
      (source, 1, lines[:2], None), (source, 3, lines[2:4], None), (source, 5, lines[4:], None)]
  assert sources.scan_words(source) == {"cat"} and sources.first_word(source) == "cat"


def test_npz_chunks_keep_their_split_and_index(tmp_path):
  strokes = [np.array([[1, 2, 1]], np.int16) * i for i in range(3)]
  np.savez(tmp_path / "owl.npz", train=_object_array(strokes), valid=_object_array(strokes[:1]),
           test=_object_array([]))
  (source,), _ = sources.find_sources([str(tmp_path)])
  chunks = list(sources.chunks(source, 2))
  assert [(c.npz_split, c.start, len(c.records)) for c in chunks] == [("train", 0, 2), ("train", 2, 1), ("valid", 0, 1)]
  assert all(c.source == source for c in chunks)
