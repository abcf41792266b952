r"""The demo server under concurrent clients: throughput, latency, 503s, errors, memory.

  python -m bench.demo_load [--clients=1,8,32,128] [--seconds=20] [--model=rnn] [--view_share=0.25]

Trains a small model for a few steps on real drawings (as tests/conftest.py's
tiny_run: 4 words of simplified_lamnguyen, 2 steps, exported), starts
``python -m quickdraw_tf.demo`` on 127.0.0.1 (a process of its own, its
default --deadline and --io_timeout), warms it up (one /predict and two /view
of real drawings), then for each client count runs that many client threads
for --seconds: each sends, one connection a request, a real test drawing to
/view (share --view_share) or /predict, and again as soon as it has its
answer (a 503 is not waited out: clients are as pushy as can be). Reported
per client count: requests/s answered, p50/p99 latency of the accepted (200)
/predict and /view, shares of 200, 503 (with Retry-After) and anything else
(other statuses, connection errors, timeouts), the server's resident memory
before, after and at its peak (VmHWM), and the machine's load average. Then
the cost of the largest requests the limits accept, one at a time. The
tables go into the ``demo_load`` section of BENCHMARKS.md.
"""

import collections
import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time

from absl import app
from absl import flags
import numpy as np

from bench import report
from quickdraw_tf import demo as demo_lib
from quickdraw_tf import make_records
from quickdraw_tf import models

WORDS = ("cat", "bicycle", "fish", "snowflake")
CLIENT_TIMEOUT_S = 60  # A client gives up (an error) after this long without an answer.

flags.DEFINE_list("clients", ["1", "8", "32", "128"], "Concurrent client counts, one level each.")
flags.DEFINE_float("seconds", 20, "Seconds each level runs.")
flags.DEFINE_string("model", "rnn", "The model trained and served (rnn: the slowest /view, a BiLSTM's).")
flags.DEFINE_float("view_share", 0.25, "Share of requests that go to /view (the rest: /predict).")
flags.DEFINE_string("work_dir", None, "Where the records and the model go (default: a temporary directory).")
flags.DEFINE_bool("write", True, "Write the tables into BENCHMARKS.md.")
report.define_data_dir()


def train_small_model(data_dir, work_dir, model):
  """Records of `WORDS` and ``model`` trained 2 steps through train's command line; returns its SavedModel."""
  records_dir, model_dir = os.path.join(work_dir, "records"), os.path.join(work_dir, model)
  inputs = [os.path.join(data_dir, "strokes", "simplified_lamnguyen", f"{w}.ndjson") for w in WORDS]
  make_records.convert(inputs, records_dir, workers=1, progress=False, num_shards=1, eval_fraction=0.1,
                       test_fraction=0.1)
  subprocess.run([sys.executable, "-m", "quickdraw_tf.train", f"--model={model}", f"--records={records_dir}",
                  f"--model_dir={model_dir}", "--epochs=1", "--steps_per_epoch=2", "--eval_steps=1",
                  "--batch_size=8", *(["--image_size=28"] if models.get(model).uses_image else [])], check=True,
                 capture_output=True,
                 env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  return os.path.join(model_dir, "saved_model")


def request_bodies(data_dir):
  """JSON bodies of real drawings of `WORDS` (the last 10 lines of each file: not the first ones trained on)."""
  bodies = []
  for word in WORDS:
    with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", f"{word}.ndjson"), encoding="utf-8") as f:
      lines = f.read().splitlines()[-10:]
    bodies += [json.dumps({"drawing": json.loads(line)["drawing"]}) for line in lines]
  return bodies


def start_demo(saved_model):
  """(process, port) of ``python -m quickdraw_tf.demo --port=0``, once it listens."""
  process = subprocess.Popen([sys.executable, "-m", "quickdraw_tf.demo", f"--saved_model={saved_model}", "--port=0"],
                             stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
                             env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2"})
  line = process.stdout.readline()
  if not line.startswith("serving "):
    process.kill()
    raise RuntimeError(f"the demo did not start: {line!r}")
  return process, int(line.split(" at ")[1].split()[0].rstrip("/").rsplit(":", 1)[1])


def memory_mib(pid, field="VmRSS"):
  """A /proc/PID/status memory field in MiB (VmRSS: now, VmHWM: the peak)."""
  with open(f"/proc/{pid}/status", encoding="ascii") as f:
    for line in f:
      if line.startswith(field + ":"):
        return int(line.split()[1]) / 1024
  return float("nan")


def one_request(port, path, body):
  """(outcome, seconds): outcome a status int, or the name of the exception a client got."""
  start = time.perf_counter()
  connection = http.client.HTTPConnection("127.0.0.1", port, timeout=CLIENT_TIMEOUT_S)
  try:
    connection.request("POST", path, body=body, headers={"Content-Type": "application/json"})
    response = connection.getresponse()
    response.read()
    outcome = response.status
    if outcome == 503 and not response.getheader("Retry-After"):
      outcome = "503 without Retry-After"
  except (OSError, http.client.HTTPException) as e:
    outcome = type(e).__name__
  finally:
    connection.close()
  return outcome, time.perf_counter() - start


def run_level(port, clients, seconds, bodies, view_share):
  """Results of ``clients`` threads sending requests for ``seconds``: list of (path, outcome, seconds)."""
  results, lock = [], threading.Lock()
  end = time.monotonic() + seconds

  def client(seed):
    rng, mine = random.Random(seed), []
    while time.monotonic() < end:
      path = "/view" if rng.random() < view_share else "/predict"
      mine.append((path, *one_request(port, path, rng.choice(bodies))))
    with lock:
      results.extend(mine)

  threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
  for thread in threads:
    thread.start()
  for thread in threads:
    thread.join()
  return results


def percentile_ms(results, path, q):
  times = [s for p, outcome, s in results if p == path and outcome == 200]
  return f"{np.percentile(times, q) * 1000:.0f}" if times else "-"


def level_row(clients, results, seconds, memory, load):
  """One table row of a level's results."""
  outcomes = collections.Counter(outcome for _, outcome, _ in results)
  total = len(results)
  other = {str(k): v for k, v in outcomes.items() if k not in (200, 503)}
  share = lambda n: f"{100 * n / total:.1f}" if total else "-"
  return [clients, f"{total / seconds:.1f}", percentile_ms(results, "/predict", 50),
          percentile_ms(results, "/predict", 99), percentile_ms(results, "/view", 50),
          percentile_ms(results, "/view", 99), share(outcomes[200]), share(outcomes[503]),
          share(sum(other.values())) + (f" ({', '.join(f'{k}: {v}' for k, v in sorted(other.items()))})" if other
                                        else ""),
          f"{memory[0]:.0f} / {memory[1]:.0f} / {memory[2]:.0f}", f"{load[0]:.2f} / {load[1]:.2f}"]


def largest_requests(port):
  """Rows (request, status, seconds) of the largest drawings the limits accept, one request at a time."""
  rng = np.random.default_rng(0)
  walk = np.cumsum(rng.normal(0, 3, (demo_lib.MAX_POINTS, 2)), axis=0)
  # Dashes stay dashes when simplified: the longest drawing /view explains without simplifying it away.
  dashes = [[[float(x), x + 3.0], [float(y), y + 3.0]] for x, y in walk[:demo_lib.VIEW_MAX_POINTS // 2] * 10]
  angle = np.linspace(0, 2 * np.pi, demo_lib.MAX_POINTS)
  circle = json.dumps({"drawing": [[(100 + 90 * np.cos(angle)).tolist(), (100 + 90 * np.sin(angle)).tolist()]]})
  cases = [(f"/predict, {demo_lib.PREDICT_MAX_POINTS} points (PREDICT_MAX_POINTS)", "/predict",
            json.dumps({"drawing": [walk[:demo_lib.PREDICT_MAX_POINTS].T.tolist()]})),
           (f"/predict, {demo_lib.MAX_POINTS} points of one stroke (MAX_POINTS, simplified first)", "/predict",
            circle),
           (f"/view, {demo_lib.MAX_POINTS} points of one stroke (MAX_POINTS, simplified first)", "/view", circle),
           (f"/view, {demo_lib.VIEW_MAX_POINTS} points in 2-point strokes (VIEW_MAX_POINTS)", "/view",
            json.dumps({"drawing": dashes}))]
  rows = []
  for name, path, body in cases:
    one_request(port, path, body)  # The first of a new length may trace.
    outcome, seconds = one_request(port, path, body)
    rows.append([name, f"{len(body) // 1024} KiB", outcome, f"{seconds:.2f}"])
  return rows


def measure(saved_model, bodies):
  """(level rows, largest-request rows, goal line) against a fresh demo process."""
  process, port = start_demo(saved_model)
  try:
    for path in ("/predict", "/view", "/view"):
      one_request(port, path, bodies[0])
    one_request(port, "/view", bodies[-1])
    rows, verdicts = [], []
    for clients in map(int, flags.FLAGS.clients):
      before, load_before = memory_mib(process.pid), os.getloadavg()[0]
      results = run_level(port, clients, flags.FLAGS.seconds, bodies, flags.FLAGS.view_share)
      memory = (before, memory_mib(process.pid), memory_mib(process.pid, "VmHWM"))
      rows.append(level_row(clients, results, flags.FLAGS.seconds, memory, (load_before, os.getloadavg()[0])))
      print(" | ".join(map(str, rows[-1])), flush=True)
      accepted = [s for p, outcome, s in results if p == "/predict" and outcome == 200]
      bad = sum(1 for _, outcome, _ in results if outcome not in (200, 503))
      verdicts.append((clients, bad, np.percentile(accepted, 99) if accepted else float("nan")))
    largest = largest_requests(port)
  finally:
    process.terminate()
    process.wait(timeout=60)
  clients, bad, p99 = verdicts[-1]
  goal = (f"Goal at {clients} clients (no connection error, no 5xx but 503, accepted /predict p99 under 1 s): "
          f"{'met' if bad == 0 and p99 < 1 else 'NOT met'} ({bad} other outcomes, p99 {p99 * 1000:.0f} ms).")
  return rows, largest, goal


def main(argv):
  del argv
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  with tempfile.TemporaryDirectory() as temporary:
    work_dir = FLAGS.work_dir or temporary
    saved_model = os.path.join(work_dir, FLAGS.model, "saved_model")
    if not os.path.isdir(saved_model):
      saved_model = train_small_model(FLAGS.data_dir, work_dir, FLAGS.model)
    rows, largest, goal = measure(saved_model, request_bodies(FLAGS.data_dir))
  body = report.table(["clients", "requests/s", "/predict p50 ms", "/predict p99 ms", "/view p50 ms", "/view p99 ms",
                       "200 %", "503 %", "other %", "server MiB before / after / peak", "load avg before / after"],
                      rows)
  body += (f"\n\n{goal}\n\nEach level runs {FLAGS.seconds:g} s; {FLAGS.view_share:.0%} of requests go to /view; "
           f"model: {FLAGS.model} trained 2 steps on 4 words (the served cost is its architecture's, not its "
           "accuracy's). Latencies are of the answered 200s as the client saw them (connection included); "
           "the load average is the machine's (1 min): other work on it slows the server and the clients alike.\n\n"
           "The largest requests the limits accept, one at a time (the second call of each: the first may trace):\n\n")
  body += report.table(["request", "body", "status", "seconds"], largest)
  command = "python -m bench.demo_load " + " ".join(sys.argv[1:])
  if FLAGS.write:
    report.write_section("demo_load", "The demo server under load (CPU)", command, body)
  else:
    print(body)
  return 0


if __name__ == "__main__":
  app.run(main)
