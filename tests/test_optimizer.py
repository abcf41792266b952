"""train's Adam with PyTorch's coupled weight decay (training/optimizer.py): PyTorch's steps, replicas, saving."""

import importlib.util
import json
import os
import subprocess
import sys
import textwrap

import keras
import numpy as np
import pytest

from quickdraw_tf import make_records
from quickdraw_tf.training import optimizer
from tests import verbs

SHAPES = ((3, 4), (4,))  # A kernel and a bias: PyTorch's report code decays both.
LR = 1e-3


def _weights_and_gradients(steps, seed=0):
  """(initial weights, [step][variable] gradients) of `SHAPES`, of magnitude about 1 (Adam's epsilon, placed
  differently by Keras and PyTorch, is then far below the tolerance)."""
  rng = np.random.default_rng(seed)
  weights = [rng.normal(size=shape).astype(np.float32) for shape in SHAPES]
  gradients = [[rng.normal(size=shape).astype(np.float32) for shape in SHAPES] for _ in range(steps)]
  return weights, gradients


def _keras_steps(opt, weights, gradients):
  """The weights after ``opt`` applies each step's gradients, eagerly, outside any strategy."""
  variables = [keras.Variable(w) for w in weights]
  for step in gradients:
    opt.apply([keras.ops.convert_to_tensor(g) for g in step], variables)
  return [keras.ops.convert_to_numpy(v) for v in variables]


TORCH_SCRIPT = """
import json, sys
import torch
given = json.load(sys.stdin)
results = []
for weight_decay, clip_norm in given["cases"]:
  params = [torch.nn.Parameter(torch.tensor(w)) for w in given["weights"]]
  opt = torch.optim.Adam(params, given["lr"], weight_decay=weight_decay)
  for step in given["gradients"]:
    for param, grad in zip(params, step):
      param.grad = torch.tensor(grad)
    if clip_norm:
      torch.nn.utils.clip_grad_norm_(params, clip_norm)
    opt.step()
  results.append([p.detach().tolist() for p in params])
print("RESULTS", json.dumps(results))
"""


def _torch_steps(weights, gradients, cases):
  """The weights after torch.optim.Adam(weight_decay=...) takes the same steps, clip_grad_norm_ first where
  asked: one list of arrays per (weight decay, clip norm or 0) of ``cases``.

  In a process of its own: PyTorch and TensorFlow in one process crash here.
  """
  if importlib.util.find_spec("torch") is None:
    pytest.skip("PyTorch is a bench-only dependency: pip install torch")
  given = {"lr": LR, "cases": cases, "weights": [w.tolist() for w in weights],
           "gradients": [[g.tolist() for g in step] for step in gradients]}
  result = subprocess.run([sys.executable, "-c", TORCH_SCRIPT], input=json.dumps(given), capture_output=True,
                          text=True, timeout=300, check=False)
  assert result.returncode == 0, result.stderr[-3000:]
  return [[np.array(w, np.float32) for w in run] for run in json.loads(result.stdout.split("RESULTS", 1)[1])]


@pytest.mark.parametrize("clip_norm", [0.0, 2.0])
def test_steps_equal_pytorch_adam_with_its_weight_decay(clip_norm):
  weights, gradients = _weights_and_gradients(5)
  ours = _keras_steps(optimizer.adam(LR, l2_decay=0.3, clip_norm=clip_norm), weights, gradients)
  theirs, plain = _torch_steps(weights, gradients, [(0.3, clip_norm), (0.0, clip_norm)])
  for a, b in zip(ours, theirs):
    np.testing.assert_allclose(a, b, atol=1e-6, rtol=0)
  # The term matters at this size: without it the weights are elsewhere (the comparison above can fail).
  assert max(np.abs(a - b).max() for a, b in zip(ours, plain)) > 1e-4


def test_without_l2_decay_it_is_keras_adam():
  weights, gradients = _weights_and_gradients(3, seed=1)
  assert type(optimizer.adam(LR)) is keras.optimizers.Adam  # pylint: disable=unidiomatic-typecheck
  ours = _keras_steps(optimizer.CoupledL2Adam(LR, l2_decay=0.0), weights, gradients)
  for a, b in zip(ours, _keras_steps(keras.optimizers.Adam(LR), weights, gradients)):
    np.testing.assert_array_equal(a, b)
  with pytest.raises(ValueError, match="l2_decay"):
    optimizer.CoupledL2Adam(LR, l2_decay=-1.0)


def test_each_replica_adds_its_share_once_summed():
  # Two logical CPUs need a process of their own (devices are fixed once TensorFlow starts).
  script = textwrap.dedent("""
      import json, keras, numpy as np, tensorflow as tf
      cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      from quickdraw_tf.training import optimizer
      rng = np.random.default_rng(0)
      x, y = rng.normal(size=(16, 5)).astype("float32"), rng.integers(0, 3, 16)
      weights = {}
      for name, strategy, l2 in (("one", tf.distribute.OneDeviceStrategy("/cpu:0"), 0.5),
                                 ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]), 0.5),
                                 ("one_doubled", tf.distribute.OneDeviceStrategy("/cpu:0"), 1.0)):
        keras.utils.set_random_seed(7)
        with strategy.scope():
          model = keras.Sequential([keras.Input((5,)), keras.layers.Dense(8, "relu"), keras.layers.Dense(3)])
          model.compile(optimizer.adam(0.05, l2_decay=l2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        model.fit(x, y, batch_size=16, epochs=6, verbose=0, shuffle=False)
        weights[name] = [w.tolist() for w in model.get_weights()]
      print("WEIGHTS", json.dumps(weights))
      """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **verbs.QUIET})
  assert result.returncode == 0, result.stderr[-3000:]
  weights = {k: [np.array(w) for w in v] for k, v in json.loads(result.stdout.split("WEIGHTS", 1)[1]).items()}
  for a, b in zip(weights["mirrored"], weights["one"]):
    np.testing.assert_allclose(a, b, atol=1e-5)
  # Adding the whole term on each replica (twice the decay) would be told apart.
  assert max(np.abs(a - b).max() for a, b in zip(weights["one_doubled"], weights["one"])) > 1e-3


def test_a_model_with_it_saves_loads_and_keeps_its_state(tmp_path):
  def compiled():
    keras.utils.set_random_seed(3)
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(2)])
    model.compile(optimizer.adam(0.01, l2_decay=0.02, clip_norm=1.0), "mse")
    return model
  x, y = np.ones((8, 4), np.float32), np.zeros((8, 2), np.float32)
  model = compiled()
  model.fit(x, y, epochs=2, verbose=0)
  model.save(tmp_path / "model.keras")
  loaded = keras.saving.load_model(tmp_path / "model.keras")
  assert isinstance(loaded.optimizer, optimizer.CoupledL2Adam) and loaded.optimizer.l2_decay == 0.02
  assert loaded.optimizer.global_clipnorm == 1.0
  # train's backups are weights files with the optimizer's variables (backup.BackupAndRestore).
  model.save_weights(tmp_path / "backup.weights.h5")
  restored = compiled()
  restored.optimizer.build(restored.trainable_variables)
  restored.load_weights(tmp_path / "backup.weights.h5")
  for a, b in zip(restored.optimizer.variables, model.optimizer.variables):
    np.testing.assert_array_equal(keras.ops.convert_to_numpy(a), keras.ops.convert_to_numpy(b))
  assert int(keras.ops.convert_to_numpy(restored.optimizer.iterations)) == 2


def test_train_with_l2_decay_records_it_and_resumes(synthetic_files, tmp_path):
  records = str(tmp_path / "records")
  make_records.convert(synthetic_files(["cat", "fish"]), records, workers=1, progress=False, num_shards=1,
                       eval_fraction=0.2, test_fraction=0.2)
  args = ("--model=rnn", f"--records={records}", f"--model_dir={tmp_path / 'run'}", "--steps_per_epoch=2",
          "--eval_steps=1", "--export=false", "--l2_decay=0.001", "--weight_decay=0")
  result = verbs.run("train", *args, "--epochs=1")
  assert result.returncode == 0, result.stderr[-3000:]
  first = (tmp_path / "run" / "checkpoints" / "epoch001.weights.h5").stat().st_mtime_ns
  result = verbs.run("train", *args, "--epochs=2")  # Goes on from the backup of epoch 1.
  assert result.returncode == 0, result.stderr[-3000:]
  # Resumed: epoch 1 was not trained (and its checkpoint written) again.
  assert (tmp_path / "run" / "checkpoints" / "epoch001.weights.h5").stat().st_mtime_ns == first
  with open(tmp_path / "run" / "config.json", encoding="utf-8") as f:
    config = json.load(f)
  assert config["training"]["l2_decay"] == 0.001 and config["training"]["weight_decay"] == 0.0
  assert sorted(os.listdir(tmp_path / "run" / "checkpoints")) == ["epoch001.weights.h5", "epoch002.weights.h5"]
