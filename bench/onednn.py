r"""Training steps with TensorFlow's oneDNN kernels off and on, on this CPU.

  python -m bench.onednn [--rounds=2]

TensorFlow turns oneDNN on by default only on CPUs with AVX512-VNNI,
AVX512-BF16 or AMX; `quickdraw_tf` turns it on everywhere unless
``TF_ENABLE_ONEDNN_OPTS`` is set (quickdraw_tf/__init__.py). The setting is read
once, when TensorFlow loads, so each side runs in a process of its own
(``python -m bench.onednn --side=0`` / ``--side=1``), alternately, ``--rounds``
times; the best round of each side is kept. Each model: examples per CPU
second of its training step at batch 64 on random inputs (64 points of ink,
images at 64 px, resnet18 at 28), as bench/torch_step.py measures ours.
"""

import json
import os
import subprocess
import sys

from absl import app
from absl import flags

from bench import report

flags.DEFINE_integer("rounds", 2, "Alternating rounds of each side; the best is kept.", lower_bound=1)
flags.DEFINE_enum("side", None, ["0", "1"], "Internal: measure in this process, oneDNN off (0) or on (1).")
flags.DEFINE_float("seconds", 3.0, "CPU seconds at least per model and round.")
FLAGS = flags.FLAGS

SHAPES = (("rnn", 64, 0), ("bilstm", 64, 0), ("sketchanet", 0, 64), ("alexnet", 0, 64), ("resnet18", 0, 28),
          ("fusion", 64, 64), ("vgg19", 0, 64))


def measure_here():
  """Prints a JSON list of examples per CPU second, one per `SHAPES` row, measured in this process."""
  import keras  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel

  from bench import steps  # pylint: disable=import-outside-toplevel
  rates = []
  for name, points, side in SHAPES:
    keras.utils.set_random_seed(0)
    batch, _, labels = steps.random_batch(name, points, side, np.random.default_rng(0))
    step = steps.our_step(name, side, batch, labels)
    step()
    rates.append(steps.examples_per_cpu_second(step, FLAGS.seconds))
    keras.backend.clear_session()
  print(json.dumps(rates))


def onednn_features():
  """Which of the CPU features that make TensorFlow turn oneDNN on by itself this CPU has."""
  present = report.cpu_flags()
  return [name for flag, name in (("avx512_vnni", "AVX512-VNNI"), ("avx512_bf16", "AVX512-BF16"),
                                  ("amx_tile", "AMX")) if flag in present]


def run_side(setting):
  env = {**os.environ, "TF_ENABLE_ONEDNN_OPTS": setting}
  command = [sys.executable, "-m", "bench.onednn", f"--side={setting}", f"--seconds={FLAGS.seconds}"]
  out = subprocess.run(command, env=env, check=True, capture_output=True, text=True).stdout
  return json.loads(out.strip().splitlines()[-1])


def main(_):
  if FLAGS.side is not None:
    return measure_here()
  best = {"0": [0.0] * len(SHAPES), "1": [0.0] * len(SHAPES)}
  for _ in range(FLAGS.rounds):
    for setting in ("0", "1"):
      best[setting] = [max(a, b) for a, b in zip(best[setting], run_side(setting))]
  rows, features = [], onednn_features()
  for (name, points, side), off, on in zip(SHAPES, best["0"], best["1"]):
    size = ", ".join(filter(None, [f"{points} points" if points else "", f"{side} px" if side else ""]))
    rows.append([f"`{name}`", size, f"{off:,.1f}", f"{on:,.1f}", f"**{on / off:.2f}x**"])
    print(rows[-1], flush=True)
  body = ("Examples per CPU second of each model's training step (batch 64, random inputs), TensorFlow's oneDNN "
          f"kernels off (`TF_ENABLE_ONEDNN_OPTS=0`) and on (`=1`, quickdraw_tf's default), each side in a process "
          f"of its own, {FLAGS.rounds} alternating rounds, the best kept. "
          + (f"This CPU has {', '.join(features)}: TensorFlow turns oneDNN on by itself here."
             if features else "This CPU has none of AVX512-VNNI, AVX512-BF16 and AMX: TensorFlow alone leaves "
             "oneDNN off here.") + "\n\n"
          + report.table(["model", "input", "oneDNN off", "oneDNN on", "on / off"], rows) + "\n")
  report.write_section("onednn", "oneDNN on CPUs where TensorFlow leaves it off",
                       " ".join(["python -m bench.onednn"] + sys.argv[1:]), body)
  return None


if __name__ == "__main__":
  app.run(main)
