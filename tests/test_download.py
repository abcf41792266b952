"""download.py against a local HTTP server on 127.0.0.1 serving the shared real files."""

import http.server
import json
import os
import subprocess
import sys
import threading
import urllib.parse

import numpy as np
import pytest

from quickdraw_tf.drawings import download
from quickdraw_tf.drawings import ink

# Bucket paths -> shared folders.
ROUTES = {
    "full/simplified/": ("strokes/simplified_lamnguyen", ".ndjson"),
    "full/raw/": ("strokes/raw_exupery", ".ndjson"),
    "full/numpy_bitmap/": ("bitmaps28/numpy_bitmap_prefix", ".npy"),
}


class Bucket:
  """A tiny bucket server with switches to misbehave."""

  def __init__(self, data_dir, routes=None):
    self.data_dir = data_dir
    self.routes = dict(ROUTES, **(routes or {}))
    self.requests = []  # (path, Range header or None)
    self.drop_after = None  # Cut the body after this many bytes, once.
    self.ignore_range = False
    bucket = self

    class Handler(http.server.BaseHTTPRequestHandler):

      def log_message(self, *args):
        pass

      def do_GET(self):  # pylint: disable=invalid-name
        path = urllib.parse.unquote(self.path.lstrip("/"))
        bucket.requests.append((path, self.headers.get("Range")))
        local = bucket.local_path(path)
        if local is None:
          self.send_error(404)
          return
        with open(local, "rb") as f:
          data = f.read()
        start = 0
        if self.headers.get("Range") and not bucket.ignore_range:
          start = int(self.headers["Range"].split("=")[1].split("-")[0])
          if start >= len(data):
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(data)}")
            self.end_headers()
            return
          self.send_response(206)
          self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
        else:
          self.send_response(200)
        body = data[start:]
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if bucket.drop_after is not None:
          self.wfile.write(body[:bucket.drop_after])
          bucket.drop_after = None
          self.close_connection = True
          return
        self.wfile.write(body)

    self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
    threading.Thread(target=self.server.serve_forever, daemon=True).start()

  def local_path(self, path):
    for prefix, (folder, suffix) in self.routes.items():
      if path.startswith(prefix) and path.endswith(suffix):
        local = os.path.join(self.data_dir, folder, path[len(prefix):])
        return local if os.path.isfile(local) else None
    return None


@pytest.fixture
def bucket(data_dir, tmp_path_factory):
  # No real sketch-rnn file is available: the bucket's sketchrnn/cat.npz is built from real drawings.
  sketchrnn = tmp_path_factory.mktemp("sketchrnn")
  with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", "cat.ndjson")) as f:
    drawings = [ink.points_to_stroke3(ink.strokes_to_points(json.loads(line)["drawing"])).astype(np.int16)
                for line in f]
  splits = {"train": drawings[:15], "valid": drawings[15:20], "test": drawings[20:]}
  arrays = {k: np.empty(len(v), dtype=object) for k, v in splits.items()}
  for key, array in arrays.items():
    array[:] = splits[key]
  np.savez(sketchrnn / "cat.npz", **arrays)
  server = Bucket(data_dir, {"sketchrnn/": (str(sketchrnn), ".npz")})
  yield server
  server.server.shutdown()
  server.server.server_close()


def _source(data_dir, word, folder="strokes/simplified_lamnguyen", suffix=".ndjson"):
  with open(os.path.join(data_dir, folder, word + suffix), "rb") as f:
    return f.read()


def test_fetch_is_exact_and_cached(bucket, data_dir, tmp_path):
  paths = download.fetch(["cat", "alarm clock"], cache_dir=str(tmp_path), base_url=bucket.url, progress=False)
  assert paths == [str(tmp_path / "simplified" / "cat.ndjson"), str(tmp_path / "simplified" / "alarm clock.ndjson")]
  for word, path in zip(["cat", "alarm clock"], paths):
    with open(path, "rb") as f:
      assert f.read() == _source(data_dir, word)
  assert [p for p, _ in bucket.requests] == ["full/simplified/cat.ndjson", "full/simplified/alarm clock.ndjson"]
  download.fetch(["cat", "alarm clock"], cache_dir=str(tmp_path), base_url=bucket.url, progress=False)
  assert len(bucket.requests) == 2  # Cached whole: no new request.


def test_dropped_connection_resumes_with_range(bucket, data_dir, tmp_path):
  source = _source(data_dir, "cat")
  bucket.drop_after = len(source) // 2
  (path,) = download.fetch(["cat"], cache_dir=str(tmp_path), base_url=bucket.url, progress=False)
  with open(path, "rb") as f:
    assert f.read() == source
  assert len(bucket.requests) == 2
  assert bucket.requests[0][1] is None and bucket.requests[1][1] == f"bytes={len(source) // 2}-"
  assert not os.path.exists(path + ".part")


def test_existing_part_is_resumed(bucket, data_dir, tmp_path):
  source = _source(data_dir, "bicycle", "strokes/raw_exupery")
  os.makedirs(tmp_path / "raw")
  (tmp_path / "raw" / "bicycle.ndjson.part").write_bytes(source[:1000])
  (path,) = download.fetch(["bicycle"], kind="raw", cache_dir=str(tmp_path), base_url=bucket.url, progress=False)
  with open(path, "rb") as f:
    assert f.read() == source
  assert bucket.requests == [("full/raw/bicycle.ndjson", "bytes=1000-")]


def test_interruption_leaves_only_a_part_file(bucket, data_dir, tmp_path):
  bucket.drop_after = 5000
  with pytest.raises(download.DownloadError, match="resumes"):
    download.fetch(["cat"], cache_dir=str(tmp_path), base_url=bucket.url, retries=0, progress=False)
  assert os.listdir(tmp_path / "simplified") == ["cat.ndjson.part"]
  assert (tmp_path / "simplified" / "cat.ndjson.part").read_bytes() == _source(data_dir, "cat")[:5000]


def test_unknown_word_and_kind(bucket, tmp_path):
  with pytest.raises(download.DownloadError, match="'not a category'.*404"):
    download.fetch(["not a category"], cache_dir=str(tmp_path), base_url=bucket.url, progress=False)
  assert len(bucket.requests) == 1  # A 404 is not retried.
  with pytest.raises(ValueError, match="simplified, raw, numpy_bitmap, sketchrnn"):
    download.fetch(["cat"], kind="svg", cache_dir=str(tmp_path), base_url=bucket.url)


def test_server_ignoring_range_still_gives_the_whole_file(bucket, data_dir, tmp_path):
  source = _source(data_dir, "cat")
  os.makedirs(tmp_path / "simplified")
  (tmp_path / "simplified" / "cat.ndjson.part").write_bytes(b"garbage that is not the start")
  bucket.ignore_range = True
  (path,) = download.fetch(["cat"], cache_dir=str(tmp_path), base_url=bucket.url, progress=False)
  with open(path, "rb") as f:
    assert f.read() == source


def test_numpy_bitmap_kind(bucket, data_dir, tmp_path):
  (path,) = download.fetch(["zebra"], kind="numpy_bitmap", cache_dir=str(tmp_path), base_url=bucket.url,
                           progress=False)
  np.testing.assert_array_equal(np.load(path), np.load(os.path.join(
      data_dir, "bitmaps28", "numpy_bitmap_prefix", "zebra.npy")))


def test_make_records_download_flag(bucket, tmp_path):
  """--download fetches into the cache, then converts what it fetched."""
  result = subprocess.run(
      [sys.executable, "-m", "quickdraw_tf.make_records", "--download=cat,The Eiffel Tower",
       f"--download_url={bucket.url}", f"--cache_dir={tmp_path / 'cache'}", f"--output_dir={tmp_path / 'out'}",
       "--workers=1", "--progress=false"], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert "wrote 50 drawings of 2 classes" in result.stdout
  assert (tmp_path / "out" / "classes.txt").read_text() == "The Eiffel Tower\ncat\n"


def test_urls_follow_the_bucket_layout():
  base = "https://storage.googleapis.com/quickdraw_dataset"
  assert [download.url_for("alarm clock", kind) for kind in download.KINDS] == [
      f"{base}/full/simplified/alarm%20clock.ndjson", f"{base}/full/raw/alarm%20clock.ndjson",
      f"{base}/full/numpy_bitmap/alarm%20clock.npy", f"{base}/sketchrnn/alarm%20clock.npz"]


@pytest.mark.parametrize("kind, totals", [
    ("raw", None),
    ("numpy_bitmap", None),
    ("sketchrnn", {"train": 15, "eval": 5, "test": 5}),
])
def test_make_records_download_kinds(bucket, tmp_path, kind, totals):
  """--download_kind picks the bucket folder; each kind converts as its own format."""
  result = subprocess.run(
      [sys.executable, "-m", "quickdraw_tf.make_records", "--download=cat", f"--download_kind={kind}",
       f"--download_url={bucket.url}", f"--cache_dir={tmp_path / 'cache'}", f"--output_dir={tmp_path / 'out'}",
       "--workers=2", "--progress=false"], capture_output=True, text=True, timeout=300)
  assert result.returncode == 0, result.stderr
  assert [p for p, _ in bucket.requests] == [f"{download.KINDS[kind][0]}/cat{download.KINDS[kind][1]}"]
  with open(tmp_path / "out" / "stats.json") as f:
    stats = json.load(f)
  assert stats["classes"] == ["cat"] and stats["has_ink"] == (kind != "numpy_bitmap")
  if totals:
    assert stats["totals"] == totals
  else:
    assert sum(stats["totals"].values()) > 20
