r"""Input pipeline throughput against each model's training step, side by side.

  python -m bench.pipeline [--batch_size=64] [--rounds=2] [--data_dir=../shared/data/quickdraw]

Records: every simplified drawing (lamnguyen, codybenlewis, vlandham) of the
17 categories with the most vector drawings, made by make_records without
stored images (its default), so image models rasterise in-graph. For each
model at its default input size: examples/s of its pipeline alone (parse,
bucket, stroke-5, rasterise, resize), and of its training step alone on a
few of its batches held in memory (forward, backward, Adam update),
alternately, best of ``--rounds``. The pipeline must deliver at least 10x
what the step consumes. Also: padded time steps with
bucket_by_sequence_length against plain padded_batch, and the in-graph
rasteriser against Google's numpy_bitmap images. The load average
before and after is reported: other processes slow both sides.
"""

import glob
import json
import os
import sys
import tempfile
import time

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from bench import report
import quickdraw_tf
from quickdraw_tf import data
from quickdraw_tf import ink
from quickdraw_tf import make_records
from quickdraw_tf import models
from quickdraw_tf import raster

flags.DEFINE_integer("batch_size", 64, "Batch size of pipelines and steps.")
flags.DEFINE_string("data_dir", quickdraw_tf.DEFAULT_DATA_DIR, "The shared QuickDraw data.")
flags.DEFINE_float("seconds", 8.0, "Time spent measuring each pipeline and each training step, per round.")
flags.DEFINE_integer("rounds", 2, "Alternating pipeline / step measurements per model; the best of each is kept.",
                     lower_bound=1)
FLAGS = flags.FLAGS

STEP_BATCHES = 8  # Distinct batches the training step cycles through.

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


def training_step(records_dir, spec, num_classes):
  """One model's training step, built and warmed up.

  It cycles through the first ``STEP_BATCHES`` batches of the training
  pipeline, held in memory, so sequence models see the bucketed lengths they
  train on.

  Returns:
    a function measuring examples/s of the step alone, and the model's
    parameter count.
  """
  dataset = data.make_dataset(records_dir, "train", spec, FLAGS.batch_size, training=True, seed=0)
  batches = list(dataset.take(STEP_BATCHES))
  model = models.build(spec.name, num_classes)
  model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  for batch in batches:  # Trace every batch shape and warm up.
    model.train_on_batch(*batch)

  def rate():
    steps, started = 0, time.time()
    while steps < len(batches) or time.time() - started < FLAGS.seconds:
      model.train_on_batch(*batches[steps % len(batches)])
      steps += 1
    return steps * FLAGS.batch_size / (time.time() - started)

  return rate, model.count_params()


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


def raster_fidelity():
  """The in-graph rasteriser against Google's numpy_bitmap rows of the same drawings.

  Rows 0-24 of each ``numpy_bitmap_prefix`` array are the drawings of
  ``simplified_lamnguyen`` (22 categories), which cairosvg reproduces exactly.

  Returns:
    a Markdown table: mean absolute pixel difference (0-255) per number of
    sample rows (coverage along a row is exact).
  """
  points, bitmaps = [], []
  for path in sorted(glob.glob(os.path.join(FLAGS.data_dir, "bitmaps28", "numpy_bitmap_prefix", "*.npy"))):
    word = os.path.basename(path)[:-len(".npy")]
    with open(os.path.join(FLAGS.data_dir, "strokes", "simplified_lamnguyen", f"{word}.ndjson")) as f:
      drawings = [ink.strokes_to_points(json.loads(line)["drawing"]) for line in f]
    points += drawings
    bitmaps.append(np.load(path, mmap_mode="r")[:len(drawings)].reshape(-1, 28, 28).astype(np.float32))
  bitmaps = np.concatenate(bitmaps)
  padded = np.zeros((len(points), max(len(p) for p in points), 3), np.float32)
  for i, p in enumerate(points):
    padded[i, :len(p)] = p
  lengths = np.array([len(p) for p in points], np.int32)
  rows = []
  for supersample, note in ((8, "default"), (15, "as cairo's scan converter"), (4, "")):
    images = raster.rasterize(padded, lengths, 28, supersample).numpy()[..., 0] * 255
    per_image = np.abs(images - bitmaps).mean(axis=(1, 2))
    rows.append([f"{supersample}" + (f" ({note})" if note else ""), f"{len(points):,}", f"{per_image.mean():.3f}",
                 f"{np.percentile(per_image, 95):.3f}", f"{per_image.max():.3f}"])
  return report.table(["sample rows per pixel", "images", "mean absolute difference (0-255)", "95th pct per image",
                       "max per image"], rows)


def main(_):
  load_before = os.getloadavg()[0]
  with tempfile.TemporaryDirectory() as tmp:
    stats = make_vec17(tmp)
    num_classes = len(stats["classes"])
    rows = []
    for name, spec in models.MODELS.items():
      if spec.trainer:  # Generative models: bench/sketch_rnn.py.
        continue
      step_rate, params = training_step(tmp, spec, num_classes)
      rates = [(pipeline_rate(tmp, spec), step_rate()) for _ in range(FLAGS.rounds)]
      pipeline, step = max(p for p, _ in rates), max(s for _, s in rates)
      size = f"{spec.image_size} px" if spec.uses_image else "ink"
      source = "ink + rasterised image" if spec.uses_ink and spec.uses_image else (
          "rasterised image" if spec.uses_image else f"ink ({spec.ink_channels} channels)")
      rows.append([name, size, source, f"{params:,}", f"{pipeline:,.0f}", f"{step:,.1f}", f"**{pipeline / step:,.0f}x**",
                   "yes" if pipeline >= 10 * step else "NO"])
      print(rows[-1], flush=True)
    padding = padding_table(tmp)
  body = (f"Records: vec17, {sum(stats['totals'].values()):,} drawings ({stats['totals']['train']:,} train) of "
          f"{num_classes} classes, no stored images. Batch {FLAGS.batch_size}. Pipeline and training step are "
          f"measured alternately, never at once, on {os.cpu_count()} cores: {FLAGS.rounds} rounds of "
          f"{FLAGS.seconds:g} s each, the best round kept. The training step cycles through {STEP_BATCHES} "
          "batches of the (bucketed) training pipeline held in memory. 1-minute load average "
          f"{load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after: other processes on the machine "
          "slow both sides.\n\n"
          + report.table(["model", "input", "pipeline feeds", "parameters", "pipeline examples/s",
                          "training step examples/s", "pipeline / step", ">= 10x"], rows)
          + "\n\n### Padding: `bucket_by_sequence_length` against `padded_batch` (train split)\n\n" + padding
          + "\n\n### In-graph rasteriser (`raster.rasterize`, 28 px) against Google's `numpy_bitmap`\n\n"
          "Same drawings (rows 0-24 of each `numpy_bitmap_prefix` array = `simplified_lamnguyen`, 22 categories); "
          "the pipelines and the exported model use the default grid (a finer one costs rasterising "
          "throughput). Bar: 1.0 (`tests/test_raster.py`).\n\n"
          + raster_fidelity() + "\n")
  report.write_section("pipeline", "Input pipelines against training steps (CPU)",
                       " ".join(["python -m bench.pipeline"] + sys.argv[1:]), body)


if __name__ == "__main__":
  app.run(main)
