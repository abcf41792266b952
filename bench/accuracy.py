r"""Accuracy and cost of every model on real drawings, beside the published tables.

  python -m bench.accuracy --budget=120   # the full run: about 40 min on 2 shared cores
  python -m bench.accuracy --quick        # smoke check, < 5 min; prints, writes nothing to BENCHMARKS.md
  python -m bench.accuracy --budget=120 --reuse   # finish or re-render a run, keeping its finished models
  python -m bench.accuracy --budget=240 --fidelity=sketchanet,resnet18   # + PyTorch init / schedule rows
  python -m bench.accuracy --converge --reuse      # converged run, hours; rerun the same to resume
  python -m bench.accuracy --converge --reuse --converge_eval_steps=0   # the results committed before 2026-12-05
  python -m bench.accuracy --converge --reuse --noablation --variants=resnet18:stem=small  # + resnet18's 3x3/1 stem

Data (records built with make_records into --records_root, reused when complete):
  * vec17: every vector drawing (all sources under strokes/, raw ones
    simplified; duplicates by key_id and geometry written once, split by the
    records' hash) of the 17 categories with the most vector drawings; every
    model trains on it, plus the tutorial notes' ablation of ``rnn`` (ReLU,
    ReLU + pooling 4).
  * bmp22: the 22 numpy_bitmap_prefix categories (28 px images, at most
    --bmp_max_per_class rows each); image models only.

Every run is ``python -m quickdraw_tf.train`` in its own process, so each
model gets its configs/<model>.cfg hyper-parameters, with the same budget of
--budget CPU seconds of that process (``--budget_clock=cpu``: other work on
the machine does not shorten it; per-epoch evaluation on the eval split is
inside the budget). The best weights by eval accuracy are then tested on the
test split with `quickdraw_tf.evaluate` (top-1, top-3, MAP@3). Training
examples/s are examples seen (steps x batch) over the training time, from
the start of fit to the end of its last evaluation.

Tables go into the ``accuracy`` section of BENCHMARKS.md and the plot
(eval accuracy against training time) into bench/accuracy.png. --quick
trains rnn (and its ablation) and sketchanet on 4 categories for 12 CPU
seconds each into runs/bench_accuracy_quick, prints its tables and writes
its plot there: it never writes BENCHMARKS.md or bench/accuracy.png.

--converge trains every model until its eval top-1 has not improved for
--converge_patience evaluations (train's --stop_patience; one evaluation
every max(one pass, --converge_eval_steps) steps, bench.converge) or
--converge_cap CPU seconds, on vec17 and all rows of bmp22, into runs/bench_accuracy_
converged, the ``accuracy_converged`` section and bench/accuracy_converged.png
(learning curves against epochs), with a table of the targets each run
answers (bench.targets). With --reuse it keeps finished models and
resumes an interrupted one from its backup (its CPU time, cap and patience
count from its start, as train restores them). ``--quick --converge`` is its
smoke check.

A full run keeps each finished model's result (metrics, cost, learning
curve; no weights) in bench/results/<run>/<data>/<label>.json, which is
committed: a run of more hours than one machine is lent for goes on with
--reuse on the next one, and a subset (e.g. --models=sketchanet --novec17)
renders its table from the results it finds.
"""

import glob
import json
import os
import resource
import shutil
import subprocess
import sys
import time

from absl import app
from absl import flags
import keras
import numpy as np
import psutil

from bench import converge
from bench import report
from bench import shared_flags  # --models: the classifiers (vec17; image models also on bmp22).
from bench import targets
from bench import torch_table
from bench import variants
import quickdraw_tf
from quickdraw_tf import evaluate
from quickdraw_tf import make_records
from quickdraw_tf import models
from quickdraw_tf.pipelines import data
from quickdraw_tf.pipelines import records
from quickdraw_tf.training import backup
from quickdraw_tf.training import run_dir as run_dir_lib
from quickdraw_tf.training import train_config

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

flags.DEFINE_float("budget", 120, "Training budget of every model, in CPU seconds of its training process.")
flags.DEFINE_integer("image_side", 64, "Image side of the image models, for those whose default is larger "
                     "(sketchanet, alexnet, fusion: 225 px); resnet18 keeps its 28 px.")
flags.DEFINE_integer("bmp_max_per_class", 1000, "Rows per bmp22 category (0: all).", lower_bound=0)
flags.DEFINE_bool("ablation", True, "Also train the rnn ablation variants on vec17.")
flags.DEFINE_bool("vec17", True, "Train the models on vec17.")
flags.DEFINE_bool("bmp22", True, "Also train the image models on bmp22.")
flags.DEFINE_list("fidelity", [], "Image models to train again on bmp22 with PyTorch's initialisation "
                  "(--model_option=init=torch) and with the learning rate schedule on the training loss "
                  "(--lr_monitor=train_loss), as the reference report's code, each beside its default run.")
flags.DEFINE_list("variants", [], "More runs, each beside its model's default run: `model:setting`, the setting "
                  "a model option (`resnet18:stem=small`) or a flag of train "
                  "(`bilstm:--mixed_precision=mixed_bfloat16`) or several "
                  "(`resnet18:--augment --steps_per_epoch=500`); on bmp22 for image-only models, else on vec17, "
                  "unless the model names its data (`sketchanet@vec17:--augment`).")
flags.DEFINE_bool("converge", False, "Converged mode: every model until eval top-1 has not improved for "
                  "--converge_patience evaluations or --converge_cap CPU seconds, on all rows of bmp22; into "
                  "its own section of BENCHMARKS.md, runs/bench_accuracy_converged and bench/accuracy_converged.png.")
flags.DEFINE_integer("converge_patience", converge.PATIENCE, "Converged mode: evaluations without improvement.",
                     lower_bound=1)
flags.DEFINE_float("converge_cap", converge.CAP, "Converged mode: CPU seconds per model at most (>= 1800 but in "
                   "--quick).")
flags.DEFINE_integer("converge_eval_steps", converge.EVAL_STEPS, "Converged mode: evaluate every max(one pass over "
                     "the training split, this many) steps (train's --steps_per_epoch where a pass is shorter, unless "
                     "a variant sets it); 0: every pass, the rule of the results committed before 2026-12-05.",
                     lower_bound=0)
# --quick (bench/shared_flags.py) here: 4 categories, a few models, --budget=12; prints tables only.
flags.DEFINE_bool("reuse", False, "Reuse finished runs of the same settings in --runs_dir (e.g. after a crash).")
report.define_data_dir()
flags.DEFINE_string("records_root", os.path.join(REPO, quickdraw_tf.DEFAULT_RECORDS_ROOT),
                    "Where the records are built (bench_<name> under it).")
flags.DEFINE_string("runs_dir", None, "Model directories (default runs/bench_accuracy[_quick]).")
flags.DEFINE_string("results_dir", os.path.join(REPO, "bench", "results"),
                    "Finished runs' results of full runs, one JSON file a run (committed: a run of hours goes on "
                    "with --reuse on another machine). --quick keeps them in its model directories.")
flags.register_validator("results_dir", lambda path: not os.path.exists(path) or os.path.isdir(path),
                         "--results_dir names a file, not a directory")
flags.DEFINE_string("plot", os.path.join(REPO, "bench", "accuracy.png"), "The plot (full run only).")
FLAGS = flags.FLAGS

QUICK_VEC = ("circle", "square", "triangle", "squiggle")  # Simple shapes: learnt in seconds.
QUICK_BMP = ("airplane", "banana", "cat", "rainbow")
QUICK_MODELS = ("rnn", "sketchanet")
QUICK_BUDGET = 12

# Table 2 of ../shared/reference/cnn-rnn-sketch-classification-report.zh.txt: test accuracy, 25 categories of
# 70,000 training drawings each (28 px bitmaps, resized to 225 px for AlexNet; stroke-5 sequences for the RNNs).
REFERENCE = (("sketchanet", "Sketch-a-Net", 0.6948), ("alexnet", "AlexNet", 0.8462),
             ("resnet18", "ResNet18", 0.8557), ("bilstm", "BiLSTM", 0.8561), ("fusion", "CNN+RNN", 0.8567))
# ../shared/reference/quickdraw-conv1d-bilstm-tutorial-notes.zh.txt: Google's tutorial model on 345 categories.
ABLATION = (("linear conv activation, no pooling (tutorial)", {}, 0.75),
            ("ReLU", {"activation": "relu"}, 0.73),
            ("ReLU + max-pool 4 (stride 4)", {"activation": "relu", "pooling": 4}, 0.70))
OTHER_RNN_BATCH = 64  # The batch of every other model, rnn's before it followed the tutorial (8).
# --fidelity: (label, model options, train flags) of the reference report's PyTorch habits, one at a time.
FIDELITY_VARIANTS = (("init=torch", {"init": "torch"}, []),
                     ("lr_monitor=train_loss", {}, ["--lr_monitor=train_loss"]))
FIDELITY_NOTE = (
    "The report's code (PyTorch) draws convolution and dense weights and biases uniformly in +-1/sqrt(fan_in); "
    "Keras draws kernels Glorot-uniform and zero biases (`--model_option=init=torch` redraws them PyTorch's way). "
    "Its ReduceLROnPlateau (factor 0.3, patience 2) steps on each epoch's mean training loss; ours by default on "
    "the eval loss (`--lr_monitor=train_loss` switches). Each row: one change against the model's default run "
    "above, same data, budget and seed.\n")
SKETCHANET_NOTE = (
    "\nSketch-a-Net: the report's code (models/sketchnet.py, and the CNN branch of models/cnnrnn.py) drops out "
    "after fc6 and fc7 with the functional `F.dropout(x)`, whose `training` argument defaults to True: dropout "
    "stays on at evaluation and test time too, so its 0.6948 is measured on a network that still drops half of "
    "its fc6 and fc7 units, which may be why it trails the report's other CNNs by 15 points. Ours drops out in "
    "training only (`keras.layers.Dropout`); we do not copy the defect.")
PORT_NOTE = (
    "\nPort fidelity (each model's docstring lists what still differs from its source, and why): batch norm uses "
    "the momentum and epsilon of the framework the reference numbers came from (`resnet18`, `alexnet`: PyTorch's, "
    "Keras momentum 0.9 and epsilon 1e-5; `rnn`'s optional batch norm: TF 1's, 0.99 and 1e-3); `alexnet` is the "
    "report code's batch-normalised variant (`--model_option=variant=2012` for Krizhevsky et al.'s LRN and "
    "dropout); `rnn` trains as the tutorial's train_model.py (batch 8, Adam 1e-4, clipping 9, constant rate, "
    "dropout 0.3 before convolutions 2-3 and after every BiLSTM layer). Initialisation and schedule keep Keras' "
    "defaults (Glorot-uniform kernels, zero biases; ReduceLROnPlateau on the eval loss); the report's PyTorch "
    "choices are options (`--model_option=init=torch`, `--lr_monitor=train_loss`) that `--fidelity` measures. "
    "Within a short budget the schedule cannot act on a model that trains fewer than 3 epochs (patience 2).")
TRAIN_STARTED = "train: starting at step"  # Printed by train's StartingStep callback at the start of fit.
THREAD_VARIABLES = ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS")  # Shown in the command when set.


def build_records(name, inputs, categories=None, max_per_class=0):
  """Records of ``inputs`` in --records_root/bench_<name>, built unless already complete; returns the directory."""
  out = os.path.join(FLAGS.records_root, f"bench_{name}")
  if records.is_complete(out) and (categories is None or records.read_classes(out) == list(categories)):
    return out
  shutil.rmtree(out, ignore_errors=True)
  os.makedirs(FLAGS.records_root, exist_ok=True)
  make_records.convert(inputs, out, categories=list(categories) if categories else None,
                       max_per_class=max_per_class, progress=False)
  return out


def image_side(spec):
  """The image side a model trains at: the smaller of --image_side and its default (0 for sequence models)."""
  return min(FLAGS.image_side, spec.image_size) if spec.uses_image else 0


def logged(model_dir, split, tag):
  """[(wall time, step, value)] of a scalar ``tag`` in train's TensorBoard logs of ``split``, in time order."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  points = []
  for path in glob.glob(os.path.join(model_dir, "logs", split, "events.*")):
    for record in tf.data.TFRecordDataset(path):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.tag == tag:
          points.append((event.wall_time, event.step, float(tf.make_ndarray(value.tensor))))
  return sorted(points)


def eval_curve(model_dir):
  """[(wall time, iterations, eval top-1)] after every epoch, from train's TensorBoard logs."""
  return logged(model_dir, "validation", "evaluation_accuracy_vs_iterations")


def last_train_top1(model_dir):
  """Training top-1 of the last epoch (Keras' running figure over it, dropout on), or None without logs.

  Beside eval top-1 it shows how much of the training set a model fits that
  the eval split does not reward: a large gap is a model short of data or
  regularisation, not of optimisation.
  """
  points = logged(model_dir, "train", "epoch_accuracy")
  return points[-1][2] if points else None


def _layers_of(model, kind):
  """The layers of class ``kind`` in a model, nested models included."""
  layers = []
  for layer in model.layers:
    layers += _layers_of(layer, kind) if hasattr(layer, "layers") else []
    layers += [layer] if isinstance(layer, kind) else []
  return layers


def batch_stats_top1(model, config, records_dir, batch_size=64):
  """Test top-1 with batch norm on each test batch's own statistics; None for a model without batch norm.

  A short run leaves batch norm's moving averages (momentum 0.99) close to
  their initial values, which is what inference uses: this shows what the
  weights themselves have learnt. The model's moving averages and dropout
  rates are changed.
  """
  if not _layers_of(model, keras.layers.BatchNormalization):
    return None
  for dropout in _layers_of(model, keras.layers.Dropout):
    dropout.rate = 0.0  # training=True is for batch norm only: no dropout, as at inference.
  # Records keep their sources' order, a class at a time: stored batches would each hold one class, whose
  # statistics are not those of the mixed batches training saw. Shuffled, as training batches are.
  test = data.make_dataset(records_dir, "test", models.get(config["model"]), batch_size,
                           image_size=run_dir_lib.image_size(config))
  hits = [np.argmax(model(features, training=True), axis=1) == labels.numpy()
          for features, labels in test.unbatch().shuffle(1 << 17, seed=0).padded_batch(batch_size)]
  return float(np.concatenate(hits).mean())


def train_and_test(label, model, records_dir, run_dir, budget, options=None, train_flags=(), patience=0):
  """Trains one model in a train process under a CPU budget, tests its best weights; returns a result dict.

  Args:
    options: model options (--model_option).
    train_flags: more flags of train, e.g. ``["--lr_monitor=train_loss"]``.
    patience: stop after this many evaluations without a better eval top-1
      (0: run the whole budget). With it and --reuse, an unfinished run
      resumes from its backup.
  """
  spec = models.get(model)
  options = options or {}
  side = image_side(spec)
  train_flags = list(train_flags) + (eval_period_flags(model, records_dir, train_flags, FLAGS.converge_eval_steps)
                                     if patience else [])
  key = {"model": model, "options": options, "records": os.path.basename(records_dir), "budget": budget,
         "image_size": side,
         "train": records.read_stats(records_dir)["totals"], "train_flags": list(train_flags),
         "patience": patience}
  result_path = result_file(run_dir)
  reused = reused_result(result_path, key, run_dir, records_dir) if FLAGS.reuse else None
  if reused:
    return reused
  resume = FLAGS.reuse and patience and os.path.isdir(os.path.join(run_dir, "backup"))
  if not resume:
    shutil.rmtree(run_dir, ignore_errors=True)  # train resumes from a backup it finds: start afresh.
  os.makedirs(run_dir, exist_ok=True)
  budget_state = backup.read_carried_state(os.path.join(run_dir, "backup"), "TimeBudget") if resume else None
  cpu_before = budget_state["spent"] if budget_state else 0.0  # CPU s of fit up to the backup it resumes from.
  command = [sys.executable, "-m", "quickdraw_tf.train", f"--model={model}", f"--records={records_dir}",
             f"--model_dir={run_dir}", "--epochs=100000", f"--time_budget={budget}", "--budget_clock=cpu",
             "--export=false", f"--checkpoint_steps={1000 if patience else 10**9}"]
  command += [f"--image_size={side}"] if side else []
  command += [f"--model_option={k}={v}" for k, v in options.items()] + list(train_flags)
  command += [f"--stop_patience={patience}"] if patience else []
  print(f"accuracy: {label}: {' '.join(command[1:])}", flush=True)
  started = time.time()
  fit_started, fit_cpu = run_train(command, run_dir, resume)
  result = test_result(run_dir, records_dir, fit_started)
  result.update(key=key, label=label, model=model, image_size=side, fit_cpu_s=cpu_before + fit_cpu,
                run_wall_s=time.time() - started, resumed=bool(resume))
  result["examples_per_cpu_s"] = result["steps"] * result["batch_size"] / result["fit_cpu_s"]
  os.makedirs(os.path.dirname(result_path), exist_ok=True)
  run_dir_lib.write_json(result_path, result)
  test = result["test"]
  print(f"accuracy: {label}: {result['steps']} steps ({result['epochs']:.1f} epochs) in {result['fit_wall_s']:.0f} s, "
        f"test top-1 {test['top1_accuracy']:.4f}, top-3 {test['top3_accuracy']:.4f}, MAP@3 {test['map3']:.4f}",
        flush=True)
  return result


def eval_period_flags(model, records_dir, train_flags, min_steps):
  """Converged mode's evaluation period as train flags: ``["--steps_per_epoch=N"]`` where one pass over the
  training split is shorter than ``min_steps`` (--converge_eval_steps; `converge.eval_period`), else [] (and
  where ``train_flags`` set their own)."""
  given = {name: value for name, _, value in (f[2:].partition("=") for f in train_flags)}
  if "steps_per_epoch" in given or not min_steps:
    return []
  batch = int(given.get("batch_size") or train_config.model_defaults(model)["batch_size"])
  train_count = records.read_stats(records_dir)["totals"]["train"]
  period = converge.eval_period(train_count, batch, min_steps)
  return [f"--steps_per_epoch={period}"] if period > converge.one_pass(train_count, batch) else []


def result_file(run_dir):
  """Where the result of the run in ``run_dir`` (<runs_dir>/<name>/<data>/<label>) is kept.

  Full runs: --results_dir/<name>/<data>/<label>.json, outside the model
  directory, so that committed results outlive the machine that trained them.
  """
  if FLAGS.quick:
    return os.path.join(run_dir, "bench_result.json")
  return os.path.join(FLAGS.results_dir, *run_dir.split(os.sep)[-3:]) + ".json"


def reused_result(result_path, key, run_dir, records_dir):
  """The finished run's result dict if it was run with ``key``, else None (brought up to date when older)."""
  try:
    with open(result_path, encoding="utf-8") as f:
      result = json.load(f)
  except FileNotFoundError:
    return None
  except ValueError as e:  # Written by hand, or by a version that did not write it whole: train again.
    print(f"accuracy: {result_path} cannot be read ({e}): training that run again", flush=True)
    return None
  if result.get("key") != key:
    return None
  print(f"accuracy: reusing {result_path}", flush=True)
  if "top1_batch_stats" not in result["test"]:  # Results from before this figure existed.
    restored, config = run_dir_lib.restore(run_dir)
    result["test"]["top1_batch_stats"] = batch_stats_top1(restored, config, records_dir)
    keras.backend.clear_session()
    run_dir_lib.write_json(result_path, result)
  if result.get("train_top1_last_epoch") is None and os.path.isdir(os.path.join(run_dir, "logs")):
    result["train_top1_last_epoch"] = last_train_top1(run_dir)  # Results from before this figure existed.
    run_dir_lib.write_json(result_path, result)
  return result


def run_train(command, run_dir, resume):
  """Runs a train command, its output into run_dir/train.log; returns (wall time fit started, CPU s since).

  The CPU seconds count the train process from the start of fit (its
  ``TRAIN_STARTED`` line) to its exit, so imports and graph building are not
  charged to the model. A failed train raises RuntimeError with its log's end.
  """
  usage = resource.getrusage(resource.RUSAGE_CHILDREN)
  fit_started = cpu_at_fit = None
  with open(os.path.join(run_dir, "train.log"), "a" if resume else "w", encoding="utf-8") as log:
    process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
    for line in process.stdout:
      if line.startswith(TRAIN_STARTED) and fit_started is None:
        fit_started = time.time()
        times = psutil.Process(process.pid).cpu_times()
        cpu_at_fit = times.user + times.system
      log.write(line)
    process.wait()
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  if process.returncode or fit_started is None:
    with open(os.path.join(run_dir, "train.log"), encoding="utf-8") as f:
      raise RuntimeError(f"{' '.join(command)} failed ({process.returncode}):\n{f.read()[-3000:]}")
  return fit_started, after.ru_utime + after.ru_stime - usage.ru_utime - usage.ru_stime - cpu_at_fit


def test_result(run_dir, records_dir, fit_started):
  """The finished run's learning curve, cost and test metrics of its best weights: part of a result dict."""
  curve = eval_curve(run_dir)
  steps = curve[-1][1]
  batch = run_dir_lib.read_config(run_dir)["training"]["batch_size"]  # What train recorded.
  train_count = records.read_stats(records_dir)["totals"]["train"]
  fit_seconds = curve[-1][0] - fit_started
  labels, probabilities = evaluate.predict_checkpoint(run_dir, records_dir, "test")
  metrics = evaluate.metrics(labels, probabilities, records.read_classes(records_dir))
  restored, config = run_dir_lib.restore(run_dir)
  params = restored.count_params()
  metrics["top1_batch_stats"] = batch_stats_top1(restored, config, records_dir)
  keras.backend.clear_session()
  # Checkpoints of every epoch are only needed by train: keep logs, config and the best/final weights.
  for bulky in ("checkpoints", "backup"):
    shutil.rmtree(os.path.join(run_dir, bulky), ignore_errors=True)
  return {
      "params": params, "batch_size": batch, "steps": steps, "epochs": steps * batch / train_count,
      "fit_wall_s": fit_seconds, "examples_per_s": steps * batch / fit_seconds,
      "curve": [(t - fit_started, acc) for t, _, acc in curve],
      "curve_epochs": [(step * batch / train_count, acc) for _, step, acc in curve],
      "best_eval_top1": max(acc for _, _, acc in curve), "train_top1_last_epoch": last_train_top1(run_dir),
      "test": {k: metrics[k] for k in ("examples", "top1_accuracy", "top3_accuracy", "map3", "top1_batch_stats")},
  }


def sizes(records_dir):
  """'N train / N eval / N test' of a records directory."""
  totals = records.read_stats(records_dir)["totals"]
  return f"{totals['train']:,} train / {totals['eval']:,} eval / {totals['test']:,} test"


def batch_norm_note(results):
  """A note on the runs whose batch norm had too few steps to settle, or ''."""
  notes = [f"`{r['label']}` {r['test']['top1_batch_stats']:.4f} (instead of {r['test']['top1_accuracy']:.4f}, "
           f"after {r['steps']} steps)" for r in results
           if (r["test"].get("top1_batch_stats") or 0) > r["test"]["top1_accuracy"] + 0.01]
  if not notes:
    return ""
  return ("\nWith batch normalization on each test batch's own statistics (shuffled batches of 64) rather than its "
          "moving averages (which after few steps still hold part of their initial values), test "
          "top-1 is: " + "; ".join(notes) + ". The weights have learnt more than inference shows yet.")


def prior_rate(records_dir):
  """Test top-1 of always answering the most frequent training class: what a model learns from the prior alone."""
  counts = records.read_stats(records_dir)["counts"]
  most = max(counts["train"], key=counts["train"].get)
  return counts["test"].get(most, 0) / max(sum(counts["test"].values()), 1), most


def input_of(result):
  """What a model reads, for the tables."""
  spec = models.get(result["model"])
  if spec.uses_ink and spec.uses_image:
    return f"stroke-5 + {result['image_size']} px"
  return f"{result['image_size']} px" if spec.uses_image else f"ink ({spec.ink_channels} channels)"


def train_top1_text(result):
  """A result's last-epoch training top-1 for the tables; '-' for results from before it was recorded."""
  top1 = result.get("train_top1_last_epoch")
  return "-" if top1 is None else f"{top1:.4f}"


def results_table(results, prior):
  """Cost and test accuracy of each run, one row per run; top-1 equal to ``prior`` is marked."""
  rows = []
  for r in results:
    top1 = f"**{r['test']['top1_accuracy']:.4f}**"
    if abs(r["test"]["top1_accuracy"] - prior) < 1e-9:
      top1 += " (prior)"
    params = f"{r['params']:,}"
    # Resumed: the wall clock saw only the last process (its CPU time includes the earlier ones').
    wall = ("resumed", "resumed") if r.get("resumed") else (f"{r['fit_wall_s']:.0f}", f"{r['examples_per_s']:,.0f}")
    rows.append([r["label"], input_of(r), params, f"{r['steps']:,}", f"{r['epochs']:.1f}",
                 wall[0], f"{r['fit_cpu_s']:.0f}", wall[1],
                 f"{r['examples_per_cpu_s']:,.0f}", train_top1_text(r), top1,
                 f"{r['test']['top3_accuracy']:.4f}", f"{r['test']['map3']:.4f}"])
  return report.table(["model", "input", "parameters", "steps", "epochs", "training wall s", "training CPU s",
                       "training examples/s (wall)", "examples per CPU s", "train top-1 (last epoch)", "test top-1",
                       "test top-3", "test MAP@3"], rows)


def ranks(values):
  """Rank (1 = best; ties share the better rank) of each key of a dict of accuracies."""
  return {k: 1 + sum(other > value for other in values.values()) for k, value in values.items()}


def pairs_agreeing(ours, theirs):
  """Model pairs two dicts of accuracies order the same way, pairs tied in ``ours``, and all pairs."""
  keys = sorted(ours)
  pairs = [(a, b) for i, a in enumerate(keys) for b in keys[i + 1:]]
  agree = sum((ours[a] - ours[b]) * (theirs[a] - theirs[b]) > 0 for a, b in pairs)
  return agree, sum(ours[a] == ours[b] for a, b in pairs), len(pairs)


def reference_table(vec, bmp, vec_name, bmp_name):
  """Table 2 of the report beside our test top-1, with rank orders."""
  reference = {model: accuracy for model, _, accuracy in REFERENCE}
  ours_vec = {r["model"]: r["test"]["top1_accuracy"] for r in vec if r["model"] in reference}
  ours_bmp = {r["model"]: r["test"]["top1_accuracy"] for r in bmp if r["model"] in reference}
  ref_vec = ranks({m: reference[m] for m in ours_vec})
  ref_bmp = ranks({m: reference[m] for m in ours_bmp})
  rank_vec, rank_bmp = ranks(ours_vec), ranks(ours_bmp)
  rows = []
  for model, name, accuracy in REFERENCE:
    row = [name, f"`{model}`", f"{accuracy:.4f}"]
    if model in ours_vec:
      row += [f"{ours_vec[model]:.4f}", f"{ref_vec[model]} / {rank_vec[model]}",
              "agrees" if ref_vec[model] == rank_vec[model] else "**differs**"]
    else:
      row += ["-"] * 3
    if model in ours_bmp:
      row += [f"{ours_bmp[model]:.4f}", f"{ref_bmp[model]} / {rank_bmp[model]}",
              "agrees" if ref_bmp[model] == rank_bmp[model] else "**differs**"]
    else:
      row += ["-"] * 3
    rows.append(row)
  text = report.table(["reference model", "ours", "reference test accuracy", f"{vec_name} test top-1",
                       f"rank: reference / {vec_name}", f"{vec_name} order", f"{bmp_name} test top-1",
                       f"rank: reference / {bmp_name}", f"{bmp_name} order"], rows)
  notes = []
  for name, ours in ((vec_name, ours_vec), (bmp_name, ours_bmp)):
    if len(ours) > 1:
      agree, tied, total = pairs_agreeing(ours, {m: reference[m] for m in ours})
      notes.append(f"{name}: {agree} of {total} model pairs in the reference's order"
                   + (f" ({tied} tied)" if tied else ""))
  return text + ("\n\nPairwise order: " + "; ".join(notes) + "." if notes else "")


def change_table(pairs):
  """One row per changed run (--fidelity, --variants) beside its model's default run: top-1s and the difference."""
  rows = []
  for default, r in pairs:
    change = r["test"]["top1_accuracy"] - default["test"]["top1_accuracy"]
    rows.append([f"`{r['model']}`", r["key"]["records"].removeprefix("bench_"), r["label"].split(" ", 1)[1],
                 f"{r['steps']:,}", f"{r['epochs']:.1f}", f"{train_top1_text(default)} -> {train_top1_text(r)}",
                 f"{default['best_eval_top1']:.4f} -> {r['best_eval_top1']:.4f}",
                 f"{default['test']['top1_accuracy']:.4f} -> **{r['test']['top1_accuracy']:.4f}**",
                 f"{100 * change:+.1f}", f"{r['test']['top3_accuracy']:.4f}", f"{r['test']['map3']:.4f}"])
  return report.table(["model", "data", "change", "steps", "epochs", "train top-1, last epoch (default -> changed)",
                       "best eval top-1 (default -> changed)", "test top-1 (default -> changed)",
                       "test top-1 change, points", "test top-3", "test MAP@3"], rows)


def batch_note(tutorial, other):
  """What the rnn batch comparison shows, in words from its two results."""
  better = "the tutorial's batch of 8" if (tutorial["test"]["top1_accuracy"] >= other["test"]["top1_accuracy"]) \
      else f"a batch of {OTHER_RNN_BATCH}"
  return ("Google's tutorial (`train_model.py`) trains with Adam at 1e-4 on batches of 8, and `configs/rnn.cfg` "
          f"follows it; the other models train on batches of {OTHER_RNN_BATCH}. Both below: same rate, same CPU "
          f"budget. A batch of {OTHER_RNN_BATCH} computes "
          f"{other['examples_per_cpu_s'] / tutorial['examples_per_cpu_s']:.1f}x the examples per CPU second here "
          f"(the LSTM steps are as many either way) but makes {OTHER_RNN_BATCH // 8}x fewer updates per drawing; "
          f"within this budget {better} reaches the better test top-1.\n")


def ablation_table(ablation, vec_name):
  """The three rnn variants: the tutorial's accuracies and ours, each against its linear variant."""
  linear = ablation[0]["test"]["top1_accuracy"]
  rows = []
  for (name, _, tutorial), r in zip(ABLATION, ablation):
    ours = r["test"]["top1_accuracy"]
    rows.append([name, f"{tutorial:.0%}", f"{100 * (tutorial - ABLATION[0][2]):+.0f}", f"{ours:.4f}",
                 f"{100 * (ours - linear):+.1f}", f"{r['epochs']:.1f}", f"{r['examples_per_cpu_s']:,.0f}"])
  return report.table(["rnn variant", "tutorial accuracy (345 categories)", "tutorial vs linear, points",
                       f"ours: {vec_name} test top-1", "ours vs linear, points", "our epochs",
                       "examples per CPU s"], rows)


def settings():
  """What this invocation runs: a dict of budget, categories, names, patience and where results go."""
  converge = FLAGS.converge
  if converge and not FLAGS.quick and FLAGS.converge_cap < 1800:
    raise app.UsageError(f"--converge_cap={FLAGS.converge_cap:g}: the converged run's cap is >= 1800 CPU s")
  budget = FLAGS.converge_cap if converge else FLAGS.budget
  run = dict(budget=budget, vec_words=report.VEC17, bmp_words=None, models=FLAGS.models, vec_name="vec17",
             bmp_name="bmp22", bmp_cap=0 if converge else FLAGS.bmp_max_per_class,
             patience=FLAGS.converge_patience if converge else 0,
             section="accuracy_converged" if converge else "accuracy",
             plot=FLAGS.plot if not converge else os.path.join(REPO, "bench", "accuracy_converged.png"))
  if FLAGS.quick:
    run.update(budget=min(budget, QUICK_BUDGET * (3 if converge else 1)), vec_words=QUICK_VEC, bmp_words=QUICK_BMP,
               models=[m for m in QUICK_MODELS if m in FLAGS.models], vec_name="vec4", bmp_name="bmp4", bmp_cap=300)
  name = "bench_accuracy" + ("_converged" if converge else "") + ("_quick" if FLAGS.quick else "")
  run["runs_dir"] = FLAGS.runs_dir or os.path.join(REPO, "runs", name)
  check_runs(run)
  return run


def check_runs(run):
  """app.UsageError, before anything trains, for a --models, --fidelity or --variants entry that cannot run."""
  classifiers = [name for name, spec in models.MODELS.items() if not spec.trainer]
  unknown = [m for m in FLAGS.models if m not in classifiers]
  if unknown:
    raise app.UsageError(f"--models: {','.join(unknown)} not a classifier; valid: {','.join(classifiers)}")
  bmp_models = [m for m in run["models"] if variants.image_only(m)] if FLAGS.bmp22 else []
  vec_models = run["models"] if FLAGS.vec17 else []
  for model in FLAGS.fidelity:
    if model not in bmp_models:
      raise app.UsageError(f"--fidelity={model}: not an image-only model of --models on bmp22, so it has no run "
                           "there to compare with")
  for variant in FLAGS.variants:
    model, data_name = variants.parse(variant)[:2]
    on_bmp = variants.on_bmp22(model, data_name)
    data_name, data_models = (run["bmp_name"], bmp_models) if on_bmp else (run["vec_name"], vec_models)
    if model not in data_models:
      raise app.UsageError(f"--variants={variant}: {model} has no default run on {data_name} to compare with")


def fidelity_runs(bmp_dir, run, defaults):
  """Each --fidelity model again with PyTorch's init and with the schedule on training loss; rows of results."""
  rows = []
  for model in FLAGS.fidelity:
    default = next(r for r in defaults if r["model"] == model)
    for label, options, train_flags in FIDELITY_VARIANTS:
      run_dir = os.path.join(run["runs_dir"], run["bmp_name"], f"{model}_{label.replace('=', '_')}")
      rows.append((default, train_and_test(f"{model} {label}", model, bmp_dir, run_dir, run["budget"], options,
                                           train_flags, run["patience"])))
  return rows


def variant_runs(run, vec_run, bmp_run):
  """Each --variants run beside its model's default run (on bmp22 if image-only, else vec17, unless it names its
  data): rows of results.

  ``vec_run`` and ``bmp_run``: (records dir, default results) of each data set, or None where it was not run.
  """
  rows = []
  for variant in FLAGS.variants:
    model, data_name, setting, options, train_flags = variants.parse(variant)
    on_bmp = variants.on_bmp22(model, data_name)
    data_name, data_run = (run["bmp_name"], bmp_run) if on_bmp else (run["vec_name"], vec_run)
    default = next(r for r in data_run[1] if r["model"] == model)
    name = "_".join(part.strip("-").replace("=", "_") for part in setting.split())
    run_dir = os.path.join(run["runs_dir"], data_name, f"{model}_{name}")
    rows.append((default, train_and_test(f"{model} {setting}", model, data_run[0], run_dir, run["budget"], options,
                                         train_flags, run["patience"])))
  return rows


def build_run_records(run):
  """Builds (or finds complete) the run's records; returns (vec17 directory, bmp22 directory or None)."""
  vec_dir = build_records(run["vec_name"], [os.path.join(FLAGS.data_dir, "strokes")], run["vec_words"])
  bmp_dir = None
  if FLAGS.bmp22:
    bmp_inputs = [os.path.join(FLAGS.data_dir, "bitmaps28", "numpy_bitmap_prefix")]
    if run["bmp_words"]:
      bmp_inputs = [os.path.join(bmp_inputs[0], f"{w}.npy") for w in run["bmp_words"]]
    bmp_name, bmp_cap = run["bmp_name"], run["bmp_cap"]
    bmp_dir = build_records(f"{bmp_name}_max{bmp_cap}" if bmp_cap else bmp_name, bmp_inputs, run["bmp_words"], bmp_cap)
  print(f"accuracy: records {vec_dir} ({sizes(vec_dir)})" + (f", {bmp_dir} ({sizes(bmp_dir)})" if bmp_dir else ""),
        flush=True)
  return vec_dir, bmp_dir


def train_all(run, vec_dir, bmp_dir):
  """Every run this invocation asks for; a dict of result lists: vec, ablation, batch_runs, bmp, fidelity,
  variants (the last two of (default, variant) pairs) and all (every run trained here)."""
  budget, model_names, vec_name, patience = run["budget"], run["models"], run["vec_name"], run["patience"]
  vec = [train_and_test(m, m, vec_dir, os.path.join(run["runs_dir"], vec_name, m), budget, patience=patience)
         for m in model_names] if FLAGS.vec17 else []
  ablation, batch_runs = [], []
  if FLAGS.ablation and FLAGS.vec17 and "rnn" in model_names:
    ablation = [next(r for r in vec if r["label"] == "rnn")]
    for _, options, _ in ABLATION[1:]:
      label = "rnn " + ",".join(f"{k}={v}" for k, v in options.items())
      run_dir = os.path.join(run["runs_dir"], vec_name, label.replace(" ", "_").replace(",", "_").replace("=", ""))
      ablation.append(train_and_test(label, "rnn", vec_dir, run_dir, budget, options, patience=patience))
    # The tutorial's batch of 8 (configs/rnn.cfg) against the 64 of the other models: 8x the updates per drawing.
    batch_runs = [train_and_test(f"rnn batch_size={OTHER_RNN_BATCH}", "rnn", vec_dir,
                                 os.path.join(run["runs_dir"], vec_name, f"rnn_batch{OTHER_RNN_BATCH}"), budget,
                                 train_flags=[f"--batch_size={OTHER_RNN_BATCH}"], patience=patience)]
  bmp = []
  if bmp_dir:
    bmp = [train_and_test(m, m, bmp_dir, os.path.join(run["runs_dir"], run["bmp_name"], m), budget, patience=patience)
           for m in model_names if variants.image_only(m)]
  fidelity = fidelity_runs(bmp_dir, run, bmp) if bmp_dir and FLAGS.fidelity else []
  changed = variant_runs(run, (vec_dir, vec) if vec else None, (bmp_dir, bmp) if bmp else None)
  return dict(vec=vec, ablation=ablation, batch_runs=batch_runs, bmp=bmp, fidelity=fidelity, variants=changed,
              all=vec + ablation[1:] + batch_runs + bmp + [r for _, r in fidelity + changed])


def command_line():
  """The command that makes this table again (thread settings included, --reuse left out)."""
  threads = "".join(f"{k}={os.environ[k]} " for k in THREAD_VARIABLES if k in os.environ)
  arguments = [a for a in sys.argv[1:] if a not in ("--reuse", "--noreuse")]
  return threads + "python -m bench.accuracy " + " ".join(arguments)


def intro_text(run, runs):
  """The section's first paragraph: budget, stopping rule, image sides and what the times mean."""
  budget, patience, cores = run["budget"], run["patience"], os.cpu_count()
  # Wall time of the model runs (training and testing), so a run finished with --reuse reports its first runs'.
  runs_minutes = sum(r["run_wall_s"] for r in runs["all"]) / 60
  stopping = ""
  if patience:
    stopping = (f"Converged mode: each model trains until its eval top-1 has not improved for {patience} "
                f"evaluations (`--stop_patience={patience}`) or its cap is spent, on all rows of every category; "
                + (f"one evaluation every max(one pass over the training split, {FLAGS.converge_eval_steps}) steps "
                   "(`--steps_per_epoch` where a pass is shorter). " if FLAGS.converge_eval_steps else
                   "one evaluation a pass over the training split (an epoch). "))
  return (
      stopping +
      f"Every model: `python -m quickdraw_tf.train` with its `configs/<model>.cfg`, a budget of **{budget:g} CPU "
      f"seconds** of its training process (`--time_budget={budget:g} --budget_clock=cpu`; {budget / cores:.0f} to "
      f"{budget:.0f} wall seconds when the machine's {cores} cores are free), per-epoch evaluation on the eval "
      "split included; then its best weights by eval accuracy on the test split (`quickdraw_tf.evaluate`). "
      "Image sides (`--image_side="
      f"{FLAGS.image_side}`: the smaller of it and a model's default): "
      + ", ".join(f"`{m}` {image_side(models.get(m))} px (default {models.get(m).image_size})"
                  for m in run["models"] if models.get(m).uses_image)
      + ". Training time runs from the start of `fit` to the end of its last evaluation (which runs after the "
      "budget is spent, hence CPU seconds a little over it); examples/s is examples seen (steps x batch) over it."
      f" The {len(runs['all'])} model runs took {runs_minutes:.0f} min "
      "of wall time in all (training and testing; records are built in seconds), measured while other work "
      "shared the machine: wall seconds and examples/s are lower than on an idle machine; CPU seconds and "
      "examples per CPU second less so, though TensorFlow's thread pools burn more CPU a step when they contend "
      "for the cores (one thread each, `TF_NUM_INTRAOP_THREADS=1 TF_NUM_INTEROP_THREADS=1`, wastes less)."
      + ("" if " GPU " in report.machine() else " No GPU was available for this run, so there is no GPU table."))


def data_sections(run, runs, vec_dir, bmp_dir):
  """The results table of each data set, with its records and priors; a list of markdown blocks."""
  vec, bmp, body = runs["vec"], runs["bmp"], []
  if vec:
    vec_n, vec_prior = len(records.read_classes(vec_dir)), prior_rate(vec_dir)
    strokes_dir = os.path.join(FLAGS.data_dir, "strokes")
    body += [
      f"\n### {run['vec_name']}: {vec_n} categories of vector drawings\n",
      f"Records: every vector source of `strokes/` ({', '.join(sorted(os.listdir(strokes_dir)))}), {vec_n} "
      f"categories, deduplicated by `key_id` and geometry, split by the records' hash: {sizes(vec_dir)}. "
      f"Chance: {1 / vec_n:.3f} top-1; always answering the most frequent training class ({vec_prior[1]}): "
      f"{vec_prior[0]:.4f}, marked (prior) where a model scores exactly that.\n",
      results_table(vec, vec_prior[0]),
      batch_norm_note(vec),
    ]
  if any(r["model"] == "vgg19" for r in vec + bmp):
    body.append("\n`vgg19` has no ImageNet weights here (no network): without `--vgg19_weights` train trains all "
                "of it from random weights (with them, the head first on the frozen backbone, then its last block).")
  if bmp:
    bmp_n, bmp_prior, bmp_cap = len(records.read_classes(bmp_dir)), prior_rate(bmp_dir), run["bmp_cap"]
    body += [f"\n### {run['bmp_name']}: {bmp_n} categories of 28 px bitmaps (Google's numpy_bitmap)\n",
             "Records: `bitmaps28/numpy_bitmap_prefix`, image models only"
             + (f", the first {bmp_cap:,} rows of each category" if bmp_cap else "")
             + f": {sizes(bmp_dir)}. Chance: {1 / bmp_n:.3f} top-1; always answering the most frequent training "
             f"class ({bmp_prior[1]}): {bmp_prior[0]:.4f}.\n",
             results_table(bmp, bmp_prior[0]), batch_norm_note(bmp)]
  return body


def reference_section(run, runs, vec_dir, bmp_dir):
  """Our ranks beside the reference report's table 2, with the notes on where the ports differ."""
  vec_name, bmp_name, budget = run["vec_name"], run["bmp_name"], run["budget"]
  return ["\n### Beside the reference report (table 2)\n",
          "`../shared/reference/cnn-rnn-sketch-classification-report.zh.txt`: 25 categories of **70,000 training "
          "drawings each** (1,750,000, plus 2,500 validation drawings a category), CNNs on its 28 px images "
          "resized to 225 px (its train_cnn.py resizes every CNN's input), RNNs on stroke-5 sequences, its best "
          "weights by validation accuracy (its training "
          "snippet runs 5 epochs). Ours: "
          f"{vec_name} has {records.read_stats(vec_dir)['totals']['train']:,} training drawings in all"
          + (f", {bmp_name} {records.read_stats(bmp_dir)['totals']['train']:,}" if bmp_dir else "")
          + (f", each model trained until its eval top-1 stalled or {budget:g} CPU seconds were spent. "
             if run["patience"] else
             f", and {budget:g} CPU seconds per model: far from convergence (see the epochs above), so our "
             "order is that of accuracy reached within the same cost, not of final accuracy. ")
          + "Ranks are among the models present (1 = best; ties share the better rank).\n",
          reference_table(runs["vec"], runs["bmp"], vec_name, bmp_name), SKETCHANET_NOTE, PORT_NOTE]


def comparison_sections(run, runs, vec_dir):
  """Fidelity, variant, ablation and batch-size comparisons, where this invocation ran them."""
  fidelity, changed, ablation, batch_runs = runs["fidelity"], runs["variants"], runs["ablation"], runs["batch_runs"]
  body = []
  if fidelity:
    body += ["\n### Initialisation and schedule as the report's PyTorch code\n", FIDELITY_NOTE,
             change_table(fidelity)]
  if changed:
    body += ["\n### Variants\n", "Each row: one setting (`--variants`) against the model's default run above, same "
             "data, budget and seed.\n", change_table(changed)]
  if len(ablation) == len(ABLATION):
    speed_up = ablation[2]["examples_per_cpu_s"] / ablation[0]["examples_per_cpu_s"]
    body += ["\n### The tutorial model's ablation\n",
             "`../shared/reference/quickdraw-conv1d-bilstm-tutorial-notes.zh.txt`: Google's conv1d -> BiLSTM "
             "tutorial model on its 345 categories with the tutorial's default parameters: linear convolutions "
             "without pooling 75%, ReLU 73%, ReLU with max-pooling (size 4, stride 4) 70%; the notes add that "
             "pooling cut the training time by more than half. Ours: the same three `rnn` variants "
             f"(`--model_option=activation=relu`, `--model_option=pooling=4`) on {run['vec_name']}, same CPU budget, "
             "so a cheaper variant sees more examples: pooling 4 after each of the 3 convolutions shortens the "
             f"BiLSTM's sequences 64-fold, {speed_up:.0f}x the examples per CPU second here.\n",
             ablation_table(ablation, run["vec_name"])]
  if batch_runs:
    body += ["\n### The tutorial model's batch size\n", batch_note(ablation[0], batch_runs[0]),
             results_table([ablation[0], *batch_runs], prior_rate(vec_dir)[0])]
  return body


def plot_panels(run, runs, vec_dir, bmp_dir):
  """(title, results) of each data set for `plots.accuracy_curves`: its runs, variants and fidelity runs included."""
  bmp_records = os.path.basename(bmp_dir) if bmp_dir else None
  on_bmp = [r for _, r in runs["fidelity"] + runs["variants"] if r["key"]["records"] == bmp_records]
  on_vec = runs["ablation"][1:] + runs["batch_runs"] + [r for _, r in runs["variants"] if r not in on_bmp]
  panels = [(f"{run['vec_name']} ({len(records.read_classes(vec_dir))} categories)", runs["vec"] + on_vec)
            ] if runs["vec"] else []
  if runs["bmp"]:
    panels += [(f"{run['bmp_name']} ({len(records.read_classes(bmp_dir))} categories)", runs["bmp"] + on_bmp)]
  return panels


def original_result(model, data_name):
  """The original code's converged result for a model and data set (bench.torch_accuracy), or None."""
  return torch_table.read(FLAGS.results_dir, torch_table.ORIGINAL, model, data_name)


def main(_):
  shared_flags.default_models(name for name, spec in models.MODELS.items() if not spec.trainer)
  run = settings()
  started = time.time()
  vec_dir, bmp_dir = build_run_records(run)
  runs = train_all(run, vec_dir, bmp_dir)
  body = ([intro_text(run, runs)] + data_sections(run, runs, vec_dir, bmp_dir)
          + (targets.section(run, runs, original_result) if run["patience"] else [])
          + reference_section(run, runs, vec_dir, bmp_dir) + comparison_sections(run, runs, vec_dir))
  patience = run["patience"]
  plot_path = os.path.join(run["runs_dir"], "accuracy.png") if FLAGS.quick else run["plot"]
  from bench import plots  # pylint: disable=import-outside-toplevel  (matplotlib: the bench extra, not the tests')
  plots.accuracy_curves(plot_panels(run, runs, vec_dir, bmp_dir), plot_path, "epochs" if patience else "seconds")
  if FLAGS.quick:
    print("\n".join(body))
    print(f"\naccuracy: quick run done in {time.time() - started:.0f} s; plot {plot_path}; BENCHMARKS.md not written")
    return
  body += [f"\n![eval and test top-1 against training]({os.path.relpath(plot_path, REPO)})\n",
           f"Plot: `{os.path.relpath(plot_path, REPO)}`, eval top-1 after each epoch against training "
           f"{'epochs' if patience else 'wall seconds'}, the test top-1 of the best weights as a dot."]
  title = "Accuracy at convergence on real drawings (CPU)" if patience else "Accuracy and cost on real drawings (CPU)"
  report.write_section(run["section"], title, command_line(), "\n".join(body))


if __name__ == "__main__":
  app.run(main)
