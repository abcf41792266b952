r"""Our CPU training step against the PyTorch code the reference report's figures came from.

  pip install torch   # bench only: PyTorch is not a dependency of quickdraw_tf
  python -m bench.torch_step [--rounds=6] [--models=rnn,bilstm,...]
  python -m bench.torch_step --quick   # smoke check: prints, writes nothing

For each model and input size: examples per CPU second of one training step
(forward, cross-entropy, backward, Adam update) at batch 64 on random inputs
of the same shapes, ours (`models.build`, Keras' ``train_on_batch``) and
PyTorch's, each in a process of its own, alternately, ``--rounds`` times; the
best measurement of each side is kept. CPU seconds are the process's, all threads: both
frameworks use every core. The PyTorch side is the report's code
(LogCreative/quickdraw-classifier: its ``models/sketchrnn.py`` BiLSTM over
``out[-1]``, ``models/sketchnet.py``, the batch-normalised AlexNet, the
CNN+RNN fusion) where it defines the model, and a copy of our own
architecture where it does not (``rnn``, Google's TF 1 tutorial model;
``resnet18``: the report's runs a bare stem on 225 px). Ratios within 0.05 of 1 are ties.

The ``sketch_rnn`` rows (one per decoder cell) time Sketch-RNN's training step
(its own loss, gradients clipped at 1 per element, Adam) against
`torch_models.SketchRNN`, the same network written in PyTorch, on a bucketed
batch of stroke-5 drawings as `sketch_rnn_data` makes it.
"""

import json
import subprocess
import sys

if any(arg.startswith("--measure=torch:") for arg in sys.argv):
  # A PyTorch side imports torch._dynamo before TensorFlow: imported after it (as torch.optim does on first use),
  # it crashed the process (SIGSEGV; torch 2.14, TensorFlow 2.21).
  pass  # pylint: disable=g-bad-import-order,unused-import
from absl import app
from absl import flags
import keras
import numpy as np

from bench import report
from bench import shared_flags  # --models: the models measured (main says which by default).
from bench import steps
from quickdraw_tf import models

flags.DEFINE_integer("rounds", 6, "Alternating rounds of each side; the best is kept. One process can land "
                     "30% below its side's best, hence several.", lower_bound=1)
flags.DEFINE_float("seconds", 3.0, "CPU seconds at least per side and round.")
# --quick (bench/shared_flags.py) here: one short round a side; prints the table, writes nothing.
flags.DEFINE_string("measure", None, "Internal: measure one side here, framework:model:points:side.")
FLAGS = flags.FLAGS

MEASUREMENTS = 2  # Per process; the best is kept.

BATCH, CLASSES = steps.BATCH, steps.CLASSES
COLUMNS = ["model", "input", "ours: examples per CPU s", "PyTorch: examples per CPU s", "ours / PyTorch", "",
           "ours / PyTorch, medians", "spread of ours' rounds", "spread of PyTorch's rounds"]
# (model, points of ink, image side) measured: the shapes.
SHAPES = (("rnn", 64, 0), ("rnn", 128, 0), ("bilstm", 64, 0), ("bilstm", 128, 0), ("sketchanet", 0, 225),
          ("sketchanet", 0, 64), ("alexnet", 0, 225), ("alexnet", 0, 64), ("resnet18", 0, 28),
          ("resnet18", 0, 225), ("fusion", 64, 225), ("sketch_rnn", 112, 0), ("sketch_rnn_layer_norm", 112, 0),
          ("sketch_rnn_hyper", 112, 0))
# Sketch-RNN's rows: decoder cell of each. 112 rows: cat's 95th percentile of stroke-5 rows (simplified_vlandham), a
# long bucket's batch; the loss's N_max is the same 112.
SKETCH_CELLS = {"sketch_rnn": "lstm", "sketch_rnn_layer_norm": "layer_norm", "sketch_rnn_hyper": "hyper"}


def sketch_batch(rows, rng):
  """A bucketed stroke-5 batch: strokes float32 [BATCH, rows, 5], lengths int [BATCH] (the longest rows - 1)."""
  length = np.r_[rows - 1, rng.integers(rows // 2, rows, BATCH - 1)]
  strokes = np.zeros((BATCH, rows, 5), "float32")
  strokes[..., :2] = rng.normal(size=(BATCH, rows, 2))
  strokes[np.arange(BATCH)[:, None], np.arange(rows)[None], 2 + (rng.uniform(size=(BATCH, rows)) < 0.1)] = 1
  strokes[np.arange(rows)[None] >= length[:, None]] = (0, 0, 0, 0, 1)
  return strokes, length


def sketch_step(framework, cell, rows, rng):
  """One side's Sketch-RNN training step (Adam 1e-3, gradients clipped at 1 per element) on a `sketch_batch`."""
  strokes, length = sketch_batch(rows, rng)
  if framework == "ours":
    model = models.build("sketch_rnn", 1, decoder_cell=cell, max_seq_len=rows)
    model.compile(keras.optimizers.Adam(1e-3, clipvalue=1.0))
    batch = {"strokes": strokes, "length": length.astype("int32")}
    return lambda: model.train_on_batch(batch)
  import torch  # pylint: disable=import-outside-toplevel

  from bench import torch_models  # pylint: disable=import-outside-toplevel
  model = torch_models.SketchRNN(cell, n_max=rows)
  optimizer = torch.optim.Adam(model.parameters(), 1e-3)
  strokes, length = torch.from_numpy(strokes), torch.from_numpy(length)

  def step():
    optimizer.zero_grad()
    model(strokes, length).backward()
    torch.nn.utils.clip_grad_value_(model.parameters(), 1.0)
    optimizer.step()
  return step


def torch_step(name, side, batch, labels):
  import torch  # pylint: disable=import-outside-toplevel

  from bench import torch_models  # pylint: disable=import-outside-toplevel
  model, inputs = torch_models.build(name, side)
  args = [torch.from_numpy(a) for a in inputs(*batch)]
  target = torch.from_numpy(labels)
  model(*args)  # Materialises lazy layers before the optimizer takes the parameters.
  optimizer = torch.optim.Adam(model.parameters(), 1e-3)

  def step():
    optimizer.zero_grad()
    torch.nn.functional.cross_entropy(model(*args), target).backward()
    optimizer.step()
  return step


def measure_here(name, points, side, framework):
  """Prints the best examples per CPU second of one side's step over `MEASUREMENTS` measurements, in this process."""
  if name in SKETCH_CELLS:
    if framework == "torch":
      import torch  # pylint: disable=import-outside-toplevel
      torch.manual_seed(0)
    keras.utils.set_random_seed(0)
    step = sketch_step(framework, SKETCH_CELLS[name], points, np.random.default_rng(0))
  else:
    step = classifier_step(name, points, side, framework)
  step()  # Warm up: traces, allocations.
  step()
  print(json.dumps(max(steps.examples_per_cpu_second(step, FLAGS.seconds) for _ in range(MEASUREMENTS))))


def classifier_step(name, points, side, framework):
  """One side's classifier training step on `steps.random_batch`."""
  ours, theirs, labels = steps.random_batch(name, points, side, np.random.default_rng(0))
  if framework == "ours":
    keras.utils.set_random_seed(0)
    step = steps.our_step(name, side, ours, labels)
  else:
    import torch  # pylint: disable=import-outside-toplevel
    torch.manual_seed(0)
    step = torch_step(name, side, theirs, labels)
  return step


def measure(name, points, side):
  """{"ours": [...], "torch": [...]}: examples per CPU second of each round, each side in processes of its own.

  One process holding both frameworks slows PyTorch's small LSTM ops many times over (their thread pools
  contend), so each measurement runs alone, the two sides alternately.
  """
  rounds = {"ours": [], "torch": []}
  for _ in range(FLAGS.rounds):
    for framework, rates in rounds.items():
      command = [sys.executable, "-m", "bench.torch_step", f"--measure={framework}:{name}:{points}:{side}",
                 f"--seconds={FLAGS.seconds}"]
      out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
      rates.append(json.loads(out.strip().splitlines()[-1]))
  return rounds


def spread(rates):
  """(best - worst) / best of one side's rounds: how much a single round can mislead."""
  return (max(rates) - min(rates)) / max(rates)


def main(_):
  shared_flags.default_models(["rnn", "bilstm", "sketchanet", "alexnet", "resnet18", "fusion", "sketch_rnn",
                               "sketch_rnn_layer_norm", "sketch_rnn_hyper"])
  if FLAGS.measure:
    framework, name, points, side = FLAGS.measure.split(":")
    return measure_here(name, int(points), int(side), framework)
  if FLAGS.quick:
    FLAGS.rounds, FLAGS.seconds = 1, 0.5
  try:
    import torch  # pylint: disable=import-outside-toplevel
  except ImportError:
    sys.exit("torch_step: PyTorch is not installed (bench only): pip install torch")
  rows = []
  for name, points, side in SHAPES:
    if name not in FLAGS.models:
      continue
    rounds = measure(name, points, side)
    ours, theirs = max(rounds["ours"]), max(rounds["torch"])
    ratio = ours / theirs
    verdict = "tie" if abs(ratio - 1) <= 0.05 else ("faster" if ratio > 1 else "**slower**")
    size = ", ".join(filter(None, [f"{points} {'rows' if name in SKETCH_CELLS else 'points'}" if points else "", f"{side} px" if side else ""]))
    rows.append([f"`{name}`", size, f"{ours:,.1f}", f"{theirs:,.1f}", f"{ratio:.2f}x", verdict,
                 f"{np.median(rounds['ours']) / np.median(rounds['torch']):.2f}x", f"{spread(rounds['ours']):.0%}",
                 f"{spread(rounds['torch']):.0%}"])
    print(rows[-1], flush=True)
  if FLAGS.quick:
    print(report.table(COLUMNS, rows))
    return None
  body = (f"Batch {BATCH}, random inputs of the same shapes, {CLASSES} classes; one training step (forward, "
          f"cross-entropy, backward, Adam). Each side measured in a process of its own, {FLAGS.rounds} alternating "
          f"rounds of {MEASUREMENTS} measurements of at least {FLAGS.seconds:g} CPU s, the best kept; PyTorch "
          f"{torch.__version__} with {torch.get_num_threads()} threads. Examples per CPU second count every "
          "thread's time; TensorFlow with oneDNN on (quickdraw_tf's default).\n\n"
          + report.table(COLUMNS, rows) + "\n\nThe verdict is the ratio of the bests. A single round can differ from "
          "its side's best by the spread shown (the LSTMs' small ops vary most from process to process), which is "
          "why there are several rounds and why the ratio of the medians is shown beside it.\n")
  # Sketch-RNN's rows alone (--models=sketch_rnn,...) get a section of their own, leaving the full table be.
  section = "torch_step_sketch_rnn" if set(FLAGS.models) <= set(SKETCH_CELLS) else "torch_step"
  report.write_section(section, "Training steps against the original implementations (CPU)"
                       + (": Sketch-RNN" if section != "torch_step" else ""),
                       " ".join(["python -m bench.torch_step"] + sys.argv[1:]), body)
  return None


if __name__ == "__main__":
  app.run(main)
