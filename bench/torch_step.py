r"""Our CPU training step against the PyTorch code the reference report's figures came from.

  pip install torch   # bench only: PyTorch is not a dependency of quickdraw_tf
  python -m bench.torch_step [--rounds=2] [--models=rnn,bilstm,...]
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
``resnet18``, whose 28 px stem is ours). Ratios within 0.05 of 1 are ties.
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

flags.DEFINE_integer("rounds", 2, "Alternating rounds of each side; the best is kept.", lower_bound=1)
flags.DEFINE_float("seconds", 3.0, "CPU seconds at least per side and round.")
flags.DEFINE_list("models", ["rnn", "bilstm", "sketchanet", "alexnet", "resnet18", "fusion"], "Models to measure.")
flags.DEFINE_bool("quick", False, "Smoke check: one short round a side; prints the table, writes nothing.")
flags.DEFINE_string("measure", None, "Internal: measure one side here, framework:model:points:side.")
FLAGS = flags.FLAGS

MEASUREMENTS = 2  # Per process; the best is kept.

BATCH, CLASSES = steps.BATCH, steps.CLASSES
# (model, points of ink, image side) measured: the shapes.
SHAPES = (("rnn", 64, 0), ("rnn", 128, 0), ("bilstm", 64, 0), ("bilstm", 128, 0), ("sketchanet", 0, 225),
          ("sketchanet", 0, 64), ("alexnet", 0, 225), ("alexnet", 0, 64), ("resnet18", 0, 28),
          ("resnet18", 0, 225), ("fusion", 64, 225))


def torch_model(name, image_side):
  """The PyTorch model of ``name``: (module, its inputs from (ink [b, t, c], image [b, 1, s, s]))."""
  import torch  # pylint: disable=import-outside-toplevel
  from torch import nn  # pylint: disable=import-outside-toplevel

  def conv_relu(cin, cout, kernel, stride=1, padding=0):
    return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.ReLU()]

  def pool(size):  # 3x3/2, padded only where it would leave nothing (as common.padding_that_fits).
    padding = 0 if size >= 3 else 1
    return nn.MaxPool2d(3, 2, padding), (size + 2 * padding - 3) // 2 + 1

  def sketchanet_trunk(side):  # models/sketchnet.py: 15/3, pools 3/2, fc6 a 7x7 convolution; fc7 [b, 512].
    size = (side - 15) // 3 + 1
    pool1, size = pool(size)
    size = size - 4
    pool2, size = pool(size)
    pool5, size = pool(size)
    return nn.Sequential(*conv_relu(1, 64, 15, 3), pool1, *conv_relu(64, 128, 5), pool2,
                         *conv_relu(128, 256, 3, padding=1), *conv_relu(256, 256, 3, padding=1),
                         *conv_relu(256, 256, 3, padding=1), pool5, *conv_relu(256, 512, min(7, size)),
                         nn.Dropout(0.5), *conv_relu(512, 512, 1), nn.Dropout(0.5), nn.Flatten())

  class BiLSTM(nn.Module):  # models/sketchrnn.py: the output at the last (padded) step.
    def __init__(self, features=5, units=256):
      super().__init__()
      self.lstm = nn.LSTM(features, units, bidirectional=True)

    def forward(self, ink):
      out, _ = self.lstm(ink.transpose(0, 1))
      return out[-1]

  class Rnn(nn.Module):  # Ours (Google's tutorial): conv1d 48/5, 64/5, 96/3 (linear), 3 BiLSTM 128, sum over time.
    def __init__(self):
      super().__init__()
      self.convs = nn.ModuleList([nn.Conv1d(i, o, k, padding=k // 2) for i, o, k in ((3, 48, 5), (48, 64, 5),
                                                                                     (64, 96, 3))])
      self.lstms = nn.ModuleList([nn.LSTM(i, 128, bidirectional=True) for i in (96, 256, 256)])
      self.dropout = nn.Dropout(0.3)
      self.fc = nn.Linear(256, CLASSES)

    def forward(self, ink):
      x = ink.transpose(1, 2)
      for i, conv in enumerate(self.convs):
        x = conv(self.dropout(x) if i else x)
      x = x.permute(2, 0, 1)
      for lstm in self.lstms:
        x = self.dropout(lstm(x)[0])
      return self.fc(x.sum(0))

  def bn_conv(cin, cout, kernel, stride=1, relu=True):
    layers = [nn.Conv2d(cin, cout, kernel, stride, kernel // 2, bias=False), nn.BatchNorm2d(cout)]
    return layers + [nn.ReLU()] if relu else layers

  class Block(nn.Module):
    def __init__(self, cin, cout, stride):
      super().__init__()
      self.body = nn.Sequential(*bn_conv(cin, cout, 3, stride), *bn_conv(cout, cout, 3, relu=False))
      self.shortcut = nn.Sequential(*bn_conv(cin, cout, 1, stride, relu=False)) if stride > 1 or cin != cout \
          else nn.Identity()

    def forward(self, x):
      return torch.relu(self.body(x) + self.shortcut(x))

  def resnet18(side):  # Ours: 3x3/1 stem below 112 px, else 7x7/2 and a 3x3/2 max-pool.
    stem = bn_conv(1, 64, 3) if side < 112 else [*bn_conv(1, 64, 7, 2), nn.MaxPool2d(3, 2, 1)]
    blocks, cin = [], 64
    for stage, cout in enumerate((64, 128, 256, 512)):
      blocks += [Block(cin, cout, 2 if stage else 1), Block(cout, cout, 1)]
      cin = cout
    return nn.Sequential(*stem, *blocks, nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(512, CLASSES))

  def alexnet():  # The report's batch-normalised AlexNet.
    def conv(cin, cout, kernel, stride=1, padding=0):
      return [nn.Conv2d(cin, cout, kernel, stride, padding), nn.BatchNorm2d(cout), nn.ReLU()]
    return nn.Sequential(*conv(1, 64, 11, 4, 2), nn.MaxPool2d(3, 2), *conv(64, 192, 5, padding=2), nn.MaxPool2d(3, 2),
                         *conv(192, 384, 3, padding=1), *conv(384, 256, 3, padding=1), *conv(256, 256, 3, padding=1),
                         nn.MaxPool2d(3, 2), nn.Flatten(), nn.LazyLinear(4096, bias=False), nn.BatchNorm1d(4096),
                         nn.ReLU(), nn.Linear(4096, 4096, bias=False), nn.BatchNorm1d(4096), nn.ReLU(),
                         nn.Linear(4096, CLASSES))

  class Fusion(nn.Module):  # models/cnnrnn.py: Sketch-a-Net's fc7 and the BiLSTM's, then 512 and the classes.
    def __init__(self, side):
      super().__init__()
      self.cnn, self.rnn = sketchanet_trunk(side), BiLSTM()
      self.head = nn.Sequential(nn.Linear(1024, 512), nn.ReLU(), nn.Linear(512, CLASSES))

    def forward(self, ink, image):
      return self.head(torch.cat([self.cnn(image), self.rnn(ink)], 1))

  if name == "rnn":
    return Rnn(), lambda ink, image: (ink,)
  if name == "bilstm":
    return nn.Sequential(BiLSTM(), nn.Linear(512, CLASSES)), lambda ink, image: (ink,)
  if name == "sketchanet":
    return nn.Sequential(sketchanet_trunk(image_side), nn.Linear(512, CLASSES)), lambda ink, image: (image,)
  if name == "alexnet":
    return alexnet(), lambda ink, image: (image,)
  if name == "resnet18":
    return resnet18(image_side), lambda ink, image: (image,)
  return Fusion(image_side), lambda ink, image: (ink, image)


def torch_step(name, side, batch, labels):
  import torch  # pylint: disable=import-outside-toplevel
  model, inputs = torch_model(name, side)
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
  """(ours, PyTorch's) best examples per CPU second, each side in processes of its own, alternately.

  One process holding both frameworks slows PyTorch's small LSTM ops many times over (their thread pools
  contend), so each measurement runs alone.
  """
  best = {"ours": 0.0, "torch": 0.0}
  for _ in range(FLAGS.rounds):
    for framework in best:
      command = [sys.executable, "-m", "bench.torch_step", f"--measure={framework}:{name}:{points}:{side}",
                 f"--seconds={FLAGS.seconds}"]
      out = subprocess.run(command, check=True, capture_output=True, text=True).stdout
      best[framework] = max(best[framework], json.loads(out.strip().splitlines()[-1]))
  return best["ours"], best["torch"]


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
    ours, theirs = measure(name, points, side)
    ratio = ours / theirs
    verdict = "tie" if abs(ratio - 1) <= 0.05 else ("faster" if ratio > 1 else "**slower**")
    size = ", ".join(filter(None, [f"{points} points" if points else "", f"{side} px" if side else ""]))
    rows.append([f"`{name}`", size, f"{ours:,.1f}", f"{theirs:,.1f}", f"{ratio:.2f}x", verdict])
    print(rows[-1], flush=True)
  if FLAGS.quick:
    print(report.table(["model", "input", "ours", "PyTorch", "ratio", ""], rows))
    return None
  body = (f"Batch {BATCH}, random inputs of the same shapes, {CLASSES} classes; one training step (forward, "
          f"cross-entropy, backward, Adam). Each side measured in a process of its own, {FLAGS.rounds} alternating "
          f"rounds of {MEASUREMENTS} measurements of at least {FLAGS.seconds:g} CPU s, the best kept; PyTorch "
          f"{torch.__version__} with {torch.get_num_threads()} threads. Examples per CPU second count every "
          "thread's time; TensorFlow with oneDNN on (quickdraw_tf's default).\n\n"
          + report.table(["model", "input", "ours: examples per CPU s", "PyTorch: examples per CPU s",
                          "ours / PyTorch", ""], rows) + "\n")
  report.write_section("torch_step", "Training steps against the original implementations (CPU)",
                       " ".join(["python -m bench.torch_step"] + sys.argv[1:]), body)
  return None


if __name__ == "__main__":
  app.run(main)
