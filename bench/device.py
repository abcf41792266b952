r"""Every model on the accelerator: speed, memory, cuDNN, pipeline against step, SavedModel parity.

  python -m bench.device [--data_dir=../shared/data/quickdraw]
  python -m bench.device --quick --output=/tmp/device.md   # on a CPU, in seconds

One command, nothing to edit, about 6 minutes on one GPU. It lists the
devices, builds records from the shared data (the vec17 words of
`bench.pipeline`, no stored images, so image models rasterise ink), then for
every model, under the ``auto`` strategy and its ``auto`` mixed precision
(float16 on GPU, bfloat16 on TPU, float32 on CPU), with and without
``jit_compile``:
  * trains ``--steps`` steps with ``train_on_batch`` on ``--step_batches``
    batches of the training pipeline held in memory (so the step alone is
    timed; with accelerators the step rasterises them itself, see
    `data.rasterise_in_step`): median step time and examples/s after the
    first pass over those batches (which traces and compiles), and the peak
    device memory (``tf.config.experimental.get_memory_info``);
  * profiles three steps (``tf.profiler``) and reports the cuDNN RNN ops and
    kernels it finds by name, for the models with LSTMs;
  * times the training pipeline alone, as the step gets it (ink-only under
    accelerators) and rasterising on the host, for the pipeline / step ratio;
  * exports the SavedModel (without jit) and serves the same test drawings
    with it on the accelerator and on the CPU: the largest difference of a
    probability.
The table goes into BENCHMARKS.md (``--output``: another file).
"""

import glob
import os
import statistics
import sys
import tempfile
import time
import traceback

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from bench import pipeline  # Shares its --data_dir and --seconds, and its records.
from bench import report
from bench import shared_flags  # --models: every model.
from quickdraw_tf import evaluate
from quickdraw_tf import export as export_lib
from quickdraw_tf import models
from quickdraw_tf.pipelines import data
from quickdraw_tf.training import distribute

# --quick (bench/shared_flags.py) here: a CPU smoke run, rnn and resnet18, small batches, 3 steps, little data.
flags.DEFINE_integer("steps", 50, "Training steps per model and setting.", lower_bound=1)
flags.DEFINE_integer("device_batch_size", 256, "Global batch size of the training steps and pipelines.",
                     lower_bound=1)
flags.DEFINE_list("jit_compile", ["no", "yes"], "Run each model without (no) and/or with (yes) XLA.")
flags.DEFINE_string("output", report.BENCHMARKS_MD, "Markdown file whose `device` section is (re)written.")
FLAGS = flags.FLAGS

flags.DEFINE_integer("step_batches", 4, "Distinct batches the step cycles through: few shapes to trace and compile.",
                     lower_bound=1)
PROFILED_STEPS = 3
PARITY_BATCHES = 4
# --quick: fusion covers both paths (LSTMs and images), without XLA (which takes minutes to compile on a CPU).
QUICK = dict(models=["fusion"], jit_compile=["no"], steps=2, step_batches=1, device_batch_size=8, seconds=0.5,
             words=report.VEC17[:2], max_per_class=40)


def devices_line():
  """The physical devices TensorFlow sees, e.g. "CPU:0, GPU:0"."""
  return ", ".join(f"{d.device_type}:{d.name.rsplit(':', 1)[-1]}" for d in tf.config.list_physical_devices())


def accelerator_device():
  """The first GPU or TPU as a logical device name ("GPU:0"), or None on a CPU-only machine."""
  for kind in ("GPU", "TPU"):
    if tf.config.list_logical_devices(kind):
      return f"{kind}:0"
  return None


def cudnn_ops(logdir):
  """Ops and kernels with "cudnn" in their names, from the profile(s) written under ``logdir``.

  Returns:
    (sorted list of those names, number of distinct names in the profile).
  """
  from tensorflow.tsl.profiler.protobuf import xplane_pb2  # pylint: disable=g-import-not-at-top
  names = set()
  for path in glob.glob(os.path.join(logdir, "plugins", "profile", "*", "*.xplane.pb")):
    space = xplane_pb2.XSpace()
    with open(path, "rb") as f:
      space.ParseFromString(f.read())
    for plane in space.planes:
      names.update(m.name for m in plane.event_metadata.values())
  return sorted(n for n in names if "cudnn" in n.lower()), len(names)


def profile_steps(model, batches, logdir):
  """Runs `PROFILED_STEPS` training steps under tf.profiler; returns `cudnn_ops` of its trace."""
  tf.profiler.experimental.start(logdir)
  try:
    for step in range(PROFILED_STEPS):
      model.train_on_batch(*batches[step % len(batches)])
  finally:
    tf.profiler.experimental.stop()
  return cudnn_ops(logdir)


def step_times(model, batches, steps):
  """Seconds of each of ``steps`` training steps (``train_on_batch`` waits for its result)."""
  times = []
  for step in range(steps):
    started = time.perf_counter()
    model.train_on_batch(*batches[step % len(batches)])
    times.append(time.perf_counter() - started)
  return times


def saved_model_parity(model, spec, class_names, records_dir, tmp, device):
  """Largest probability difference of the SavedModel served on ``device`` and on the CPU (None: no device)."""
  path = os.path.join(tmp, "saved_model")
  export_lib.export(model, spec, class_names, path)
  # Read on the host, before any device scope: tf.data stays on the CPU.
  test_split = evaluate._drawings(records_dir, "test", 64)  # pylint: disable=protected-access
  drawings = [raw for raw, _ in _take(test_split, PARITY_BATCHES)]
  served = {}
  for where in ("CPU:0", device):
    if where is None:
      continue
    with tf.device(where):  # Variables and ops of this copy live here.
      signature = tf.saved_model.load(path).signatures["serving_default"]
      served[where] = [signature(**raw)["probabilities"].numpy() for raw in drawings]
  if device is None:
    return None
  return max(float(np.abs(a - b).max()) for a, b in zip(served["CPU:0"], served[device]))


def _take(iterable, n):
  return [item for _, item in zip(range(n), iterable)]


def train_steps(spec, records_dir, num_classes, strategy, jit_compile, logdir):
  """One model trained ``--steps`` steps under ``strategy``; returns its figures.

  Returns:
    (dict of step seconds, peak memory, cuDNN names; the trained model).
  """
  device = accelerator_device()
  on_replicas = spec.uses_image and data.has_accelerators(strategy)
  with strategy.scope():
    model = models.build(spec.name, num_classes)
    model.compile(keras.optimizers.Adam(1e-3), keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                  jit_compile=jit_compile)
  if on_replicas:
    data.rasterise_in_step(model, spec)
  dataset = data.make_dataset(records_dir, "train", spec, FLAGS.device_batch_size, training=True, seed=0,
                              raster_on_replicas=on_replicas)
  batches = list(dataset.take(FLAGS.step_batches))
  if device and device.startswith("GPU"):
    tf.config.experimental.reset_memory_stats(device)
  times = step_times(model, batches, FLAGS.steps)
  peak = tf.config.experimental.get_memory_info(device)["peak"] if device and device.startswith("GPU") else None
  steady = times[FLAGS.step_batches:] or times  # The first pass traces (and compiles) each batch shape.
  figures = {"step": statistics.median(steady), "first_pass": sum(times[:FLAGS.step_batches]), "peak": peak,
             "cudnn": profile_steps(model, batches, logdir) if spec.uses_ink else None}
  return figures, model


def model_rows(spec, records_dir, class_names, strategy, tmp):
  """Table rows of one model: without and with jit_compile."""
  on_replicas = spec.uses_image and data.has_accelerators(strategy)
  rates = {}
  for host_raster in sorted({False, not on_replicas}):  # As the step gets it; and rasterising on the host.
    rates[host_raster] = pipeline.dataset_rate(data.make_dataset(
        records_dir, "train", spec, FLAGS.device_batch_size, training=True,
        raster_on_replicas=spec.uses_image and not host_raster))
  rows, parity = [], None
  for run, jit_compile in enumerate(setting == "yes" for setting in FLAGS.jit_compile):
    try:
      figures, model = train_steps(spec, records_dir, len(class_names), strategy, jit_compile,
                                   os.path.join(tmp, f"profile-{spec.name}-{jit_compile}"))
      if not run:  # Once per model, from its first run (without XLA by default).
        parity = saved_model_parity(model, spec, class_names, records_dir, tmp, accelerator_device())
    except Exception as e:  # pylint: disable=broad-except  # One model's failure is a row, not a lost table.
      traceback.print_exc()
      rows.append([spec.name, "", "yes" if jit_compile else "no", f"**failed**: {type(e).__name__}: "
                   + " ".join(str(e).split())[:300].replace("|", "/")] + [""] * 8)
      keras.backend.clear_session()
      continue
    step_rate = FLAGS.device_batch_size / figures["step"]
    fed = rates[not on_replicas]
    cudnn = ""
    if figures["cudnn"] is not None:
      found, seen = figures["cudnn"]
      cudnn = ", ".join(found[:3]) if found else f"**none** (of {seen} names)"
    rows.append([spec.name, f"{spec.image_size} px" if spec.uses_image else "ink", "yes" if jit_compile else "no",
                 f"{figures['step'] * 1e3:,.1f}", f"{step_rate:,.0f}", f"{figures['first_pass']:.1f}",
                 "" if figures["peak"] is None else f"{figures['peak'] / 2**20:,.0f}", cudnn,
                 f"{fed:,.0f}" + (" (ink only)" if on_replicas else ""),
                 f"{rates[True]:,.0f}" if spec.uses_image else "", f"**{fed / step_rate:.1f}x**",
                 "CPU only" if parity is None else f"{parity:.2e}"])
    print(rows[-1], flush=True)
    keras.backend.clear_session()
  return rows


def main(_):
  shared_flags.default_models(models.MODELS)
  words, max_per_class = report.VEC17, 0
  if FLAGS.quick:
    for name in ("steps", "step_batches", "device_batch_size", "seconds", "models", "jit_compile"):
      if not FLAGS[name].present:
        FLAGS[name].value = QUICK[name]
    words, max_per_class = QUICK["words"], QUICK["max_per_class"]
  print(f"devices: {devices_line()}", flush=True)
  strategy = distribute.make_strategy("auto")
  policy = distribute.precision_policy("auto", strategy)
  previous_policy = keras.mixed_precision.global_policy()
  keras.mixed_precision.set_global_policy(policy)
  try:
    with tempfile.TemporaryDirectory() as tmp:
      stats = pipeline.make_vec17(os.path.join(tmp, "records"), words, max_per_class)
      rows = []
      for name in FLAGS.models:
        started = time.time()
        rows += model_rows(models.get(name), os.path.join(tmp, "records"), stats["classes"], strategy, tmp)
        print(f"{name}: {time.time() - started:.0f} s", flush=True)
  finally:
    keras.mixed_precision.set_global_policy(previous_policy)
  body = (f"Devices: {devices_line()}. Strategy `auto`: {type(strategy).__name__}, "
          f"{strategy.num_replicas_in_sync} replica(s); precision `auto`: {policy}. Records: "
          f"{len(words)} words of the shared simplified data, {stats['totals']['train']:,} training drawings, "
          f"no stored images. Global batch {FLAGS.device_batch_size}, {FLAGS.steps} steps per row with "
          f"`train_on_batch` on {FLAGS.step_batches} batches held in memory; step time is the median after the first "
          "pass "
          "over them (*first pass*: its seconds, tracing and XLA compilation included). Image models rasterise "
          "ink in the step where the replicas are accelerators (`data.rasterise_in_step`), else in the pipeline. "
          "*cuDNN*: op and kernel names with `cudnn` in a `tf.profiler` trace of "
          f"{PROFILED_STEPS} steps (models with LSTMs). *Pipeline*: the training pipeline alone, "
          f"{FLAGS.seconds:g} s, as the step gets it, and rasterising on the host; *pipeline / step*: how many "
          "times what the step consumes it delivers. *SavedModel*: the exported model (without jit) serving "
          f"{PARITY_BATCHES} batches of test drawings on the accelerator and on the CPU, largest probability "
          "difference.\n\n"
          + report.table(["model", "input", "jit", "step ms", "step examples/s", "first pass s", "peak device MiB",
                          "cuDNN", "pipeline examples/s", "host-rasterising pipeline examples/s",
                          "pipeline / step", "SavedModel max |Δp| device vs CPU"], rows))
  report.write_section("device", "Every model on the accelerator" + (" (--quick, CPU)" if FLAGS.quick else ""),
                       " ".join(["python -m bench.device"] + sys.argv[1:]), body, FLAGS.output)


if __name__ == "__main__":
  app.run(main)
