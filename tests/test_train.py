"""train / evaluate / export / predict end to end, on real drawings, on this CPU."""

import glob
import json
import os
import shutil
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
import tensorflow as tf

from quickdraw_tf import evaluate
from quickdraw_tf import export
from quickdraw_tf import make_records
from quickdraw_tf import models
from quickdraw_tf.pipelines import data
from quickdraw_tf.training import run_dir
from tests import verbs

WORDS = ("cat", "bicycle", "fish", "snowflake")
SMALL_IMAGE = {"sketchanet": 64, "alexnet": 64, "resnet18": 28, "fusion": 64, "vgg19": 32}
QUIET = verbs.QUIET


@pytest.fixture(scope="module")
def records_dir(data_dir, tmp_path_factory):
  out = tmp_path_factory.mktemp("records")
  inputs = [os.path.join(data_dir, "strokes", "simplified_lamnguyen", f"{w}.ndjson") for w in WORDS]
  make_records.convert(inputs, str(out), workers=1, progress=False, num_shards=2, eval_fraction=0.2,
                       test_fraction=0.2)
  return str(out)


def _train_cli(*args):
  return verbs.run("train", *args)


def _tags(log_dir):
  from tensorboard.backend.event_processing import event_accumulator  # pylint: disable=g-import-not-at-top
  tags = set()
  for path in glob.glob(os.path.join(log_dir, "*", "events.out.tfevents.*")):
    accumulator = event_accumulator.EventAccumulator(path, size_guidance={"tensors": 0, "images": 0})
    accumulator.Reload()
    tags |= {f"{os.path.basename(os.path.dirname(path))}/{t}" for t in accumulator.Tags()["tensors"]}
  return tags


@pytest.fixture(scope="module")
def trained(records_dir, tmp_path_factory):
  """A bilstm trained for 2 short epochs through the command line, with its configs file."""
  model_dir = str(tmp_path_factory.mktemp("run") / "bilstm")
  result = _train_cli("--model=bilstm", f"--records={records_dir}", f"--model_dir={model_dir}", "--epochs=2",
                      "--steps_per_epoch=3", "--batch_size=16", "--augment")
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir, result


def test_train_writes_checkpoints_config_and_saved_model(trained, records_dir):
  model_dir, _ = trained
  for name in ("config.json", "best.weights.h5", "final.weights.h5", "checkpoints/epoch001.weights.h5",
               "checkpoints/epoch002.weights.h5", "saved_model/saved_model.pb", "saved_model/assets/classes.txt"):
    assert os.path.exists(os.path.join(model_dir, name)), name
  config = run_dir.read_config(model_dir)
  assert config["model"] == "bilstm" and config["classes"] == sorted(WORDS)
  # Backed up after every epoch, even with fewer steps than --checkpoint_steps.
  with open(os.path.join(model_dir, "backup", "training_metadata.json")) as f:
    assert json.load(f)["epoch"] == 2


def test_configs_file_sets_report_defaults(trained):
  model_dir, _ = trained
  # configs/bilstm.cfg: weight decay 6e-4, lr 1e-3 (table 1 of the report), as the run recorded them.
  training = run_dir.read_config(model_dir)["training"]
  assert (training["weight_decay"], training["learning_rate"], training["lr_factor"]) == (0.0006, 0.001, 0.3)
  assert training["batch_size"] == 16 and training["augment"] is not None  # The command line's.


def test_tensorboard_has_the_expected_tags(trained):
  model_dir, _ = trained
  tags = _tags(os.path.join(model_dir, "logs"))
  for tag in ("train/epoch_loss", "train/epoch_accuracy", "train/epoch_top3_accuracy", "validation/epoch_loss",
              "validation/epoch_accuracy", "validation/epoch_top3_accuracy", "train/learning_rate",
              "train/examples_per_second", "validation/confusion_matrix", "validation/drawings (true/predicted)"):
    assert tag in tags, (tag, sorted(tags))


def test_user_errors_are_actionable(records_dir, tmp_path):
  result = _train_cli("--model=lenet", f"--records={records_dir}", f"--model_dir={tmp_path / 'a'}")
  assert result.returncode == 1 and "rnn, bilstm, sketchanet" in result.stderr
  result = _train_cli("--model=rnn", f"--records={tmp_path / 'none'}", f"--model_dir={tmp_path / 'b'}")
  assert result.returncode == 1 and "python -m quickdraw_tf.make_records" in result.stderr
  os.makedirs(tmp_path / "c")
  with open(tmp_path / "c" / "config.json", "w") as f:
    json.dump({"model": "rnn", "classes": ["cat", "dog"]}, f)
  result = _train_cli("--model=rnn", f"--records={records_dir}", f"--model_dir={tmp_path / 'c'}")
  assert result.returncode == 1 and "trained on 2 classes" in result.stderr


def test_time_budget_stops_training_and_still_saves(records_dir, tmp_path):
  model_dir = tmp_path / "budget"
  result = _train_cli("--model=bilstm", f"--records={records_dir}", f"--model_dir={model_dir}", "--epochs=5",
                      "--steps_per_epoch=4", "--batch_size=8", "--time_budget=0.001", "--budget_clock=cpu",
                      "--export=false")
  assert result.returncode == 0, result.stderr[-3000:]
  # The first batch spends the budget: one (short) epoch, evaluated and saved.
  assert "time budget of 0.001 CPU seconds spent at step 1\n" in result.stdout
  assert sorted(os.listdir(model_dir / "checkpoints")) == ["epoch001.weights.h5"]
  assert os.path.exists(model_dir / "best.weights.h5") and os.path.exists(model_dir / "final.weights.h5")


def test_train_and_evaluate_read_records_from_a_bucket(records_dir, tmp_path):
  """--records=URL (TensorFlow's in-memory ram://, read through tf.io.gfile as gs:// is): train and evaluate
  read it, and config.json keeps the URL as given, for evaluate without --records."""
  bucket = f"ram://records-{os.getpid()}-{tmp_path.name}"
  tf.io.gfile.makedirs(bucket)
  for name in os.listdir(records_dir):
    tf.io.gfile.copy(os.path.join(records_dir, name), f"{bucket}/{name}")
  model_dir = tmp_path / "run"
  result = _train_cli("--model=bilstm", f"--records={bucket}", f"--model_dir={model_dir}", "--epochs=1",
                      "--steps_per_epoch=2", "--eval_steps=1", "--batch_size=8", "--export=false")
  assert result.returncode == 0, result.stderr[-3000:]
  assert run_dir.read_config(str(model_dir))["records"] == bucket
  result = verbs.run("evaluate", f"--model_dir={model_dir}", f"--output_dir={tmp_path / 'eval'}")
  assert result.returncode == 0, result.stderr[-3000:]
  with open(os.path.join(records_dir, "stats.json")) as f:
    test_drawings = json.load(f)["totals"]["test"]
  with open(tmp_path / "eval" / "metrics.json") as f:
    assert json.load(f)["examples"] == test_drawings


def test_vgg19_trains_its_head_first_then_its_last_block(records_dir, tmp_path):
  import keras  # pylint: disable=g-import-not-at-top

  from quickdraw_tf.models import vgg19  # pylint: disable=g-import-not-at-top
  weights = str(tmp_path / "vgg19_notop.weights.h5")
  keras.applications.VGG19(include_top=False, weights=None, input_shape=(32, 32, 3)).save_weights(weights)
  model_dir = tmp_path / "vgg19"
  result = _train_cli("--model=vgg19", f"--records={records_dir}", f"--model_dir={model_dir}", "--epochs=2",
                      "--steps_per_epoch=2", "--batch_size=8", "--image_size=32", f"--vgg19_weights={weights}",
                      "--vgg19_head_epochs=1", "--export=false")
  assert result.returncode == 0, result.stderr[-3000:]
  model = models.build("vgg19", len(WORDS), image_size=32)

  def kernel(checkpoint, layer):
    if checkpoint:
      model.load_weights(str(model_dir / "checkpoints" / checkpoint))
    else:
      model.get_layer(vgg19.BACKBONE).load_weights(weights)
    owner = model if layer == "fc_head" else model.get_layer(vgg19.BACKBONE)
    return owner.get_layer(layer).kernel.numpy().copy()

  start, head, finetuned = (
      {layer: kernel(checkpoint, layer) for layer in ("block1_conv1", "block5_conv4", "fc_head")}
      for checkpoint in (None, "epoch001.weights.h5", "epoch002.weights.h5"))
  np.testing.assert_array_equal(head["block5_conv4"], start["block5_conv4"])  # Epoch 1: backbone frozen.
  assert not np.array_equal(finetuned["block5_conv4"], head["block5_conv4"])  # Epoch 2: block 5 trains.
  np.testing.assert_array_equal(finetuned["block1_conv1"], start["block1_conv1"])  # The rest never does.
  assert not np.array_equal(finetuned["fc_head"], head["fc_head"])


def test_mirrored_over_two_cpus_matches_one_device(records_dir):
  script = textwrap.dedent(f"""
      import json, keras, numpy as np, tensorflow as tf
      cpu = tf.config.list_physical_devices("CPU")[0]
      tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)
      from quickdraw_tf import models
      from quickdraw_tf.pipelines import data
      spec = models.get("bilstm")
      batch = next(iter(data.make_dataset({records_dir!r}, "train", spec, 16, bucket=False, deterministic=True)))
      losses = {{}}
      for name, strategy in (("one", tf.distribute.OneDeviceStrategy("/cpu:0")),
                             ("mirrored", tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"]))):
        keras.utils.set_random_seed(7)
        with strategy.scope():
          model = models.build("bilstm", 4)
          model.compile(keras.optimizers.Adam(1e-2), keras.losses.SparseCategoricalCrossentropy(from_logits=True))
        history = model.fit(tf.data.Dataset.from_tensors(batch).repeat(), epochs=4, steps_per_epoch=1, verbose=0)
        losses[name] = history.history["loss"]
      print("LOSSES", json.dumps(losses))
      """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                          env={**os.environ, **QUIET})
  assert result.returncode == 0, result.stderr[-3000:]
  losses = json.loads(result.stdout.split("LOSSES", 1)[1])
  assert losses["one"][0] != losses["one"][-1]  # It trained.
  np.testing.assert_allclose(losses["mirrored"], losses["one"], rtol=1e-4)


def _free_ports(n):
  sockets = [socket.socket() for _ in range(n)]
  for s in sockets:
    s.bind(("127.0.0.1", 0))
  ports = [s.getsockname()[1] for s in sockets]
  for s in sockets:
    s.close()
  return ports


def _multi_worker_run(records_dir, model_dirs, epochs):
  """Two worker processes on 127.0.0.1; returns each one's (returncode, stdout, stderr)."""
  workers = [f"127.0.0.1:{port}" for port in _free_ports(2)]
  processes = []
  for index, model_dir in enumerate(model_dirs):
    tf_config = json.dumps({"cluster": {"worker": workers}, "task": {"type": "worker", "index": index}})
    processes.append(subprocess.Popen(
        [sys.executable, "-m", "quickdraw_tf.train", "--model=bilstm", f"--records={records_dir}",
         f"--model_dir={model_dir}", f"--epochs={epochs}", "--steps_per_epoch=3", "--batch_size=8",
         "--eval_steps=2"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env={**os.environ, **QUIET, "TF_CONFIG": tf_config}))
  return [(p.returncode, out.decode(), err.decode()) for p, (out, err) in
          ((p, p.communicate(timeout=600)) for p in processes)]


def test_multi_worker_two_processes_chief_writes_and_both_resume(records_dir, tmp_path):
  model_dirs = [tmp_path / "worker0", tmp_path / "worker1"]
  runs = {}
  for epochs in (1, 2):  # The second run continues the first from its backup.
    runs[epochs] = _multi_worker_run(records_dir, model_dirs, epochs)
    for returncode, _, err in runs[epochs]:
      assert returncode == 0, err[-3000:]
  for epochs, start in ((1, "starting at step 0, epoch 1"), (2, "starting at step 3, epoch 2")):
    epoch_lines = []
    for _, out, _ in runs[epochs]:
      assert start in out, out
      epoch_lines.append([line for line in out.splitlines() if line.startswith("epoch ")])
    # Both trained, in step: the same all-reduced losses, the same local evaluation.
    assert len(epoch_lines[0]) == 1 and epoch_lines[0] == epoch_lines[1]
    assert "val_accuracy" in epoch_lines[0][0]
  for name in ("saved_model/saved_model.pb", "final.weights.h5", "best.weights.h5", "backup/latest.weights.h5",
               "checkpoints/epoch001.weights.h5", "checkpoints/epoch002.weights.h5", "config.json"):
    assert os.path.exists(model_dirs[0] / name), name
  assert not os.path.exists(model_dirs[1])  # Only the chief writes.
  tags = _tags(str(model_dirs[0] / "logs"))
  assert {"train/epoch_loss", "validation/epoch_accuracy", "validation/confusion_matrix"} <= tags, sorted(tags)
  # Without the chief's backup, the other worker's own would put it out of step: both refuse.
  shutil.rmtree(model_dirs[0] / "backup")
  for returncode, _, err in _multi_worker_run(records_dir, model_dirs, 3):
    assert returncode == 1 and "would restore different training states" in err, err[-3000:]


@pytest.mark.parametrize("name", [name for name, spec in models.MODELS.items() if not spec.trainer])
def test_saved_model_probabilities_equal_the_training_pipeline(records_dir, tmp_path, name):
  """Raw ink through the SavedModel == the Keras model fed by data.make_dataset."""
  spec = models.get(name)
  size = SMALL_IMAGE.get(name)
  model = models.build(name, len(WORDS), image_size=size)
  export.export(model, spec, sorted(WORDS), str(tmp_path / "sm"), size)
  pipeline = data.make_dataset(records_dir, "test", spec, 8, image_size=size, bucket=False, image_source="raster",
                               deterministic=True)
  served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_default"]
  compared = 0
  for (features, labels), (raw, raw_labels) in zip(pipeline, evaluate._drawings(records_dir, "test", 8)):  # pylint: disable=protected-access
    np.testing.assert_array_equal(labels.numpy(), raw_labels)
    expected = tf.nn.softmax(model(features, training=False)).numpy()
    got = served(**raw)["probabilities"].numpy()
    assert np.abs(got - expected).max() < 1e-5, (name, np.abs(got - expected).max())
    compared += len(labels)
  assert compared >= 10


def test_saved_model_serves_in_a_fresh_process_without_the_package(trained, data_dir):
  model_dir, _ = trained
  saved_model = os.path.join(model_dir, "saved_model")
  script = textwrap.dedent(f"""
      import json, sys, tensorflow as tf
      serve = tf.saved_model.load({saved_model!r}).signatures["serving_default"]
      drawing = json.loads(open({os.path.join(data_dir, "strokes", "simplified_lamnguyen", "cat.ndjson")!r})
                           .readline())["drawing"]
      points = []
      for xs, ys in drawing:
        points += [[x, y, 0.0] for x, y in zip(xs, ys)]
        points[-1][2] = 1.0
      out = serve(ink=tf.constant([points]) * 3.0, length=tf.constant([len(points)]))
      assert "quickdraw_tf" not in sys.modules
      print("TOP", [c.decode() for c in out["top_k_classes"].numpy()[0]], float(tf.reduce_sum(out["probabilities"])))
      """)
  result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300,
                          cwd="/", env={**os.environ, **QUIET})
  assert result.returncode == 0, result.stderr[-3000:]
  top = result.stdout.split("TOP", 1)[1]
  assert all(word in WORDS for word in json.loads(top.split("]")[0].replace("'", '"') + "]"))
  cli = subprocess.run(["saved_model_cli", "show", "--dir", saved_model, "--all"], capture_output=True, text=True,
                       timeout=300)
  assert cli.returncode == 0 and "serving_default" in cli.stdout and "top_k_classes" in cli.stdout


def test_evaluate_checkpoint_and_saved_model_agree(trained, records_dir, tmp_path):
  model_dir, _ = trained
  reports = {}
  for key, arg in (("checkpoint", f"--model_dir={model_dir}"),
                   ("saved_model", f"--saved_model={os.path.join(model_dir, 'saved_model')}")):
    out = tmp_path / key
    result = verbs.run("evaluate", arg, f"--records={records_dir}", f"--output_dir={out}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "MAP@3" in result.stdout
    with open(out / "metrics.json") as f:
      reports[key] = json.load(f)
    assert os.path.getsize(out / "confusion_matrix.png") > 0
    with open(out / "confusion_matrix.json") as f:
      matrix = json.load(f)
    assert sum(map(sum, matrix["matrix"])) == reports[key]["examples"]
  assert reports["checkpoint"]["examples"] == reports["saved_model"]["examples"] > 0
  for metric in ("top1_accuracy", "top3_accuracy", "map3"):
    assert abs(reports["checkpoint"][metric] - reports["saved_model"][metric]) < 1e-6


def test_map3_by_hand():
  probabilities = np.array([[0.5, 0.3, 0.2, 0.0], [0.1, 0.2, 0.3, 0.4], [0.4, 0.3, 0.2, 0.1]])
  result = evaluate.metrics([0, 2, 3], probabilities, ["a", "b", "c", "d"])
  # Ranks of the true class: 1, 2, 4 (outside the top 3).
  assert result["top1_accuracy"] == pytest.approx(1 / 3)
  assert result["top3_accuracy"] == pytest.approx(2 / 3)
  assert result["map3"] == pytest.approx((1 + 1 / 2 + 0) / 3)
  assert result["per_class_accuracy"] == {"a": 1.0, "b": None, "c": 0.0, "d": 0.0}


def test_predict_prints_top3_and_names_bad_lines(trained, data_dir, tmp_path):
  model_dir, _ = trained
  with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", "fish.ndjson")) as f:
    lines = f.readlines()[:2]
  (tmp_path / "in.ndjson").write_text("".join(lines) + '{"drawing": [[[1, 2], [3]]]}\n')
  saved_model = f"--saved_model={os.path.join(model_dir, 'saved_model')}"
  result = verbs.run("predict", saved_model, f"--input={tmp_path / 'in.ndjson'}")
  assert result.returncode == 0, result.stderr[-2000:]
  rows = [line for line in result.stdout.splitlines() if line.startswith(str(tmp_path))]
  assert len(rows) == 2 and all(len(row.split(", ")) == 3 for row in rows)
  assert f"{tmp_path / 'in.ndjson'}:3: skipped" in result.stderr
  result = verbs.run("predict", saved_model, "--input=x.png")
  assert result.returncode == 1 and "reads strokes" in result.stderr
  result = verbs.run("predict", saved_model, f"--input={tmp_path / 'missing.ndjson'}")
  assert result.returncode == 1 and f"cannot read {tmp_path / 'missing.ndjson'}" in result.stderr


def test_predict_reads_a_png_for_image_models(data_dir, tmp_path):
  from PIL import Image  # pylint: disable=g-import-not-at-top

  from quickdraw_tf.drawings import ink  # pylint: disable=g-import-not-at-top
  from quickdraw_tf.drawings import raster  # pylint: disable=g-import-not-at-top
  model = models.build("resnet18", len(WORDS), image_size=28)
  export.export(model, models.get("resnet18"), sorted(WORDS), str(tmp_path / "sm"), 28)
  with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", "fish.ndjson")) as f:
    points = ink.strokes_to_points(json.loads(f.readline())["drawing"])
  Image.fromarray(255 - raster.render(points, 64)).save(tmp_path / "fish.png")  # Dark ink on white paper.
  result = verbs.run("predict", f"--saved_model={tmp_path / 'sm'}", f"--input={tmp_path / 'fish.png'}")
  assert result.returncode == 0, result.stderr[-2000:]
  (row,) = [line for line in result.stdout.splitlines() if line.startswith(str(tmp_path))]
  names = [part.rsplit(" ", 1)[0] for part in row.split(": ", 1)[1].split(", ")]
  assert len(names) == 3 and set(names) <= set(WORDS)
  # The same picture through serving_image directly gives the same top class.
  served = tf.saved_model.load(str(tmp_path / "sm")).signatures["serving_image"]
  image = raster.render(points, 64)[None, ..., None]
  assert served(image=tf.constant(image))["top_k_classes"].numpy()[0][0].decode() == names[0]
