r"""TFLite exports beside their SavedModel: file size, one drawing's latency, test-split accuracy.

  python -m bench.tflite --model_dirs=runs/rnn,runs/resnet18 [--quantize=none,float16,int8] [--max_test=500]

For each trained model_dir (written by train) and quantisation, writes the
``.tflite`` with `quickdraw_tf.serving.tflite.export` into a temporary directory, then
on the first ``--max_test`` drawings of the test split of the records the model
was trained on (``--records`` to override):
  * size of the ``.tflite`` file (and of the SavedModel directory);
  * latency: median wall time of one drawing, raw ink in, probabilities out,
    over ``--runs`` calls after 3 warm-up calls, one interpreter thread; for
    image models it includes the rasteriser, which runs in TensorFlow (the
    split documented in quickdraw_tf/serving/tflite.py); the SavedModel row calls its
    ``serving_default`` the same way;
  * top-1 accuracy, and top-1 agreement and the largest probability difference
    with the SavedModel.
The table goes into the ``tflite`` section of BENCHMARKS.md.
"""

import os
import statistics
import sys
import tempfile
import time

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from bench import report
from quickdraw_tf import models
from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.pipelines import records
from quickdraw_tf.serving import tflite
from quickdraw_tf.training import run_dir

flags.DEFINE_list("model_dirs", None, "Trained model_dirs (train's output).")
flags.DEFINE_list("quantize", list(tflite.QUANTIZATIONS), "Quantisations to export.")
flags.DEFINE_string("records", None, "Records directory (default: each model's own, from its config.json).")
flags.DEFINE_integer("max_test", 500, "Test drawings per model.")
flags.DEFINE_integer("runs", 50, "Timed calls for the latency.")
flags.DEFINE_string("note", "", "A sentence for the table (what the models are, how busy the machine was).")
flags.DEFINE_bool("write", True, "Write the table into BENCHMARKS.md.")


def test_drawings(records_dir, limit):
  """(points float32 [n, 3], class index) of the first `limit` test drawings."""
  dataset = tf.data.TFRecordDataset(records.shard_paths(records_dir, "test")).map(records.parse).take(limit)
  return [(ink_lib.decode(e["ink"].numpy(), e["bbox"].numpy(), e["origin"].numpy()), int(e["class_index"]))
          for e in dataset]


def measure(predict_fn, drawings, runs):
  """(median seconds of one drawing, probabilities [drawings, classes])."""
  for _ in range(3):
    predict_fn(drawings[0][0])
  times = []
  for _ in range(runs):
    start = time.perf_counter()
    predict_fn(drawings[0][0])
    times.append(time.perf_counter() - start)
  return statistics.median(times), np.stack([predict_fn(points) for points, _ in drawings])


def directory_size(path):
  return sum(os.path.getsize(os.path.join(d, f)) for d, _, files in os.walk(path) for f in files)


def bench_model(model_dir, quantizations, records_dir, max_test, runs):
  """Table rows for one model_dir: the SavedModel, then each quantisation."""
  model, config = run_dir.restore(model_dir)
  spec = models.get(config["model"])
  drawings = test_drawings(records_dir or config["records"], max_test)
  labels = np.array([label for _, label in drawings])
  saved_model = os.path.join(model_dir, run_dir.SAVED_MODEL)
  signature = tf.saved_model.load(saved_model).signatures["serving_default"]
  base_latency, base = measure(
      lambda p: signature(ink=p[None], length=np.array([len(p)], np.int32))["probabilities"].numpy()[0], drawings,
      runs)
  name = f"{spec.name} ({len(config['classes'])} classes)"
  rows = [[name, "SavedModel", f"{directory_size(saved_model) / 2**20:.1f}", f"{base_latency * 1e3:.2f}",
           f"{(base.argmax(1) == labels).mean():.3f}", "-", "-"]]
  with tempfile.TemporaryDirectory() as tmp:
    for quantize in quantizations:
      path = os.path.join(tmp, f"{quantize}.tflite")
      tflite.export(model, spec, config["classes"], path, run_dir.image_size(config), quantize)
      classifier = tflite.Classifier(path, num_threads=1)
      latency, got = measure(lambda p: classifier(p)["probabilities"], drawings, runs)  # noqa: B023  # pylint: disable=cell-var-from-loop
      rows.append([name, f"TFLite {quantize}", f"{os.path.getsize(path) / 2**20:.1f}", f"{latency * 1e3:.2f}",
                   f"{(got.argmax(1) == labels).mean():.3f}",
                   f"{(got.argmax(1) == base.argmax(1)).mean():.3f}", f"{np.abs(got - base).max():.1e}"])
  return rows, len(drawings)


def main(argv):
  del argv
  FLAGS = flags.FLAGS  # pylint: disable=invalid-name
  if not FLAGS.model_dirs:
    raise app.UsageError("--model_dirs is required")
  rows, counts = [], []
  for model_dir in FLAGS.model_dirs:
    try:
      model_rows, count = bench_model(model_dir, FLAGS.quantize, FLAGS.records, FLAGS.max_test, FLAGS.runs)
    except (FileNotFoundError, tflite.TFLiteError) as e:
      print(f"bench.tflite: {model_dir}: skipped: {e}", file=sys.stderr)
      continue
    rows += model_rows
    counts.append(f"{os.path.basename(model_dir.rstrip('/'))}: {count}")
  body = report.table(["model", "format", "size MiB", "latency ms (1 drawing)", "test top-1",
                       "top-1 = SavedModel", "max abs. probability difference"], rows)
  body += f"\n\nTest drawings per model: {', '.join(counts)}. {FLAGS.note}\n"
  command = "python -m bench.tflite " + " ".join(a for a in sys.argv[1:])
  if FLAGS.write:
    report.write_section("tflite", "TensorFlow Lite exports against the SavedModel (CPU)", command, body)
  else:
    print(body)
  return 0


if __name__ == "__main__":
  app.run(main)
