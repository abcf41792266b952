r"""Input pipeline throughput against each model's training step, side by side.

  python -m bench.pipeline [--batch_size=64] [--rounds=2] [--data_dir=../shared/data/quickdraw]

Records: every simplified drawing (lamnguyen, codybenlewis, vlandham) of the
17 categories with the most vector drawings, made by make_records without
stored images (its default), so image models rasterise in-graph. For each
model at its default input size: examples/s of its pipeline alone (parse,
bucket, stroke-5, rasterise, resize), and of its training step alone on a
few of its batches held in memory (forward, backward, Adam update),
alternately, best of ``--rounds``. The step is also given in examples per
CPU second, which other processes disturb less, in float32 and, on CPUs
with AVX512-BF16, mixed bfloat16: the column that shows a regression. The
pipeline must deliver at least 10x what the step consumes. Also: padded
time steps with bucket_by_sequence_length against plain padded_batch, and
the in-graph rasteriser against Google's numpy_bitmap images. Where the
host rasteriser feeds a step less than 10x, the pipeline reading stored
images of the model's side is measured too. The load
average before and after is reported: other processes slow both sides.
"""

import glob
import json
import os
import subprocess
import sys
import tempfile
import time

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from bench import report
from quickdraw_tf import make_records
from quickdraw_tf import models
from quickdraw_tf.drawings import ink
from quickdraw_tf.drawings import raster
from quickdraw_tf.pipelines import data
from quickdraw_tf.pipelines import records

flags.DEFINE_integer("batch_size", 64, "Batch size of pipelines and steps.")
report.define_data_dir()
flags.DEFINE_float("seconds", 8.0, "Time spent measuring each pipeline and each training step, per round.")
flags.DEFINE_integer("rounds", 2, "Alternating pipeline / step measurements per model; the best of each is kept.",
                     lower_bound=1)
flags.DEFINE_bool("placement_only", False, "Only the table of where images come from (host, replicas, cache, "
                  "stored), into a section of its own.")
FLAGS = flags.FLAGS

STEP_BATCHES = 8  # Distinct batches the training step cycles through.
FEED_RATIO = 10  # A pipeline must deliver this many times what the step consumes, to keep up on a busy host.



def make_vec17(out, words=report.VEC17, max_per_class=0, image_size=0):
  """Records of every simplified drawing of ``words`` (no stored images by default); returns make_records' stats."""
  inputs = [os.path.join(FLAGS.data_dir, "strokes", source, f"{word}.ndjson")
            for source in ("simplified_lamnguyen", "simplified_codybenlewis", "simplified_vlandham") for word in words]
  return make_records.convert([p for p in inputs if os.path.exists(p)], out, categories=list(words),
                              max_per_class=max_per_class, image_size=image_size, progress=False)


def pipeline_rate(records_dir, spec, **kwargs):
  """Examples/s of the training pipeline alone (``kwargs`` go to `data.make_dataset`)."""
  return dataset_rate(data.make_dataset(records_dir, "train", spec, FLAGS.batch_size, training=True, **kwargs))


def dataset_rate(dataset):
  """Examples/s of a dataset of batches, after a warm-up of 5 batches."""
  iterator = iter(dataset)
  for _ in range(5):  # Warm-up: tracing, autotuning, shuffle buffer.
    next(iterator)
  count, started = 0, time.time()
  while time.time() - started < FLAGS.seconds:
    _, labels = next(iterator)
    count += int(labels.shape[0])
  return count / (time.time() - started)


def cpu_has_bfloat16():
  """True when this CPU has the AVX512-BF16 instructions (bfloat16 matrix products)."""
  return "avx512_bf16" in report.cpu_flags()


def training_step(records_dir, spec, num_classes, policy="float32"):
  """One model's training step, built and warmed up.

  It cycles through the first ``STEP_BATCHES`` batches of the training
  pipeline, held in memory, so sequence models see the bucketed lengths they
  train on.

  Args:
    policy: the Keras dtype policy the model is built with ("float32",
      "mixed_bfloat16").

  Returns:
    a function measuring the step alone, returning (examples/s, examples per
    CPU second), and the model's parameter count.
  """
  dataset = data.make_dataset(records_dir, "train", spec, FLAGS.batch_size, training=True, seed=0)
  batches = list(dataset.take(STEP_BATCHES))
  previous_policy = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(policy)
  try:
    model = models.build(spec.name, num_classes)
  finally:
    keras.mixed_precision.set_global_policy(previous_policy)
  model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
  for batch in batches:  # Trace every batch shape and warm up.
    model.train_on_batch(*batch)

  def rate():
    steps, started, cpu_started = 0, time.time(), time.process_time()
    while steps < len(batches) or time.time() - started < FLAGS.seconds:
      model.train_on_batch(*batches[steps % len(batches)])
      steps += 1
    examples = steps * FLAGS.batch_size
    return examples / (time.time() - started), examples / (time.process_time() - cpu_started)

  return rate, model.count_params()


def stored_rate(stored_records, spec):
  """Best examples/s of ``spec``'s pipeline reading images stored at its side (made on first use, per side).

  ``stored_records`` is a directory of records directories named by image side.
  """
  records_dir = os.path.join(stored_records, str(spec.image_size))
  if not os.path.exists(records_dir):
    make_vec17(records_dir, image_size=spec.image_size)
  return max(pipeline_rate(records_dir, spec, image_source="stored") for _ in range(FLAGS.rounds))


def fed_by(pipeline, stored, step):
  """Which pipeline feeds the step FEED_RATIO times what it consumes: the host rasteriser, stored images, or none."""
  if pipeline >= FEED_RATIO * step:
    return "yes"
  return "from stored images" if stored >= FEED_RATIO * step else "NO"


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


# Peak memory of one rasterise call, in a fresh process: the peak RSS (reset just before the call, through
# /proc/self/clear_refs) over the RSS before it.
RASTER_MEMORY = r"""
import sys, numpy as np, tensorflow as tf
from quickdraw_tf.drawings import raster
def status(field):
  with open("/proc/self/status") as f:
    return next(int(line.split()[1]) * 1024 for line in f if line.startswith(field + ":"))
batch, points, size = (int(a) for a in sys.argv[1:])
rasterize = tf.function(raster.rasterize)
xy = np.random.default_rng(0).uniform(0, 255, (batch, points, 3)).astype(np.float32)
xy[..., 2] = (np.arange(points) % 8 == 7)
rasterize(xy[:2, :8], np.full(2, 8, np.int32), size)
with open("/proc/self/clear_refs", "w") as f:
  f.write("5")
before = status("VmRSS")
rasterize(xy, np.full(batch, points, np.int32), size).numpy()
print(status("VmHWM") - before)
"""


def raster_memory(batch, points, size):
  """Bytes one `raster.rasterize` call of a ``[batch, points]`` batch at ``size`` px adds to peak memory."""
  result = subprocess.run([sys.executable, "-c", RASTER_MEMORY, str(batch), str(points), str(size)],
                          capture_output=True, text=True, check=True)
  return int(result.stdout.split()[-1])


def rasteriser_rates(records_dir):
  """Examples/s (wall) and examples per CPU second of `raster.rasterize` alone at 28 px, per sample rows.

  Batches of 256 of the training pipeline's ink, held in memory.
  """
  spec = models.get("resnet18")
  batches = [f for f, _ in data.make_dataset(records_dir, "train", spec, 256, training=True, seed=0,
                                             raster_on_replicas=True).take(4)]
  rates = {}
  for supersample in (8, 4):
    rasterize = tf.function(lambda p, n, s=supersample: raster.rasterize(p, n, raster.BITMAP_SIZE, s))
    for f in batches:
      rasterize(f["points"], f["lengths"])
    count, started, cpu_started = 0, time.time(), time.process_time()
    while time.time() - started < FLAGS.seconds:
      f = batches[count // 256 % len(batches)]
      rasterize(f["points"], f["lengths"]).numpy()
      count += 256
    rates[supersample] = (count / (time.time() - started), count / (time.process_time() - cpu_started))
  return rates


def records_bytes(records_dir):
  """Bytes of a records directory's shards."""
  return sum(os.path.getsize(p) for split in ("train", "eval", "test") for p in records.shard_paths(records_dir, split))


def raster_placement_table(records_dir):
  """Where images come from: rasterising on the host, on the replicas, from a cache, or stored."""
  rows = []
  rates = rasteriser_rates(records_dir)
  for supersample, note in ((8, "default, MAD 0.72"), (4, "MAD 1.07")):
    wall, per_cpu = rates[supersample]
    rows.append([f"`raster.rasterize` alone, 28 px, {supersample} sample rows ({note})", f"{wall:,.0f}",
                 f"{per_cpu:,.0f} per CPU second"])
  spec = models.get("resnet18")
  rows.append(["resnet18 pipeline rasterising on the host (28 px)", f"{pipeline_rate(records_dir, spec):,.0f}", ""])
  rows.append(["resnet18 pipeline, ink only (the replicas rasterise)",
               f"{pipeline_rate(records_dir, spec, raster_on_replicas=True):,.0f}", ""])
  cached = data.make_dataset(records_dir, "train", spec, FLAGS.batch_size, repeat=False).cache()
  for _ in cached:  # First epoch: rasterise and fill the cache.
    pass
  rows.append(["resnet18 pipeline from a `tf.data` cache of the rasterised batches (epochs 2+; augmentation off, "
               "and the same batches every epoch)", f"{dataset_rate(cached.repeat()):,.0f}",
               "3,136 bytes a drawing (float32 28x28): 157 GB for 50M drawings"])
  with tempfile.TemporaryDirectory() as stored:
    stats = make_vec17(stored, image_size=28)
    png_bytes = (records_bytes(stored) - records_bytes(records_dir)) / sum(stats["totals"].values())
    for name in ("resnet18", "sketchanet"):
      spec = models.get(name)
      rows.append([f"{name} pipeline from stored 28-px PNGs (`make_records --stored_image_size=28`, cairo renderer), "
                   f"{spec.image_size} px", f"{pipeline_rate(stored, spec, image_source='stored'):,.0f}",
                   f"{png_bytes:,.0f} bytes a drawing more on disk"])
  memory = [[f"{batch} drawings x {points} points, {size} px ({size * 8} sample rows)",
             f"{batch * size * 8 * points * 4 / 2**20:,.0f}", f"{raster_memory(batch, points, size) / 2**20:,.0f}"]
            for batch, points, size in ((256, 64, 28), (256, 128, 28), (256, 64, 225))]
  return (report.table(["images from", "examples/s", "notes"], rows) + "\n\nMemory of one `raster.rasterize` call "
          "(the `[batch, rows, points]` intermediates; in a fresh process, its peak RSS over the RSS before it):\n\n"
          + report.table(["batch", "one [batch, rows, points] float32 tensor, MiB", "peak memory rise, MiB"], memory))


def placement_main():
  """--placement_only: the `raster_placement` section."""
  load_before = os.getloadavg()[0]
  with tempfile.TemporaryDirectory() as tmp:
    stats = make_vec17(tmp)
    table = raster_placement_table(tmp)
  body = (f"Records: vec17 as above ({stats['totals']['train']:,} train drawings). Batch {FLAGS.batch_size} "
          f"unless said; {FLAGS.seconds:g} s per figure. `train` rasterises in the replicated step when the "
          "strategy has GPUs or TPUs (`data.rasterise_in_step`, the same `data.model_inputs` the SavedModel "
          "runs), so that the host pipeline only parses and batches ink; on CPUs the pipeline rasterises. "
          f"1-minute load average {load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after.\n\n{table}\n")
  report.write_section("raster_placement", "Where image models' images come from (CPU)",
                       " ".join(["python -m bench.pipeline"] + sys.argv[1:]), body)


def main(_):
  if FLAGS.placement_only:
    return placement_main()
  load_before = os.getloadavg()[0]
  with tempfile.TemporaryDirectory() as tmp, tempfile.TemporaryDirectory() as stored_records:
    stats = make_vec17(tmp)
    num_classes = len(stats["classes"])
    rows = []
    for name, spec in models.MODELS.items():
      if spec.trainer:  # Generative models: bench/sketch_rnn.py.
        continue
      step_rate, params = training_step(tmp, spec, num_classes)
      bf16_rate = training_step(tmp, spec, num_classes, "mixed_bfloat16")[0] if cpu_has_bfloat16() else lambda: (0, 0)
      rates = [(pipeline_rate(tmp, spec), *step_rate(),
                pipeline_rate(tmp, spec, raster_on_replicas=True) if spec.uses_image else 0, bf16_rate()[1])
               for _ in range(FLAGS.rounds)]
      pipeline, step, step_per_cpu, ink_only, bf16_per_cpu = (max(r[i] for r in rates) for i in range(5))
      stored = stored_rate(stored_records, spec) if spec.uses_image and pipeline < FEED_RATIO * step else 0
      size = f"{spec.image_size} px" if spec.uses_image else "ink"
      source = "ink + rasterised image" if spec.uses_ink and spec.uses_image else (
          "rasterised image" if spec.uses_image else f"ink ({spec.ink_channels} channels)")
      rows.append([name, size, source, f"{params:,}", f"{pipeline:,.0f}", f"{step:,.1f}", f"**{pipeline / step:,.0f}x**",
                   fed_by(pipeline, stored, step), f"{ink_only:,.0f}" if ink_only else "",
                   f"{stored:,.0f} (**{stored / step:,.0f}x**)" if stored else "",
                   f"{step_per_cpu:,.1f}", f"{bf16_per_cpu:,.1f}" if bf16_per_cpu else "no AVX512-BF16"])
      print(rows[-1], flush=True)
    padding = padding_table(tmp)
  body = (f"Records: vec17, {sum(stats['totals'].values()):,} drawings ({stats['totals']['train']:,} train) of "
          f"{num_classes} classes, no stored images. Batch {FLAGS.batch_size}. Pipeline and training step are "
          f"measured alternately, never at once, on {os.cpu_count()} cores: {FLAGS.rounds} rounds of "
          f"{FLAGS.seconds:g} s each, the best round kept. The training step cycles through {STEP_BATCHES} "
          "batches of the (bucketed) training pipeline held in memory. 1-minute load average "
          f"{load_before:.1f} before the run, {os.getloadavg()[0]:.1f} after: other processes on the machine "
          "slow both sides. On CPUs the pipeline rasterises ink unless the records hold images of the model's side "
          "(`make_records --stored_image_size`, read by default): where the host rasteriser feeds the step less "
          f"than {FEED_RATIO}x, the stored-image pipeline is measured too.\n\n"
          + report.table(["model", "input", "pipeline feeds", "parameters", "pipeline examples/s",
                          "training step examples/s", "pipeline / step", f">= {FEED_RATIO}x",
                          "pipeline examples/s, ink only (the step rasterises)",
                          "pipeline examples/s from stored images of the model's side (/ step), where the host "
                          f"rasteriser feeds < {FEED_RATIO}x",
                          "training step examples per CPU s", "the same, mixed bfloat16"], rows)
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
