"""The demo server under hostile clients: bounded work, deadlines, timeouts, backlog, odd bodies.

No test races a clock: a full server is one whose lane a test holds with an event; a slow client
is one that stops sending; timeouts are set small by the server's parameters, and the client's
own timeout (`HANG_S`) only turns a hang of the server under test into a failure.
"""

import contextlib
import json
import os
import socket
import threading

import numpy as np
import pytest

from quickdraw_tf import demo as demo_lib
from quickdraw_tf import make_records
from quickdraw_tf.pipelines import records
from quickdraw_tf.training import run_dir

HANG_S = 60  # A client waits this long for an answer before the test fails: far past any honest answer.
SMALL = json.dumps({"drawing": [[[10, 50, 90], [20, 80, 20]]]}).encode()


@pytest.fixture(scope="module")
def rnn_demo(tiny_run):
  return demo_lib.Demo(os.path.join(tiny_run("rnn"), run_dir.SAVED_MODEL))


@pytest.fixture
def start():
  """A function: (demo, serve=True, **make_server options) -> the server, serving in a thread unless serve=False."""
  started = []

  def start_server(demo, serve=True, **options):
    server = demo_lib.make_server(demo, port=0, **options)
    server.thread = threading.Thread(target=server.serve_forever, daemon=True)
    started.append(server)
    if serve:
      server.thread.start()
    return server

  yield start_server
  for server in started:
    if server.thread.is_alive():
      server.shutdown()
      server.thread.join()
    server.server_close()


def send(port, path, body, declared=None):
  """A connected socket that has sent a POST of ``body`` (``declared``: the Content-Length it claims)."""
  connection = socket.create_connection(("127.0.0.1", port), timeout=HANG_S)
  head = f"POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {len(body) if declared is None else declared}\r\n\r\n"
  connection.sendall(head.encode() + body)
  return connection


def answer(connection):
  """(status, headers dict with lower-case names, body bytes) read until the server closes the connection."""
  data = b""
  with connection:
    while chunk := connection.recv(65536):
      data += chunk
  if not data:
    return None, {}, b""
  head, _, body = data.partition(b"\r\n\r\n")
  lines = head.decode("latin-1").split("\r\n")
  headers = dict(line.lower().split(": ", 1) for line in lines[1:])
  return int(lines[0].split()[1]), headers, body


def post(port, path, body, declared=None):
  return answer(send(port, path, body, declared))


@pytest.mark.parametrize("path, limit", [("/predict", demo_lib.PREDICT_MAX_POINTS),
                                         ("/view", demo_lib.VIEW_MAX_POINTS)])
def test_the_model_reads_at_most_the_endpoints_cap_of_points(rnn_demo, start, monkeypatch, path, limit):
  seen = []
  outputs = rnn_demo._outputs  # pylint: disable=protected-access
  monkeypatch.setattr(rnn_demo, "_outputs", lambda points: seen.append(len(points)) or outputs(points))
  port = start(rnn_demo).server_port
  # One smooth stroke of MAX_POINTS points: read simplified, as the dataset's drawings are, and said so.
  angle = np.linspace(0, 2 * np.pi, demo_lib.MAX_POINTS)
  circle = [[(100 + 90 * np.cos(angle)).tolist(), (100 + 90 * np.sin(angle)).tolist()]]
  status, _, body = post(port, path, json.dumps({"drawing": circle}).encode())
  assert status == 200, body
  answered = json.loads(body)
  if path == "/view":
    assert answered["title"].endswith(f" of {demo_lib.MAX_POINTS} points)")
  else:
    assert answered["simplified_from"] == demo_lib.MAX_POINTS and len(answered["probabilities"]) == 4
  assert seen and max(seen) <= limit
  # 2,500 two-point strokes stay 5,000 points simplified: refused before any model work.
  seen.clear()
  dashes = [[[x % 250, x % 250 + 3], [x // 250 * 12, x // 250 * 12 + 3]] for x in range(0, 5000, 2)]
  status, _, body = post(port, path, json.dumps({"drawing": dashes}).encode())
  assert status == 400 and f"at most {limit} points" in json.loads(body)["error"]
  assert seen == []


@contextlib.contextmanager
def held_predict(demo, monkeypatch):
  """/predict's first call blocks inside the model until the block ends; yields once it is inside."""
  inside, release = threading.Event(), threading.Event()
  predict = demo.predict

  def blocking(points):
    if not inside.is_set():
      inside.set()
      release.wait()
    return predict(points)

  monkeypatch.setattr(demo, "predict", blocking)
  try:
    yield inside
  finally:
    release.set()


def test_a_full_lane_answers_503_with_retry_after_and_the_other_lane_still_works(rnn_demo, start, monkeypatch):
  port = start(rnn_demo, deadline=0).server_port
  with held_predict(rnn_demo, monkeypatch) as inside:
    first = send(port, "/predict", SMALL)
    assert inside.wait(HANG_S)
    status, headers, body = post(port, "/predict", SMALL)
    assert status == 503 and int(headers["retry-after"]) >= 1 and "busy" in json.loads(body)["error"]
    status, _, body = post(port, "/ndjson", json.dumps({"drawing": [[[1, 5], [2, 6]]], "word": "cat"}).encode())
    assert status == 200, body
  assert answer(first)[0] == 200


def test_clients_beyond_the_old_backlog_of_5_all_get_http_answers(rnn_demo, start):
  server = start(rnn_demo, serve=False)  # Not accepting yet: every connection waits in the listen backlog.
  connections = [send(server.server_port, "/predict", SMALL) for _ in range(128)]
  server.thread.start()
  answers = [answer(c) for c in connections]
  assert all(status in (200, 503) for status, _, _ in answers), [a[0] for a in answers]
  assert all("retry-after" in headers for status, headers, _ in answers if status == 503)


def test_a_slow_or_silent_client_is_timed_out_not_waited_for(rnn_demo, start):
  port = start(rnn_demo, io_timeout=0.2).server_port
  # 10 bytes of a 1000-byte body, the connection left open: 408, then closed.
  status, headers, body = post(port, "/predict", b"0123456789", declared=1000)
  assert status == 408 and "did not arrive within 0.2 s" in json.loads(body)["error"]
  # Connected, nothing sent: closed without an answer.
  assert answer(socket.create_connection(("127.0.0.1", port), timeout=HANG_S)) == (None, {}, b"")
  # A body that ends early (the client shut its side) is a 400 naming the count.
  connection = send(port, "/predict", b"0123456789", declared=1000)
  connection.shutdown(socket.SHUT_WR)
  status, _, body = answer(connection)
  assert status == 400 and "ended after 10 of its 1000 bytes" in json.loads(body)["error"]


@pytest.mark.parametrize("body", [b"[" * 100_000, b'{"drawing": ' + b"[" * 100_000, b'{"a":' * 50_000],
                         ids=["lists", "drawing", "objects"])
def test_deeply_nested_json_is_a_400(rnn_demo, start, body):
  status, _, answered = post(start(rnn_demo).server_port, "/predict", body)
  assert status == 400 and "nested deeper" in json.loads(answered)["error"]


@pytest.mark.parametrize("word", ["a\nb", "", " cat", "cat\u2028", "tab\there", 3])
def test_ndjson_refuses_a_word_make_records_would_skip(rnn_demo, start, word):
  body = json.dumps({"drawing": [[[1, 5], [2, 6]]], "word": word}).encode()
  status, _, answered = post(start(rnn_demo).server_port, "/ndjson", body)
  assert status == 400 and records.class_name_problem(word) in json.loads(answered)["error"]


def test_ndjson_lines_of_odd_but_valid_words_are_kept_by_make_records(rnn_demo, start, tmp_path):
  words = ["cat", "ice cream", "The Mona Lisa", "café"]
  port = start(rnn_demo).server_port
  lines = []
  for i, word in enumerate(words):  # Drawings that differ: make_records drops duplicates.
    drawing = [[[1, 50, 90 + 40 * i], [2, 60, 10]]]
    status, _, body = post(port, "/ndjson", json.dumps({"drawing": drawing, "word": word}).encode())
    assert status == 200, body
    lines.append(json.loads(body)["ndjson"])
  (tmp_path / "saved.ndjson").write_text("".join(line + "\n" for line in lines), encoding="utf-8")
  make_records.convert([str(tmp_path / "saved.ndjson")], str(tmp_path / "records"), workers=1, progress=False,
                       num_shards=1, eval_fraction=0, test_fraction=0)
  stats = records.read_stats(str(tmp_path / "records"))
  assert stats["skipped"] == {} and stats["counts"]["train"] == {word: 1 for word in words}
