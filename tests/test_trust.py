"""Results a user can trust: metrics for any number of classes, the serving contract, hostile predict input,
run directories that a mistake or a kill cannot damage, and the README's cat/dog flow end to end."""

import json
import os
import shutil
import subprocess
import sys
import textwrap

import h5py
import keras
import numpy as np
import pytest
import tensorflow as tf

from quickdraw_tf import evaluate
from quickdraw_tf import export
from quickdraw_tf import make_records
from quickdraw_tf import models
from quickdraw_tf import train
from quickdraw_tf.serving import tflite
from quickdraw_tf.training import backup
from tests import test_download
from tests import verbs

QUIET = verbs.QUIET


# --- Metrics: 1, 2, 3 and many classes ---


def test_metrics_one_class():
  result = evaluate.metrics([0, 0], np.ones((2, 1)), ["cat"])
  assert result["top_k"] == 1
  assert result["top1_accuracy"] == result["top3_accuracy"] == result["map3"] == 1.0


def test_metrics_two_classes_rank_over_two():
  probabilities = np.array([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7]])
  result = evaluate.metrics([0, 1, 1], probabilities, ["cat", "dog"])
  # Ranks of the true class: 1, 2, 1.
  assert result["top_k"] == 2
  assert result["top1_accuracy"] == pytest.approx(2 / 3)
  assert result["top3_accuracy"] == 1.0
  assert result["map3"] == pytest.approx((1 + 1 / 2 + 1) / 3)
  assert result["per_class_accuracy"] == {"cat": 1.0, "dog": 0.5}
  assert result["confusion_matrix"] == [[1, 0], [1, 1]]


def test_metrics_three_and_many_classes():
  probabilities = np.array([[0.2, 0.3, 0.5], [0.5, 0.3, 0.2]])
  result = evaluate.metrics([0, 0], probabilities, ["a", "b", "c"])  # Ranks 3 and 1.
  assert result["top_k"] == 3 and result["top3_accuracy"] == 1.0
  assert result["map3"] == pytest.approx((1 / 3 + 1) / 2)
  rng = np.random.default_rng(0)
  probabilities = rng.random((50, 345))
  labels = rng.integers(0, 345, 50)
  ranks = (probabilities > probabilities[np.arange(50), labels][:, None]).sum(1) + 1
  result = evaluate.metrics(labels, probabilities, [str(i) for i in range(345)])
  assert result["top1_accuracy"] == pytest.approx(np.mean(ranks == 1))
  assert result["top3_accuracy"] == pytest.approx(np.mean(ranks <= 3))
  assert result["map3"] == pytest.approx(np.mean(np.where(ranks <= 3, 1 / ranks, 0)))


def test_metrics_refuse_mismatched_shapes():
  with pytest.raises(ValueError, match="shape"):
    evaluate.metrics([0, 1], np.ones((2, 3)), ["a", "b"])
  with pytest.raises(ValueError, match="shape"):
    evaluate.metrics([], np.ones((0, 2)), ["a", "b"])
  with pytest.raises(ValueError, match="labels must index the 2 classes"):
    evaluate.metrics([0, 2], np.ones((2, 2)), ["a", "b"])


def test_metrics_refuse_non_finite_probabilities():
  with pytest.raises(ValueError, match="NaN or infinite probabilities for 1 of 2 drawings"):
    evaluate.metrics([0, 1], np.array([[0.5, 0.5], [np.nan, 0.2]]), ["a", "b"])


# --- Evaluating a SavedModel on records that hold a subset of its classes ---


def _constant_saved_model(path, class_names, logits):
  """An rnn whose logits are ``logits`` whatever the drawing."""
  model = models.build("rnn", len(class_names))
  layer = model.get_layer("logits")
  layer.kernel.assign(np.zeros(layer.kernel.shape, np.float32))
  layer.bias.assign(np.asarray(logits, np.float32))
  export.export(model, models.get("rnn"), class_names, str(path))
  return str(path)


@pytest.fixture(scope="module")
def dog_records(synthetic_files, tmp_path_factory):
  out = tmp_path_factory.mktemp("dogs")
  make_records.convert(synthetic_files(["dog"]), str(out), workers=1, progress=False, num_shards=1,
                       eval_fraction=0.0, test_fraction=0.4)
  return str(out)


def test_evaluate_saved_model_ranks_over_all_of_its_classes(dog_records, tmp_path):
  saved_model = _constant_saved_model(tmp_path / "sm", ["cat", "dog", "fish"], [5.0, 0.0, -5.0])
  labels, probabilities, names = evaluate.predict_saved_model(saved_model, dog_records, "test")
  assert names == ["cat", "dog", "fish"] and probabilities.shape == (len(labels), 3)
  result = evaluate.metrics(labels, probabilities, names)
  # Every dog scores below cat: rank 2 of 3, never top-1.
  assert result["examples"] >= 5 and result["top1_accuracy"] == 0.0
  assert result["top3_accuracy"] == 1.0 and result["map3"] == pytest.approx(0.5)
  assert result["per_class_accuracy"]["dog"] == 0.0 and result["per_class_accuracy"]["cat"] is None


def test_evaluate_records_with_a_class_the_model_lacks_is_an_error(dog_records, tmp_path):
  saved_model = _constant_saved_model(tmp_path / "sm", ["cat", "fish"], [0.0, 0.0])
  result = verbs.run("evaluate", f"--saved_model={saved_model}", f"--records={dog_records}")
  assert result.returncode == 1 and "does not know 1 class(es) of the records: ['dog']" in result.stderr


def test_evaluate_an_empty_split_is_a_one_line_error(dog_records, tmp_path):
  saved_model = _constant_saved_model(tmp_path / "sm", ["dog"], [0.0])
  result = verbs.run("evaluate", f"--saved_model={saved_model}", f"--records={dog_records}", "--split=eval")
  assert result.returncode == 1
  assert result.stderr.strip().splitlines()[-1].startswith("evaluate: error: the eval split of")
  assert "Traceback" not in result.stderr


# --- The serving contract ---


@pytest.fixture(scope="module")
def serving(tmp_path_factory):
  path = tmp_path_factory.mktemp("serving") / "sm"
  model = models.build("bilstm", 3)
  export.export(model, models.get("bilstm"), ["a", "b", "c"], str(path))
  return tf.saved_model.load(str(path)).signatures["serving_default"]


def _drawings(batch, points=8):
  ink = np.zeros((batch, points, 3), np.float32)
  ink[:, :, 0] = np.arange(points) * 10
  ink[:, :, 1] = (np.arange(points) ** 2) % 13 * 7
  ink[:, 3, 2] = ink[:, -1, 2] = 1
  return ink


def _serve(serving, ink, length):
  return {k: v.numpy() for k, v in serving(ink=tf.constant(ink, tf.float32),
                                           length=tf.constant(length, tf.int32)).items()}


def test_serving_flags_rows_that_cannot_be_classified(serving):
  ink = _drawings(7)
  ink[3, 2, 0] = np.nan
  ink[4, 5, 1] = np.inf
  ink[5, 1, 0], ink[5, 2, 0] = 3e38, -3e38  # Finite, but their extent is not.
  ink[6, 7, 0] = np.nan  # Past its length: ignored.
  out = _serve(serving, ink, [0, 1, -4, 8, 8, 8, 7])
  assert out["valid"].tolist() == [False, False, False, False, False, False, True]
  assert np.isfinite(out["probabilities"]).all() and np.isfinite(out["top_k_probabilities"]).all()
  assert (out["probabilities"][:6] == 0).all() and (out["top_k_classes"][:6] == b"").all()
  assert out["probabilities"][6].sum() == pytest.approx(1.0)
  clean = _serve(serving, _drawings(1)[:, :7], [7])
  np.testing.assert_allclose(out["probabilities"][6], clean["probabilities"][0], atol=1e-6)


def test_serving_clamps_lengths_past_the_points_given(serving):
  ink = _drawings(2)
  out = _serve(serving, ink, [8, 1000])
  assert out["valid"].all()
  np.testing.assert_allclose(out["probabilities"][1], out["probabilities"][0], atol=1e-6)


def test_serving_refuses_batches_of_different_sizes(serving):
  with pytest.raises(tf.errors.InvalidArgumentError, match="same batch size"):
    _serve(serving, _drawings(3), [8, 8])


def test_serving_an_empty_batch_gives_empty_outputs(serving):
  out = _serve(serving, np.zeros((0, 0, 3)), np.zeros(0))
  assert out["probabilities"].shape == (0, 3) and out["valid"].shape == (0,)
  assert out["top_k_classes"].shape == (0, 3)


@pytest.fixture(scope="module")
def fusion_serving(tmp_path_factory):
  path = tmp_path_factory.mktemp("fusion") / "sm"
  export.export(models.build("fusion", 3, image_size=32), models.get("fusion"), ["a", "b", "c"], str(path), 32)
  return tf.saved_model.load(str(path)).signatures


def test_fusion_serves_ink_with_an_image_rasterised_elsewhere_as_from_ink_alone(fusion_serving):
  ink = _drawings(3)
  ink[1, 2, 0] = np.nan  # Not classified, whatever the image holds.
  image = np.concatenate([tflite.rasterize(points) for points in ink])
  both = fusion_serving["serving_ink_image"](ink=tf.constant(ink), length=tf.constant([8, 8, 8]),
                                            image=tf.constant(image))
  alone = _serve(fusion_serving["serving_default"], ink, [8, 8, 8])
  assert both["valid"].numpy().tolist() == alone["valid"].tolist() == [True, False, True]
  np.testing.assert_allclose(both["probabilities"].numpy(), alone["probabilities"], atol=1e-5)
  with pytest.raises(tf.errors.InvalidArgumentError, match="ink and image must have the same batch size"):
    fusion_serving["serving_ink_image"](ink=tf.constant(ink), length=tf.constant([8, 8, 8]),
                                        image=tf.constant(image[:2]))
  empty = fusion_serving["serving_ink_image"](ink=tf.zeros([0, 0, 3]), length=tf.zeros([0], tf.int32),
                                             image=tf.zeros([0, 28, 28, 1], tf.uint8))
  assert empty["probabilities"].shape == (0, 3)


# --- predict with hostile input ---


def test_predict_skips_every_bad_line_with_its_number(synthetic_files, tmp_path):
  saved_model = _constant_saved_model(tmp_path / "sm", ["cat", "dog", "fish"], [1.0, 0.0, -1.0])
  with open(synthetic_files(["fish"])[0]) as f:
    good = f.readline()
  lines = [
      good,
      '{"drawing": [[[1, ' + "9" * 400 + '], [3, 4]]]}\n',  # Overflows float.
      '{"drawing": [[[3e38, -3e38], [0, 1]]]}\n',  # Finite in float32; its extent is not.
      '{"drawing": [[[5], [5]]]}\n',  # One point.
      '{"drawing": [[[1, NaN], [2, 3]]]}\n',
      "not json\n",
  ]
  path = tmp_path / "in.ndjson"
  path.write_text("".join(lines))
  result = verbs.run("predict", f"--saved_model={saved_model}", f"--input={path}")
  assert result.returncode == 0, result.stderr[-2000:]
  assert "Traceback" not in result.stderr and "nan" not in result.stdout
  assert result.stdout.strip() == f"{path}:1: cat 0.665, dog 0.245, fish 0.090"
  for number in range(2, 7):
    assert f"{path}:{number}: skipped" in result.stderr, (number, result.stderr)


def test_predict_an_empty_file_is_an_error(tmp_path):
  saved_model = _constant_saved_model(tmp_path / "sm", ["cat", "dog"], [0.0, 0.0])
  (tmp_path / "empty.ndjson").write_text("")
  result = verbs.run("predict", f"--saved_model={saved_model}", f"--input={tmp_path / 'empty.ndjson'}")
  assert result.returncode == 1 and "holds no drawing that can be classified" in result.stderr


# --- Run directories: a wrong --model_dir, a kill at any stage of a backup ---


@pytest.fixture(scope="module")
def records_dir(synthetic_files, tmp_path_factory):
  out = tmp_path_factory.mktemp("records")
  make_records.convert(synthetic_files(["cat", "fish"]), str(out), workers=1, progress=False, num_shards=1, eval_fraction=0.2,
                       test_fraction=0.2)
  return str(out)


def _train_args(records_dir, model_dir, model="bilstm", *extra):
  return [f"--model={model}", f"--records={records_dir}", f"--model_dir={model_dir}", "--epochs=2",
          "--steps_per_epoch=4", "--batch_size=8", "--checkpoint_steps=2", "--export=false", *extra]


def _snapshot(directory):
  return {os.path.relpath(os.path.join(root, name), directory): os.stat(os.path.join(root, name)).st_mtime_ns
          for root, _, names in os.walk(directory) for name in names}


@pytest.fixture(scope="module")
def trained_run(records_dir, tmp_path_factory):
  model_dir = tmp_path_factory.mktemp("trained") / "run"
  result = verbs.run("train", *_train_args(records_dir, model_dir))
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir


def test_an_incompatible_model_dir_is_left_as_it_was(records_dir, trained_run, tmp_path):
  model_dir = tmp_path / "run"
  shutil.copytree(trained_run, model_dir)
  before, config = _snapshot(model_dir), (model_dir / "config.json").read_bytes()
  for args, difference in ((("rnn",), "model 'bilstm' there, 'rnn' now"),
                           (("bilstm", "--model_option=init=torch"), "model_options {} there, {'init': 'torch'} now")):
    result = verbs.run("train", *_train_args(records_dir, model_dir, *args))
    assert result.returncode == 1 and difference in result.stderr, result.stderr[-2000:]
    assert "use another --model_dir" in result.stderr
  assert _snapshot(model_dir) == before and (model_dir / "config.json").read_bytes() == config
  result = verbs.run("evaluate", f"--model_dir={model_dir}", f"--output_dir={tmp_path / 'eval'}")
  assert result.returncode == 0, result.stderr[-2000:]


# Trains, holding the process at a known point of its N-th backup; the test kills it there.
HELD_TRAIN = textwrap.dedent("""
    import os, sys
    from quickdraw_tf import cli, train
    from quickdraw_tf.training import backup
    hold_at, stage = int(sys.argv[1]), sys.argv[2]
    saves, replaces = [0], [0]

    def hold():
      print("HELD", flush=True)
      sys.stdin.readline()  # The test kills this process while it waits here.

    save_model, replace = backup.BackupAndRestore._save_model, os.replace

    def held_save(self):
      saves[0] += 1
      if saves[0] == hold_at and stage == "writing":  # Half a weights file on disk.
        with open(os.path.join(self.backup_dir, backup.PARTIAL_WEIGHTS), "wb") as f:
          f.write(b"\\x89HDF\\r\\n" + bytes(88))
        hold()
      save_model(self)
      if saves[0] == hold_at and stage == "done":
        hold()

    def held_replace(source, target):
      if saves[0] == hold_at:
        replaces[0] += 1
        if (stage, replaces[0]) in (("renaming", 1), ("metadata", 2)):
          hold()
      replace(source, target)

    backup.BackupAndRestore._save_model = held_save
    os.replace = held_replace
    sys.argv = ["train", *sys.argv[3:]]
    cli.run(train.define_flags, train.main)
    """)


def _kill_when_held(script, *args):
  """Runs ``python -c script *args`` until it prints HELD (where it waits on its stdin), then kills it."""
  process = subprocess.Popen([sys.executable, "-c", script, *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env={**os.environ, **QUIET})
  try:
    lines = []
    for line in process.stdout:  # Blocks until the child is held (or ends, which fails below).
      lines.append(line)
      if line.startswith("HELD"):
        break
    assert lines and lines[-1].startswith("HELD"), "".join(lines) + process.stderr.read()[-3000:]
  finally:
    process.kill()
    process.wait()


def _backed_up_step(model_dir):
  """The optimizer step in the run's backup, loaded as train loads it."""
  model = models.build("bilstm", 2)
  model.compile(keras.optimizers.Adam())
  model.optimizer.build(model.trainable_variables)
  model.load_weights(str(model_dir / "backup" / "latest.weights.h5"))
  return int(model.optimizer.iterations.numpy())


# With 4 steps an epoch and a backup every 2 steps, the backups are: 1 at step 2, 2 at step 4, 3 at the end of
# epoch 1 (step 4), 4 at step 6. Killed at backup 2 or after 4: the backup it leaves, (epoch, batch) and step.
@pytest.mark.parametrize("stage, hold_at, state, step", [
    ("writing", 2, (0, 1), 2),  # In the middle of writing the weights file: backup 1 is whole.
    ("renaming", 2, (0, 1), 2),  # Written aside, not renamed yet.
    ("metadata", 2, (0, 3), 4),  # Renamed, Keras' metadata file not yet replaced: backup 2 is in place.
    ("done", 4, (1, 1), 6),  # Between backups, in the second epoch: the rerun continues from there.
])
def test_a_kill_at_any_stage_of_a_backup_leaves_one_that_resumes(records_dir, tmp_path, stage, hold_at, state,
                                                                  step):
  model_dir = tmp_path / "run"
  args = _train_args(records_dir, model_dir)
  _kill_when_held(HELD_TRAIN, str(hold_at), stage, *args)
  assert backup.read_state(str(model_dir / "backup")) == state
  assert _backed_up_step(model_dir) == step
  if stage == "done":
    result = verbs.run("train", *args)
    assert result.returncode == 0, result.stderr[-3000:]
    assert f"starting at step {step}, epoch {state[0] + 1}" in result.stdout, result.stdout


# Trains, holding the process in the middle of writing its first best weights; the test kills it there.
HELD_BEST = textwrap.dedent("""
    import sys
    import keras
    from quickdraw_tf import cli, train
    save_weights = keras.Model.save_weights

    def held_save_weights(self, filepath, *args, **kwargs):
      if "best" in str(filepath):
        with open(filepath, "wb") as f:  # Half a weights file on disk.
          f.write(b"\\x89HDF\\r\\n" + bytes(88))
        print("HELD", flush=True)
        sys.stdin.readline()  # The test kills this process while it waits here.
      save_weights(self, filepath, *args, **kwargs)

    keras.Model.save_weights = held_save_weights
    sys.argv = ["train", *sys.argv[1:]]
    cli.run(train.define_flags, train.main)
    """)


def test_a_kill_while_writing_the_best_weights_leaves_no_half_file_under_their_name(records_dir, tmp_path):
  model_dir = tmp_path / "run"
  args = _train_args(records_dir, model_dir)
  _kill_when_held(HELD_BEST, *args)
  assert not (model_dir / "best.weights.h5").exists()  # Evaluate would have read it.
  assert (model_dir / "best.partial.weights.h5").exists()
  result = verbs.run("train", *args)  # Resumed: the partial file is removed, the best weights written whole.
  assert result.returncode == 0, result.stderr[-3000:]
  assert not [p for p in model_dir.rglob("*") if ".partial" in p.name]
  assert sorted(p.name for p in (model_dir / "checkpoints").iterdir()) == ["epoch001.weights.h5", "epoch002.weights.h5"]
  result = verbs.run("evaluate", f"--model_dir={model_dir}", f"--output_dir={tmp_path / 'eval'}")
  assert result.returncode == 0, result.stderr[-2000:]


def test_weights_that_do_not_load_are_one_line_naming_the_file(records_dir, trained_run, tmp_path):
  model_dir = tmp_path / "run"
  shutil.copytree(trained_run, model_dir)
  best = model_dir / "best.weights.h5"
  best.write_bytes(best.read_bytes()[:200])  # Damaged.
  final = model_dir / "final.weights.h5"
  shutil.copy(trained_run / "checkpoints" / "epoch001.weights.h5", final)
  config = json.loads((model_dir / "config.json").read_text())
  (model_dir / "config.json").write_text(json.dumps({**config, "model": "rnn"}))  # Weights of another model.
  for verb, weights, output in (("evaluate", best, "--output_dir"), ("export", final, "--output")):
    result = verbs.run(verb, f"--model_dir={model_dir}", f"--weights={weights}", f"{output}={tmp_path / verb}")
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
    assert f"{verb}: error: {weights} cannot be loaded into the rnn model that {model_dir}'s config.json" in (
        result.stderr)


def test_an_unreadable_backup_names_the_file_and_the_way_out(records_dir, trained_run, tmp_path):
  model_dir = tmp_path / "run"
  shutil.copytree(trained_run, model_dir)
  args = _train_args(records_dir, model_dir)
  # Keras' own metadata file empty: the weights file carries the state, the run resumes.
  (model_dir / "backup" / "training_metadata.json").write_text("")
  result = verbs.run("train", *[arg.replace("--epochs=2", "--epochs=3") for arg in args])
  assert result.returncode == 0 and "starting at step 8, epoch 3" in result.stdout, result.stderr[-3000:]
  weights = model_dir / "backup" / "latest.weights.h5"
  with h5py.File(weights, "a") as f:  # Edited by hand: a callback's state that is not numbers.
    state = json.loads(f.attrs[backup.STATE_ATTR])
    f.attrs[backup.STATE_ATTR] = json.dumps({**state, "callbacks": {"0:ModelCheckpoint": {"best": "high"}}})
  damaged_by_hand = verbs.run("train", *args)
  weights.write_bytes(weights.read_bytes()[:96])  # Damaged by something else than a kill.
  for result in (damaged_by_hand, verbs.run("train", *args)):
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert f"the backup file {weights} cannot be read" in result.stderr
    assert f"remove {model_dir / 'backup'}" in result.stderr


def _stopping_callbacks():
  return [keras.callbacks.EarlyStopping("val_accuracy", patience=3, mode="max"),
          keras.callbacks.ReduceLROnPlateau("val_loss", patience=2),
          keras.callbacks.ModelCheckpoint("unused.weights.h5", "val_accuracy", save_best_only=True, mode="max",
                                          save_weights_only=True),
          train.TimeBudget(600, "cpu")]


def test_a_resumed_run_keeps_its_patience_best_accuracy_and_spent_budget(tmp_path):
  """Keras resets these at every fit: restored from the backup, a resumed run stops and saves as if never stopped."""
  model = models.build("bilstm", 2)
  model.compile(keras.optimizers.Adam())
  model.optimizer.build(model.trainable_variables)
  early, plateau, best, budget = carried = _stopping_callbacks()
  early.wait, early.best, early.best_epoch = 2, np.float32(0.625), 4
  plateau.wait, plateau.best, plateau.cooldown_counter = 1, 0.75, 0
  best.best, budget.spent_before = np.float64(0.625), 123.5
  saver = backup.BackupAndRestore(str(tmp_path), carried=carried)
  saver.set_model(model)
  saver._current_epoch, saver._last_batch_seen = 6, 0  # pylint: disable=protected-access
  saver._save_model()  # pylint: disable=protected-access

  resumed = _stopping_callbacks()
  restorer = backup.BackupAndRestore(str(tmp_path), carried=resumed)
  restorer.set_model(model)
  for callback in resumed:
    callback.set_model(model)
    callback.on_train_begin()  # Keras' own reset, before the backup's (which runs after them).
  restorer.on_train_begin()
  early, plateau, best, budget = resumed
  assert (early.wait, early.best, early.best_epoch) == (2, 0.625, 4)
  assert (plateau.wait, plateau.best, plateau.cooldown_counter) == (1, 0.75, 0)
  assert best.best == 0.625 and budget.spent() >= 123.5
  early.on_train_begin()  # A next training stage (another fit) starts them afresh, as Keras does ...
  restorer.on_train_begin()
  assert early.wait == 0 and early.best is None  # ... and the backup does not restore them again.


def test_a_resumed_run_counts_the_time_budget_its_backup_had_spent(records_dir, tmp_path):
  model_dir = tmp_path / "run"
  args = _train_args(records_dir, model_dir, "bilstm", "--time_budget=100000", "--budget_clock=cpu",
                     "--stop_patience=5")
  result = verbs.run("train", *[arg.replace("--epochs=2", "--epochs=1") for arg in args])
  assert result.returncode == 0, result.stderr[-3000:]
  with h5py.File(model_dir / "backup" / "latest.weights.h5", "r") as f:
    state = json.loads(f.attrs[backup.STATE_ATTR])
  kinds = {key.split(":")[1]: value for key, value in state["callbacks"].items()}
  assert set(kinds) == {"ModelCheckpoint", "ReduceLROnPlateau", "EarlyStopping", "TimeBudget"}, kinds
  spent = kinds["TimeBudget"]["spent"]
  assert 0 < spent < 100000 and kinds["EarlyStopping"]["best"] == kinds["ModelCheckpoint"]["best"]
  result = verbs.run("train", *args)
  assert result.returncode == 0, result.stderr[-3000:]
  assert f"train: {spent:.0f} of the 100000 CPU seconds of --time_budget were spent before this resumption" in \
      result.stdout, result.stdout


# --- The README's flow, with two classes ---


def test_the_readme_cat_dog_flow_end_to_end(data_dir, tmp_path):
  """make_records --download=cat,dog -> train -> evaluate -> export -> evaluate the SavedModel -> predict."""
  bucket = test_download.Bucket(data_dir)
  try:
    result = verbs.subprocess_run("make_records", "--download=cat,dog", f"--download_url={bucket.url}",
                  f"--cache_dir={tmp_path / 'cache'}", f"--output_dir={tmp_path / 'records'}", "--progress=false")
  finally:
    bucket.server.shutdown()
    bucket.server.server_close()
  assert result.returncode == 0, result.stderr[-3000:]
  model_dir = tmp_path / "run"
  result = verbs.run("train", "--model=rnn", f"--records={tmp_path / 'records'}", f"--model_dir={model_dir}",
                "--epochs=1", "--steps_per_epoch=3", "--batch_size=8", "--export=false")
  assert result.returncode == 0, result.stderr[-3000:]
  reports = {}
  for key, args in (("checkpoint", [f"--model_dir={model_dir}"]),
                    ("saved_model", [f"--saved_model={model_dir / 'saved_model'}",
                                     f"--records={tmp_path / 'records'}"])):
    if key == "saved_model":
      result = verbs.run("export", f"--model_dir={model_dir}")
      assert result.returncode == 0, result.stderr[-3000:]
    result = verbs.run("evaluate", *args, f"--output_dir={tmp_path / key}")
    assert result.returncode == 0, result.stderr[-3000:]
    assert "top-2" in result.stdout and "MAP@2" in result.stdout
    reports[key] = json.loads((tmp_path / key / "metrics.json").read_text())
  assert reports["checkpoint"]["examples"] == reports["saved_model"]["examples"] > 0
  for report in reports.values():  # With two classes the true one is always in the top 2.
    assert report["top_k"] == 2 and report["top3_accuracy"] == 1.0
    assert report["map3"] == pytest.approx((1 + report["top1_accuracy"]) / 2)
  assert reports["checkpoint"]["top1_accuracy"] == pytest.approx(reports["saved_model"]["top1_accuracy"])
  drawings = os.path.join(data_dir, "strokes", "simplified_lamnguyen", "dog.ndjson")
  result = verbs.run("predict", f"--saved_model={model_dir / 'saved_model'}", f"--input={drawings}")
  assert result.returncode == 0, result.stderr[-3000:]
  rows = result.stdout.strip().splitlines()
  assert len(rows) == 25 and all(len(row.split(": ", 1)[1].split(", ")) == 2 for row in rows)
