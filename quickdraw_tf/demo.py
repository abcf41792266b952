r"""python -m quickdraw_tf.demo: draw, and watch a trained model guess.

  python -m quickdraw_tf.demo --saved_model=runs/rnn/saved_model [--port=8080] [--host=127.0.0.1]

Serves one page (its script and style come from this package: it works
offline): a canvas for mouse, pen or finger, "clear" and "undo stroke", the
model's top guesses after every stroke (and, throttled, while drawing), what
the model sees, and a button that saves the drawing as one ndjson line of
Google's simplified format.

Endpoints (JSON bodies; a drawing is ``{"drawing": [[xs, ys], ...]}``, the
strokes as in QuickDraw's ndjson, any scale):
  GET  /             the page; GET /static/<file>: its script and style
  GET  /info         class names, the model's name and what /view shows
  POST /predict      every output of the SavedModel's ``serving_default`` for
                     the drawing, as lists (batch row 0)
  POST /view         what the model sees, a PNG (base64): the rasterised image
                     (image models, from `data.model_inputs`, the serving
                     graph's rasteriser) or per-stroke colours (`visualize`'s
                     rnn contributions / ink saliency); needs the model_dir
  POST /ndjson       the drawing simplified (`ink.simplify_raw`) as one line
Bodies over `MAX_BODY_BYTES` get 413; malformed ones 400 with a one-line
message. The server listens on 127.0.0.1 unless ``--host`` says otherwise.

Under load (docs/serving.md; bench/demo_load.py measures it): each endpoint's
work is bounded by its limits (/predict reads at most `PREDICT_MAX_POINTS`
points and /view explains at most `VIEW_MAX_POINTS`: a longer drawing is
simplified first, as Google's dataset is, and refused if still longer); the model runs one
/predict and one /view or /ndjson at a time (a `Lane` each), and a request
that cannot have its lane within ``--deadline`` seconds gets 503 with
``Retry-After``; a client silent for ``--io_timeout`` seconds, or whose body
takes longer than that, gets 408 and is closed; the listen backlog is
`LISTEN_BACKLOG`.
"""

import base64
import contextlib
import datetime
import http.server
import json
import os
import threading
import time

from absl import flags
from absl import logging
import numpy as np
import tensorflow as tf

from quickdraw_tf import cli
from quickdraw_tf import export as export_lib
from quickdraw_tf import models
from quickdraw_tf import progress
from quickdraw_tf import visualize
from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.drawings import raster
from quickdraw_tf.pipelines import records
from quickdraw_tf.serving import saved_model as saved_model_lib
from quickdraw_tf.training import run_dir

STATIC_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "demo_static")
CONTENT_TYPES = {".html": "text/html; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                 ".css": "text/css; charset=utf-8", ".png": "image/png"}
MAX_BODY_BYTES = 256 * 1024  # About 20k points: far more than anyone draws; bounds the rasteriser's work.
MAX_POINTS = 5000
# The rnn's BiLSTMs cost about 0.3 ms a point in /predict and 2 ms in /view (traced, 2 quiet cores): drawings with
# more points are simplified first (what the model was trained on), and refused if still longer.
PREDICT_MAX_POINTS = 1000
VIEW_MAX_POINTS = 300
VIEW_SIZE = 256  # Side of the stroke picture, in pixels.
DEADLINE_S = 0.5  # The longest a request waits for its lane before 503: accepted ones answer within about 1 s.
IO_TIMEOUT_S = 10.0  # The longest a client may stay silent, or take to send a body.
LISTEN_BACKLOG = 1024  # Connections the kernel holds until accepted (the standard library's default: 5).
RETRY_AFTER_S = 1


class RequestError(ValueError):
  """A request the page (or a client) got wrong; ``status`` is the HTTP code."""
  status = 400


class NotFound(RequestError):
  """What the request asks for does not exist here."""
  status = 404


class Busy(RequestError):
  """The server is full: the client should retry after ``Retry-After`` seconds."""
  status = 503


class Lane:
  """One computation at a time; a request that waits longer than ``deadline`` seconds gets `Busy`.

  Args:
    name: what it runs, for the message.
    deadline: seconds a request may wait (0: only when it is free).
  """

  def __init__(self, name, deadline):
    self.name, self.deadline = name, deadline
    self._lock = threading.Lock()

  @contextlib.contextmanager
  def held(self):
    if not self._lock.acquire(timeout=self.deadline):
      raise Busy(f"the server is busy ({self.name} did not free up within {self.deadline:g} s): retry after "
                 f"{RETRY_AFTER_S} s")
    try:
      yield
    finally:
      self._lock.release()


def parse_drawing(body):
  """A request body -> (points float32 ``[n, 3]``, the parsed dict).

  Raises:
    RequestError: not JSON, no ``drawing``, strokes `ink.strokes_to_points`
      rejects, fewer than 2 or more than `MAX_POINTS` points.
  """
  try:
    request = json.loads(body)
  except (ValueError, UnicodeDecodeError) as e:
    raise RequestError(f"the body is not JSON: {e}") from None
  except RecursionError:
    raise RequestError("the body is JSON nested deeper than a drawing ever is") from None
  if not isinstance(request, dict) or "drawing" not in request:
    raise RequestError('the body must be a JSON object with "drawing": [[xs, ys], ...]')
  try:
    points = ink_lib.strokes_to_points(request["drawing"])
  except (ValueError, TypeError) as e:
    raise RequestError(f"bad drawing: {e}") from None
  if not 2 <= len(points) <= MAX_POINTS:
    raise RequestError(f"a drawing needs 2 to {MAX_POINTS} points; this one has {len(points)}")
  return points, request


def bounded(points, limit, what):
  """``points`` if at most ``limit``, else `ink.simplify_raw`'s (Google's recipe) if that is short enough.

  Raises:
    RequestError: still more than ``limit`` points simplified; ``what`` names the endpoint.
  """
  if len(points) <= limit:
    return points
  simplified = ink_lib.simplify_raw(points)
  if len(simplified) > limit:
    raise RequestError(f"{what} at most {limit} points; this drawing has {len(simplified)} even simplified "
                       f"(Google's recipe), {len(points)} as sent")
  return simplified


def _jsonable(value):
  """A numpy output row -> lists of floats, ints, bools or str."""
  if value.dtype.kind in "SO":
    return np.vectorize(lambda b: b.decode("utf-8", "replace"), otypes=[object])(value).tolist()
  return value.tolist()


def _png_base64(image):
  return base64.b64encode(raster.encode_png(image)).decode("ascii")


class Demo:
  """The model behind the page: the serving signature, and the Keras model for /view.

  One call at a time of `view` (it builds the Keras model on first use); `predict` may run beside it.

  Args:
    saved_model: a SavedModel written by export.
    model_dir: the training run (config.json, weights), for /view; default
      the SavedModel's parent directory when it holds a config.json.
  """

  def __init__(self, saved_model, model_dir=None):
    self.signature = tf.saved_model.load(saved_model).signatures[saved_model_lib.INK_SIGNATURE]
    with open(os.path.join(saved_model, export_lib.CLASSES_ASSET), encoding="utf-8") as f:
      self.classes = f.read().splitlines()
    parent = os.path.dirname(os.path.abspath(saved_model))
    if model_dir is None and os.path.exists(os.path.join(parent, run_dir.CONFIG_FILE)):
      model_dir = parent
    self.model_dir = model_dir
    self.config = run_dir.read_config(model_dir) if model_dir else None
    self.spec = models.get(self.config["model"]) if self.config else None
    self._model = None

  @property
  def view_kind(self):
    """What /view shows: "image" (image models, fusion's CNN input), "contribution" (rnn), "saliency", or None."""
    if self.spec is None:
      return None
    if self.spec.uses_image:
      return "image"
    return "contribution" if self.spec.name == "rnn" else "saliency"

  def info(self):
    return {"classes": self.classes, "model": self.spec.name if self.spec else None, "view": self.view_kind,
            "outputs": sorted(self.signature.structured_outputs)}

  def _outputs(self, points):
    return self.signature(ink=tf.constant(points[None]), length=tf.constant([len(points)], tf.int32))

  def predict(self, points):
    """Every serving output for one drawing: dict name -> list (batch row 0).

    A drawing of more than `PREDICT_MAX_POINTS` points is simplified first (`bounded`); ``simplified_from``
    then says how many points it had.
    """
    read = bounded(points, PREDICT_MAX_POINTS, "/predict reads")
    outputs = {name: _jsonable(value.numpy()[0]) for name, value in self._outputs(read).items()}
    return outputs if len(read) == len(points) else {**outputs, "simplified_from": len(points)}

  def view(self, points):
    """What the model sees: ``{"kind", "title", "png"}`` (image models: the input image; else stroke colours).

    Ink models explain at most `VIEW_MAX_POINTS` points: a longer drawing is
    simplified first (`ink.simplify_raw`, Google's recipe) and the title says
    so; one still longer is a `RequestError`.
    """
    if self.spec is None:
      raise NotFound("no model_dir (config.json and weights) next to the SavedModel: restart the demo with "
                     "--model_dir=DIR to see what the model sees")
    if self.view_kind == "image":
      features = visualize.model_features(self.spec, visualize.Drawing("the page", points=points),
                                          run_dir.image_size(self.config))
      image = np.round(features["image"].numpy()[0, ..., 0] * 255)
      return {"kind": "image", "title": f"{image.shape[0]}x{image.shape[1]} input image", "png": _png_base64(image)}
    explained = bounded(points, VIEW_MAX_POINTS, "/view explains")
    note = f" (simplified: {len(explained)} of {len(points)} points)" if len(explained) < len(points) else ""
    values, title, kind, signed = self._stroke_values(explained)
    picture = visualize.stroke_picture(explained, values, title + note, signed, size=VIEW_SIZE)
    return {"kind": kind, "title": title + note, "png": _png_base64(picture)}

  def _stroke_values(self, points):
    """`visualize.stroke_values` for the serving signature's top class: (values, title, kind, signed)."""
    features = visualize.model_features(self.spec, visualize.Drawing("the page", points=points))
    if self._model is None:  # Built on the first drawing: the page's guesses need only the SavedModel.
      self._model, _ = run_dir.restore(self.model_dir)
    class_index = int(np.argmax(self._outputs(points)["probabilities"].numpy()[0]))  # A graph: eager Keras is slow.
    values, title, kind, signed, _ = visualize.stroke_values(self._model, self.spec, features, class_index,
                                                              self.classes)
    return values, title, kind, signed

  def ndjson_line(self, points, request):
    """The drawing in Google's simplified format, as one ndjson line (str, no newline).

    Raises:
      RequestError: a ``word`` make_records would skip (`records.class_name_problem`: the one rule for class names).
    """
    word = request.get("word", "")
    problem = records.class_name_problem(word)
    if problem:
      raise RequestError(f'"word": {problem}; make_records would skip the line (bad_word): name what you drew')
    strokes = [[xs.astype(int).tolist(), ys.astype(int).tolist()]
               for xs, ys in ink_lib.points_to_strokes(ink_lib.simplify_raw(points))]
    now = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M:%S.%f UTC")
    guess = request.get("guess")
    return json.dumps({"word": word, "countrycode": "", "timestamp": now,
                       "recognized": guess == word, "key_id": "", "drawing": strokes},
                      separators=(",", ":"))


class Handler(http.server.BaseHTTPRequestHandler):
  """The page's requests; ``server`` is the `Server`."""

  server_version = "quickdraw_tf.demo"
  ROUTES = {"/predict": ("predict", "predict"), "/view": ("view", "view"), "/ndjson": ("ndjson_line", "view")}

  @property
  def timeout(self):
    """Seconds a read or write of the socket may wait (`socketserver.StreamRequestHandler` sets it)."""
    return self.server.io_timeout

  def _send(self, status, body, content_type="application/json"):
    if isinstance(body, (dict, list)):
      body = json.dumps(body)
    if isinstance(body, str):
      body = body.encode("utf-8")
    self.send_response(status)
    self.send_header("Content-Type", content_type)
    self.send_header("Content-Length", str(len(body)))
    self.send_header("Cache-Control", "no-store")
    if status == Busy.status:
      self.send_header("Retry-After", str(RETRY_AFTER_S))
    self.end_headers()
    self.wfile.write(body)

  def _error(self, status, message):
    self._send(status, {"error": message})

  def do_GET(self):  # pylint: disable=invalid-name
    path = self.path.split("?", 1)[0]
    if path == "/info":
      return self._send(200, self.server.demo.info())
    name = "index.html" if path == "/" else path[len("/static/"):] if path.startswith("/static/") else None
    # Only the files the package ships: no path from the URL reaches the file system.
    if name not in os.listdir(STATIC_DIR):
      return self._error(404, f"no such page: {path}")
    with open(os.path.join(STATIC_DIR, name), "rb") as f:
      return self._send(200, f.read(), CONTENT_TYPES.get(os.path.splitext(name)[1], "application/octet-stream"))

  def _read_body(self, size):
    """The body's ``size`` bytes, within ``io_timeout`` seconds in all; TimeoutError past that."""
    end, chunks, left = time.monotonic() + self.server.io_timeout, [], size
    while left:
      self.connection.settimeout(max(end - time.monotonic(), 1e-3))
      chunk = self.rfile.read1(left)
      if not chunk:
        raise RequestError(f"the body ended after {size - left} of its {size} bytes (Content-Length)")
      chunks.append(chunk)
      left -= len(chunk)
    self.connection.settimeout(self.server.io_timeout)  # For the answer.
    return b"".join(chunks)

  def do_POST(self):  # pylint: disable=invalid-name
    route = self.ROUTES.get(self.path.split("?", 1)[0])
    if route is None:
      return self._error(404, f"no such endpoint: POST {self.path}")
    try:
      size = int(self.headers.get("Content-Length", ""))
    except ValueError:
      return self._error(411, "a Content-Length header is required")
    if size < 0:
      return self._error(400, f"Content-Length {size} is negative")
    if size > MAX_BODY_BYTES:
      self.close_connection = True  # The unread body must not be taken for the next request.
      return self._error(413, f"the body has {size} bytes; at most {MAX_BODY_BYTES} are accepted")
    method, lane = route
    try:
      points, request = parse_drawing(self._read_body(size))
      with self.server.lanes[lane].held():
        result = getattr(self.server.demo, method)(points, *[request] if method == "ndjson_line" else [])
    except TimeoutError:
      self.close_connection = True
      return self._error(408, f"the body did not arrive within {self.server.io_timeout:g} s")
    except RequestError as e:
      return self._error(e.status, str(e))
    except Exception as e:  # pylint: disable=broad-except
      # The page gets one line; the terminal the full story.
      logging.exception("%s failed", self.path)
      return self._error(500, f"{type(e).__name__}: {str(e).splitlines()[0] if str(e) else ''}")
    return self._send(200, {"ndjson": result} if method == "ndjson_line" else result)

  def log_message(self, format, *args):  # pylint: disable=redefined-builtin
    logging.info("%s - %s", self.address_string(), format % args)


class Server(http.server.ThreadingHTTPServer):
  """A thread a connection, a backlog of `LISTEN_BACKLOG`, and a `Lane` for /predict and one for /view and /ndjson.

  Args:
    demo: the `Demo`.
    address: (host, port); port 0: any free port (see ``server_port``).
    deadline: seconds a request may wait for its lane before 503.
    io_timeout: seconds a client may stay silent, or take to send its body, before 408 and close.
  """

  request_queue_size = LISTEN_BACKLOG
  daemon_threads = True

  def __init__(self, demo, address, deadline=DEADLINE_S, io_timeout=IO_TIMEOUT_S):
    super().__init__(address, Handler)
    self.demo, self.io_timeout = demo, io_timeout
    self.lanes = {"predict": Lane("/predict", deadline), "view": Lane("/view and /ndjson", deadline)}


def make_server(demo, host="127.0.0.1", port=8080, deadline=DEADLINE_S, io_timeout=IO_TIMEOUT_S):
  """A `Server` for `demo` on host:port (port 0: any free port; see ``server.server_port``)."""
  return Server(demo, (host, port), deadline, io_timeout)


FLAGS = flags.FLAGS


def define_flags():
  """Defines the demo's flags: --saved_model (required), --model_dir, --host, --port, --deadline, --io_timeout."""
  cli.define_saved_model()
  cli.define_model_dir("The training run, for what the model sees (default: the SavedModel's "
                      "parent directory when it holds config.json).")
  flags.DEFINE_string("host", "127.0.0.1", "Address to listen on; the default serves this machine only.")
  flags.DEFINE_integer("port", 8080, "Port (0: any free port).")
  flags.DEFINE_float("deadline", DEADLINE_S, "Seconds a request may wait for the model before 503 (Retry-After).",
                     lower_bound=0)
  flags.DEFINE_float("io_timeout", IO_TIMEOUT_S, "Seconds a client may stay silent, or take to send a body, before "
                     "408 and the connection closed.", lower_bound=0.001)
  flags.mark_flags_as_required(["saved_model"])


def main(_):
  """Serves --saved_model on --host:--port until Ctrl-C; the first line on stdout says the URL."""
  try:
    demo = Demo(FLAGS.saved_model, FLAGS.model_dir)
  except (OSError, ValueError) as e:
    raise cli.Error(f"{FLAGS.saved_model} is not a SavedModel written by export (python -m quickdraw_tf.export "
                    f"--model_dir=DIR): {e}") from None
  try:
    server = make_server(demo, FLAGS.host, FLAGS.port, FLAGS.deadline, FLAGS.io_timeout)
  except OSError as e:
    raise cli.Error(f"cannot listen on {FLAGS.host}:{FLAGS.port}: {e}; try --port=0") from None
  # The first line says where: a script (or the browser test) reads the port from it (progress.write flushes).
  progress.write(f"serving {FLAGS.saved_model} at http://{FLAGS.host}:{server.server_port}/ (Ctrl-C stops)")
  try:
    server.serve_forever()
  except KeyboardInterrupt:
    pass
  finally:
    server.server_close()


if __name__ == "__main__":
  cli.run(define_flags, main)
