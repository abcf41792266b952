r"""Input pipeline throughput against each model's training step, side by side.

  python -m bench.pipeline [--batch_size=64] [--data_dir=../shared/data/quickdraw]

Records: every simplified drawing (lamnguyen, codybenlewis, vlandham) of the
17 categories with the most vector drawings, made by make_records without
stored images (its default), so image models rasterise in-graph. For each
model at its default input size: examples/s of its pipeline alone (parse,
bucket, stroke-5, rasterise, resize), and of its training step alone on a
fixed batch (forward, backward, Adam update). The pipeline must deliver at
least 10x what the step consumes. Also: padded time steps with
bucket_by_sequence_length against plain padded_batch.
"""

import os
import sys
import tempfile
import time

from absl import app
from absl import flags
import keras
import tensorflow as tf

from bench import report
import quickdraw_tf
from quickdraw_tf import data
from quickdraw_tf import make_records
from quickdraw_tf import models

flags.DEFINE_integer("batch_size", 64, "Batch size of pipelines and steps.")
flags.DEFINE_string("data_dir", quickdraw_tf.DEFAULT_DATA_DIR, "The shared QuickDraw data.")
flags.DEFINE_float("seconds", 8.0, "Time spent measuring each pipeline.")
FLAGS = flags.FLAGS

VEC17 = ("horse", "dog", "monkey", "cat", "flamingo", "bird", "circle", "scorpion", "duck", "swan", "owl",
         "mosquito", "butterfly", "squiggle", "ant", "square", "triangle")


def make_vec17(out):
  inputs = [os.path.join(FLAGS.data_dir, "strokes", source, f"{word}.ndjson")
            for source in ("simplified_lamnguyen", "simplified_codybenlewis", "simplified_vlandham") for word in VEC17]
  return make_records.convert([p for p in inputs if os.path.exists(p)], out, categories=list(VEC17),
                              progress=False)


def pipeline_rate(records_dir, spec):
  """Examples/s of the training pipeline alone."""
  dataset = data.make_dataset(records_dir, "train", spec, FLAGS.batch_size, training=True)
  iterator = iter(dataset)
  for _ in range(5):  # Warm-up: tracing, autotuning, shuffle buffer.
    next(iterator)
  count, started = 0, time.time()
  while time.time() - started < FLAGS.seconds:
    features, _ = next(iterator)
    count += int(tf.shape(next(iter(features.values())))[0])
  return count / (time.time() - started)


def step_rate(records_dir, spec, num_classes):
  """Examples/s of one model's training step alone, on a fixed batch."""
  batch = next(iter(data.make_dataset(records_dir, "train", spec, FLAGS.batch_size, training=True, bucket=False)))
  model = models.build(spec.name, num_classes)
  model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  model.train_on_batch(*batch)  # Compile and warm up.
  model.train_on_batch(*batch)
  steps, started = 0, time.time()
  while steps < 3 or time.time() - started < 5:
    model.train_on_batch(*batch)
    steps += 1
  return steps * FLAGS.batch_size / (time.time() - started), model.count_params()


def padding_table(records_dir):
  spec = models.get("rnn")
  rows = []
  for batch_size in (32, 64, 128):
    real = padded = bucketed = 0
    for features, _ in data.make_dataset(records_dir, "train", spec, batch_size, bucket=False):
      real += int(tf.reduce_sum(features["ink_length"]))
      padded += int(tf.size(features["ink_length"])) * int(features["ink"].shape[1])
    for features, _ in data.make_dataset(records_dir, "train", spec, batch_size, bucket=True):
      bucketed += int(tf.size(features["ink_length"])) * int(features["ink"].shape[1])
    rows.append([batch_size, f"{real:,}", f"{padded:,} ({padded / real - 1:.0%} padding)",
                 f"{bucketed:,} ({bucketed / real - 1:.0%} padding)", f"{1 - bucketed / padded:.0%}"])
  return report.table(["batch", "real steps", "padded_batch steps", "bucketed steps", "steps saved"], rows)


def main(_):
  with tempfile.TemporaryDirectory() as tmp:
    stats = make_vec17(tmp)
    num_classes = len(stats["classes"])
    rows = []
    for name, spec in models.MODELS.items():
      pipeline = pipeline_rate(tmp, spec)
      step, params = step_rate(tmp, spec, num_classes)
      size = f"{spec.image_size} px" if spec.uses_image else "ink"
      source = "ink + rasterised image" if spec.uses_ink and spec.uses_image else (
          "rasterised image" if spec.uses_image else f"ink ({spec.ink_channels} channels)")
      rows.append([name, size, source, f"{params:,}", f"{pipeline:,.0f}", f"{step:,.1f}", f"**{pipeline / step:,.0f}x**",
                   "yes" if pipeline >= 10 * step else "NO"])
      print(rows[-1], flush=True)
    padding = padding_table(tmp)
  body = (f"Records: vec17, {sum(stats['totals'].values()):,} drawings ({stats['totals']['train']:,} train) of "
          f"{num_classes} classes, no stored images. Batch {FLAGS.batch_size}. Pipeline and training step are "
          "measured one after the other, each alone with all cores.\n\n"
          + report.table(["model", "input", "pipeline feeds", "parameters", "pipeline examples/s",
                          "training step examples/s", "pipeline / step", ">= 10x"], rows)
          + "\n\n### Padding: `bucket_by_sequence_length` against `padded_batch` (train split)\n\n" + padding + "\n")
  report.write_section("pipeline", "Input pipelines against training steps (CPU)",
                       "python -m bench.pipeline " + " ".join(sys.argv[1:]), body)


if __name__ == "__main__":
  app.run(main)
