"""demo: the server's endpoints, and the page in headless Chromium drawing real drawings stroke by stroke."""

import base64
import contextlib
import http.client
import io
import json
import os
import shutil
import subprocess
import sys
import threading

import numpy as np
import pytest

from quickdraw_tf import demo as demo_lib
from quickdraw_tf import models
from quickdraw_tf.drawings import drawing_files
from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.pipelines import data
from quickdraw_tf.training import run_dir
from tests import verbs

DRAWINGS_PER_WORD = 1
PAGE_TIMEOUT_MS = 600_000  # Waits end on a page state, not a clock: this only bounds a hang on a loaded machine.
SCALE = 2  # Canvas pixels per drawing unit: the page's canvas is 512 px for 256 units.


def real_drawings(data_dir, words, per_word=DRAWINGS_PER_WORD, skip=0):
  """Stroke lists of real simplified drawings (past the first `skip` lines) without repeated points.

  Repeated consecutive points are left out because a pointer that does not move fires no event.
  """
  drawings = []
  for word in words:
    with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", f"{word}.ndjson"), encoding="utf-8") as f:
      found = 0
      for number, line in enumerate(f):
        strokes = json.loads(line)["drawing"]
        if number < skip or any((np.diff(np.array(s[:2]), axis=1) == 0).all(0).any() for s in strokes):
          continue
        drawings.append(strokes)
        found += 1
        if found == per_word:
          break
  return drawings


@contextlib.contextmanager
def served(demo):
  server = demo_lib.make_server(demo, port=0)
  thread = threading.Thread(target=server.serve_forever, daemon=True)
  thread.start()
  try:
    yield server.server_port
  finally:
    server.shutdown()
    server.server_close()
    thread.join()


def request(port, method, path, body=None, headers=None):
  """(status, parsed JSON or text) of one request."""
  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
  try:
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    text = response.read().decode()
  finally:
    connection.close()
  try:
    return response.status, json.loads(text)
  except ValueError:
    return response.status, text


@pytest.fixture(scope="module")
def rnn_demo(tiny_run):
  return demo_lib.Demo(os.path.join(tiny_run("rnn"), run_dir.SAVED_MODEL))


def test_predict_answers_every_serving_output(rnn_demo, data_dir):
  strokes = real_drawings(data_dir, ["cat"])[0]
  points = ink_lib.strokes_to_points(strokes)
  expected = rnn_demo.signature(ink=points[None], length=np.array([len(points)], np.int32))
  with served(rnn_demo) as port:
    status, answer = request(port, "POST", "/predict", json.dumps({"drawing": strokes}))
  assert status == 200
  assert sorted(answer) == sorted(expected)  # Whatever the signature returns, the page gets.
  np.testing.assert_allclose(answer["probabilities"], expected["probabilities"].numpy()[0], rtol=1e-6)
  assert answer["top_k_classes"] == [c.decode() for c in expected["top_k_classes"].numpy()[0]]


def test_bad_requests_get_a_message_not_a_traceback(rnn_demo):
  cases = [
      ("POST", "/predict", "not json", 400, "not JSON"),
      ("POST", "/predict", json.dumps([1, 2]), 400, '"drawing"'),
      ("POST", "/predict", json.dumps({"drawing": [[1, 2]]}), 400, "bad drawing"),
      ("POST", "/predict", json.dumps({"drawing": [[[1], [2, 3]]]}), 400, "bad drawing"),
      ("POST", "/predict", json.dumps({"drawing": [[[1], [2]]]}), 400, "2 to 5000 points"),
      ("POST", "/predict", json.dumps({"drawing": [[["a", "b"], [1, 2]]]}), 400, "bad drawing"),
      ("POST", "/ndjson", json.dumps({"drawing": [[[1, 5], [2, 6]]], "word": 3}), 400, '"word"'),
      ("POST", "/nothing", "{}", 404, "no such endpoint"),
      ("GET", "/static/../demo.py", None, 404, "no such page"),
      ("GET", "/static/", None, 404, "no such page"),
  ]
  with served(rnn_demo) as port:
    for method, path, body, status, message in cases:
      got_status, answer = request(port, method, path, body)
      assert (got_status, message in answer["error"]) == (status, True), (path, body, answer)
      assert "Traceback" not in answer["error"]
    # Only the headers of a body over the limit: rejected before it is read.
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
    connection.putrequest("POST", "/predict")
    connection.putheader("Content-Length", str(demo_lib.MAX_BODY_BYTES + 1))
    connection.endheaders()
    response = connection.getresponse()
    assert response.status == 413 and "at most" in json.loads(response.read())["error"]
    connection.close()
    status, answer = request(port, "POST", "/predict", "{}", headers={"Content-Length": "-1"})
    assert status == 400 and "negative" in answer["error"]


def test_ndjson_line_is_google_simplified_format(rnn_demo, data_dir):
  strokes = real_drawings(data_dir, ["fish"])[0]
  raw = [[[x * 3.7 + 11 for x in xs], [y * 3.7 - 5 for y in ys]] for xs, ys in strokes]  # Any scale.
  with served(rnn_demo) as port:
    status, answer = request(port, "POST", "/ndjson", json.dumps({"drawing": raw, "word": "fish", "guess": "fish"}))
  assert status == 200
  record = json.loads(answer["ndjson"])
  assert record["word"] == "fish" and record["recognized"] is True and record["timestamp"].endswith(" UTC")
  assert len(record["drawing"]) == len(strokes)
  coordinates = np.concatenate([np.concatenate(s) for s in record["drawing"]])
  assert coordinates.dtype.kind == "i" and coordinates.min() == 0 and coordinates.max() == 255
  path = os.path.join(os.path.dirname(rnn_demo.model_dir), "saved.ndjson")
  with open(path, "w", encoding="utf-8") as f:
    f.write(answer["ndjson"] + "\n")
  ((_, points),) = drawing_files.read_ndjson(path)  # predict reads it back.
  assert points.shape[1] == 3 and points[:, 2].sum() == len(strokes)


def test_view_is_the_image_the_model_reads(tiny_run, data_dir):
  from PIL import Image  # pylint: disable=g-import-not-at-top
  model_dir = tiny_run("resnet18")
  demo = demo_lib.Demo(os.path.join(model_dir, run_dir.SAVED_MODEL))
  points = ink_lib.strokes_to_points(real_drawings(data_dir, ["bicycle"])[0])
  view = demo.view(points)
  image = np.asarray(Image.open(io.BytesIO(base64.b64decode(view["png"]))))
  encoded, encoded_length = ink_lib.encode_tf(points[None], [len(points)])
  expected = data.model_inputs(models.get("resnet18"), encoded, encoded_length, points[None], [len(points)],
                               image_size=28)["image"].numpy()[0, ..., 0]
  assert view["kind"] == "image" and image.shape == (28, 28)
  np.testing.assert_array_equal(image, np.round(expected * 255))


def test_view_of_rnn_colours_strokes(rnn_demo, data_dir):
  points = ink_lib.strokes_to_points(real_drawings(data_dir, ["cat"])[0])
  view = rnn_demo.view(points)
  assert view["kind"] == "contribution" and view["title"].startswith("rnn: step contributions to ")
  assert base64.b64decode(view["png"]).startswith(b"\x89PNG")


def test_without_model_dir_view_says_how_to_get_it(tiny_run, tmp_path):
  saved_model = tmp_path / "elsewhere"
  shutil.copytree(os.path.join(tiny_run("rnn"), run_dir.SAVED_MODEL), saved_model)
  demo = demo_lib.Demo(str(saved_model))
  assert demo.info()["view"] is None
  with served(demo) as port:
    status, answer = request(port, "POST", "/view", json.dumps({"drawing": [[[1, 5], [2, 6]]]}))
  assert status == 404 and "--model_dir" in answer["error"]


# --- The page in a real browser ------------------------------------------------


def _chromium():
  try:
    from playwright.sync_api import sync_playwright  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import
  except ImportError:
    pytest.skip("no Playwright (pip install playwright); .ci/run installs it")
  path = shutil.which("chromium") or shutil.which("chromium-browser")
  if not path:
    pytest.skip("no Chromium (apt-get install chromium); .ci/run installs it")
  return path


@contextlib.contextmanager
def demo_cli(saved_model):
  """``python -m quickdraw_tf.demo --port=0`` running; yields its URL (read from its first line)."""
  # A deadline no machine reaches: the page's answers, not the server's load shedding (tests/test_demo_server.py).
  process = subprocess.Popen([sys.executable, "-m", "quickdraw_tf.demo", f"--saved_model={saved_model}", "--port=0",
                              "--deadline=600"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  try:
    line = process.stdout.readline()  # Blocks until the server listens (or has exited).
    assert line.startswith("serving "), line
    url = line.split(" at ")[1].split()[0]
    assert url.startswith("http://127.0.0.1:")  # Loopback unless --host.
    yield url
  finally:
    process.terminate()
    process.wait(timeout=60)


def predict_cli(saved_model, drawings, tmp_path):
  """predict's ranked guesses for each drawing: list of [(class, probability str)]."""
  path = tmp_path / "drawings.ndjson"
  path.write_text("".join(json.dumps({"drawing": d}) + "\n" for d in drawings))
  result = verbs.run("predict", f"--saved_model={saved_model}", f"--input={path}")
  assert result.returncode == 0, result.stderr[-2000:]
  lines = [line.split(": ", 1)[1] for line in result.stdout.splitlines() if line.startswith(str(path))]
  assert len(lines) == len(drawings)
  return [[tuple(guess.rsplit(" ", 1)) for guess in line.split(", ")] for line in lines]


def draw_stroke(page, box, xs, ys, lift=True):
  page.mouse.move(box["x"] + xs[0] * SCALE, box["y"] + ys[0] * SCALE)
  page.mouse.down()
  for x, y in zip(xs[1:], ys[1:]):
    page.mouse.move(box["x"] + x * SCALE, box["y"] + y * SCALE)
  if lift:
    page.mouse.up()


def shown_guesses(page):
  page.wait_for_selector("body[data-settled=true]")
  return page.eval_on_selector_all("#guesses li", "items => items.map(i => [i.dataset.class, i.dataset.probability])")


@pytest.mark.parametrize("name,word", [("rnn", "cat"), ("resnet18", "snowflake")])
def test_page_draws_real_drawings_and_shows_predicts_guesses(name, word, tiny_run, data_dir, tmp_path):
  chromium = _chromium()  # Skips without Playwright or Chromium, so first.
  from playwright.sync_api import sync_playwright  # pylint: disable=g-import-not-at-top
  saved_model = os.path.join(tiny_run(name), run_dir.SAVED_MODEL)
  drawings = real_drawings(data_dir, [word])
  # Every stroke-by-stroke prefix with 2 points or more: the page must show predict's guesses for each.
  prefixes = [d[:i] for d in drawings for i in range(1, len(d) + 1)]
  expected = iter(predict_cli(saved_model, [p for p in prefixes if sum(len(s[0]) for s in p) >= 2], tmp_path))
  with demo_cli(saved_model) as url, sync_playwright() as playwright:
    browser = playwright.chromium.launch(executable_path=chromium, args=["--no-sandbox"])
    page = browser.new_page(viewport={"width": 1100, "height": 800})
    page.set_default_timeout(PAGE_TIMEOUT_MS)
    page.goto(url)
    page.wait_for_selector("body[data-ready=true]")
    box = page.locator("#canvas").bounding_box()
    for strokes in drawings:
      page.click("#clear")
      assert shown_guesses(page) == []
      for i, (xs, ys) in enumerate(strokes):
        draw_stroke(page, box, xs, ys)
        shown = shown_guesses(page)
        if sum(len(s[0]) for s in strokes[:i + 1]) < 2:
          assert shown == []
          continue
        want = next(expected)
        assert [(c, f"{float(p):.3f}") for c, p in shown] == want, (i, shown, want)
      # The page recorded exactly the drawing, point for point.
      assert page.evaluate("state.strokes") == strokes
      assert page.get_attribute("#view", "src").startswith("data:image/png;base64,")
    # "Save as ndjson" downloads the drawing as one simplified line.
    page.fill("#word", word)
    with page.expect_download() as download:
      page.click("#save")
    with open(download.value.path(), encoding="utf-8") as f:
      record = json.loads(f.read())
    assert record["word"] == word and len(record["drawing"]) == len(drawings[-1])
    # Undo takes the last stroke back; the guesses follow.
    page.click("#undo")
    shown_guesses(page)
    assert page.evaluate("state.strokes") == drawings[-1][:-1]
    # While the pen is still down, the throttled guesses follow the stroke in progress.
    page.click("#clear")
    xs, ys = drawings[0][0]
    draw_stroke(page, box, xs, ys, lift=False)
    page.wait_for_function("state.guessesFor === state.changes && state.timer === null")
    assert page.locator("#guesses li").count() == 3 and page.evaluate("state.current !== null")
    page.mouse.up()
    if os.environ.get("DEMO_SCREENSHOT"):
      page.screenshot(path=os.environ["DEMO_SCREENSHOT"])
    browser.close()
