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
"""

import json
import subprocess
import sys

from absl import app
from absl import flags
import keras
import numpy as np

from bench import report
from bench import steps

flags.DEFINE_integer("rounds", 6, "Alternating rounds of each side; the best is kept. One process can land "
                     "30% below its side's best, hence several.", lower_bound=1)
flags.DEFINE_float("seconds", 3.0, "CPU seconds at least per side and round.")
flags.DEFINE_list("models", ["rnn", "bilstm", "sketchanet", "alexnet", "resnet18", "fusion"], "Models to measure.")
flags.DEFINE_bool("quick", False, "Smoke check: one short round a side; prints the table, writes nothing.")
flags.DEFINE_string("measure", None, "Internal: measure one side here, framework:model:points:side.")
FLAGS = flags.FLAGS

MEASUREMENTS = 2  # Per process; the best is kept.

BATCH, CLASSES = steps.BATCH, steps.CLASSES
COLUMNS = ["model", "input", "ours: examples per CPU s", "PyTorch: examples per CPU s", "ours / PyTorch", "",
           "ours / PyTorch, medians", "spread of ours' rounds", "spread of PyTorch's rounds"]
# (model, points of ink, image side) measured: the shapes.
SHAPES = (("rnn", 64, 0), ("rnn", 128, 0), ("bilstm", 64, 0), ("bilstm", 128, 0), ("sketchanet", 0, 225),
          ("sketchanet", 0, 64), ("alexnet", 0, 225), ("alexnet", 0, 64), ("resnet18", 0, 28),
          ("resnet18", 0, 225), ("fusion", 64, 225))


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
  ours, theirs, labels = steps.random_batch(name, points, side, np.random.default_rng(0))
  if framework == "ours":
    keras.utils.set_random_seed(0)
    step = steps.our_step(name, side, ours, labels)
  else:
    import torch  # pylint: disable=import-outside-toplevel
    torch.manual_seed(0)
    step = torch_step(name, side, theirs, labels)
  step()  # Warm up: traces, allocations.
  step()
  print(json.dumps(max(steps.examples_per_cpu_second(step, FLAGS.seconds) for _ in range(MEASUREMENTS))))


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
    size = ", ".join(filter(None, [f"{points} points" if points else "", f"{side} px" if side else ""]))
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
  report.write_section("torch_step", "Training steps against the original implementations (CPU)",
                       " ".join(["python -m bench.torch_step"] + sys.argv[1:]), body)
  return None


if __name__ == "__main__":
  app.run(main)
