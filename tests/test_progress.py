"""--progress: a live bar on stderr, or lines; the mode auto picks; stdout the same in every mode."""

import contextlib
import io
import os
import re
import sys

import keras
import numpy as np
import pytest
import tensorflow as tf
import tqdm

from quickdraw_tf import models
from quickdraw_tf import progress
from quickdraw_tf.figures import embeddings
from quickdraw_tf.training import run_dir
from tests import verbs

FINAL_NUMBER = r"(\d+(?:\.\d+)?)"


class _Stream(io.StringIO):
  """A text stream that says it is a terminal, or not."""

  def __init__(self, terminal):
    super().__init__()
    self.terminal = terminal

  def isatty(self):
    return self.terminal


def _lines(text):
  """What a terminal would keep of each redraw: the text between carriage returns and newlines."""
  return [line for line in re.split(r"[\r\n]", text) if line.strip()]


def test_auto_is_a_bar_only_when_every_stream_given_is_a_terminal():
  assert progress.resolve("auto", _Stream(True)) == "bar"
  assert progress.resolve("auto", _Stream(False)) == "lines"
  assert progress.resolve("auto", _Stream(True), _Stream(False)) == "lines"  # train's stdout sent to a file.
  closed = io.StringIO()
  closed.close()
  assert progress.resolve("auto", closed) == progress.resolve("auto", object()) == "lines"


def test_auto_follows_stderr_by_default(monkeypatch):
  for terminal, mode in ((True, "bar"), (False, "lines")):
    monkeypatch.setattr(sys, "stderr", _Stream(terminal))
    assert progress.resolve("auto") == mode


def test_bar_and_lines_are_forced_and_others_refused():
  for terminal in (True, False):
    assert progress.resolve("bar", _Stream(terminal)) == "bar"
    assert progress.resolve("lines", _Stream(terminal)) == "lines"
  with pytest.raises(ValueError, match="unknown progress mode 'fancy'; valid: auto, bar, lines"):
    progress.resolve("fancy")


def test_fit_output_draws_a_bar_only_where_both_outputs_are_terminals(monkeypatch):
  monkeypatch.setattr(sys, "stderr", _Stream(True))
  monkeypatch.setattr(sys, "stdout", _Stream(True))
  verbose, callbacks = progress.fit_output("auto", 2, 8)
  assert verbose == 0 and [type(c) for c in callbacks] == [progress.EpochBar]
  assert progress.fit_output("lines", 2, 8) == (2, [])  # Keras' line per epoch, as before.
  assert progress.fit_output("bar", 0, 8) == (0, [])  # A silent library caller stays silent.
  monkeypatch.setattr(sys, "stdout", _Stream(False))
  assert progress.fit_output("auto", 2, 8) == (2, [])
  assert progress.fit_output("bar", 2, 8)[0] == 0


def _fit(dataset, **kwargs):
  """stderr of a tiny classifier's fit with an `EpochBar` (batches of 8)."""
  model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(2)])
  model.compile("adam", keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy")])
  stderr = io.StringIO()
  with contextlib.redirect_stderr(stderr):
    model.fit(dataset, verbose=0, callbacks=[progress.EpochBar(8)], shuffle=False, **kwargs)
  return stderr.getvalue()


def _examples():
  rng = np.random.default_rng(0)
  return rng.random((24, 3), np.float32), rng.integers(0, 2, 24)


def test_epoch_bar_counts_steps_and_leaves_each_epoch_with_its_metrics():
  instances = len(tqdm.tqdm._instances)  # pylint: disable=protected-access
  x, y = _examples()
  text = _fit(tf.data.Dataset.from_tensor_slices((x, y)).batch(8).repeat(), epochs=2, steps_per_epoch=3,
              validation_data=(x, y))
  for epoch in (1, 2):
    final = [line for line in _lines(text) if line.startswith(f"epoch {epoch}/2: 100%") and "3/3 steps" in line]
    assert final, text
    match = re.search(r"loss \d\.\d{4}, accuracy \d\.\d{4}, val_loss \d\.\d{4}, val_accuracy \d\.\d{4}, "
                      rf"{FINAL_NUMBER} examples/s\]$", final[-1])
    assert match and float(match[1]) > 0, final[-1]
  assert len(tqdm.tqdm._instances) == instances  # pylint: disable=protected-access  # Every bar closed.


@pytest.mark.filterwarnings("ignore:Your input ran out of data")  # Keras' way to find an epoch's end.
def test_epoch_bar_without_a_step_count_shows_no_total():
  x, y = _examples()

  def batches():
    for start in range(0, 24, 8):
      yield x[start:start + 8], y[start:start + 8]

  dataset = tf.data.Dataset.from_generator(batches, output_signature=(tf.TensorSpec([None, 3], tf.float32),
                                                                      tf.TensorSpec([None], tf.int64)))
  assert dataset.cardinality() == tf.data.UNKNOWN_CARDINALITY
  final = _lines(_fit(dataset, epochs=1))[-1]
  assert re.match(r"epoch 1/1: 3 steps \[\d\d:\d\d, loss .* examples/s\]$", final), final


def test_epoch_bar_follows_a_loop_of_its_own_like_train_multi_worker():
  callbacks = keras.callbacks.CallbackList([progress.EpochBar(4)], epochs=1, steps=2)
  stderr = io.StringIO()
  with contextlib.redirect_stderr(stderr):
    callbacks.on_train_begin()
    callbacks.on_epoch_begin(0)
    for step in range(2):
      callbacks.on_train_batch_begin(step)
      callbacks.on_train_batch_end(step, {"loss": 0.5, "accuracy": 0.25})
    callbacks.on_epoch_end(0, {"loss": 0.5, "accuracy": 0.25, "val_loss": 0.75, "val_accuracy": 0.5})
    callbacks.on_train_end()
  final = _lines(stderr.getvalue())[-1]
  assert final.startswith("epoch 1/1: 100%") and "2/2 steps" in final, final
  assert "loss 0.5000, accuracy 0.2500, val_loss 0.7500, val_accuracy 0.5000" in final


def test_track_counts_what_is_used_and_passes_items_through_in_lines_mode():
  items = [[1, 2], [3], [4, 5, 6]]
  assert progress.track(items, "lines", "x", "drawings") is items
  stderr = io.StringIO()
  with contextlib.redirect_stderr(stderr):
    assert list(progress.track(items, "bar", "evaluate", "drawings", total=6, weight=len)) == items
    for _ in progress.track(iter(items), "bar", "early", "batches", total=3):
      break  # The bar closes with the loop.
  lines = _lines(stderr.getvalue())
  assert any(line.startswith("evaluate: 100%") and "6/6 drawings" in line for line in lines), lines
  assert "early: " in lines[-1] and "1/3 batches" in lines[-1], lines  # The one it used.


def test_write_prints_whole_lines_beside_a_bar():
  stdout, stderr = io.StringIO(), io.StringIO()
  with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
    for item in progress.track(["a", "b"], "bar", "predict", "drawings", total=2):
      progress.write(f"line {item}")
  assert stdout.getvalue() == "line a\nline b\n"


@pytest.mark.parametrize("verb", ["train", "evaluate", "predict", "visualize"])
def test_an_unknown_progress_mode_is_a_usage_error(verb):
  result = verbs.run(verb, "--progress=fancy")
  assert result.returncode == 1 and "usage error" in result.stderr and "--progress" in result.stderr, result


# --- The verbs, on real drawings --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def bar_run(tiny_run, tmp_path_factory):
  """(model_dir, train's `verbs.Result`): rnn trained for 1 epoch of 2 steps with --progress=bar, exported."""
  model_dir = str(tmp_path_factory.mktemp("progress") / "rnn")
  result = verbs.run("train", "--model=rnn", f"--records={tiny_run.records}", f"--model_dir={model_dir}",
                     "--epochs=1", "--steps_per_epoch=2", "--eval_steps=1", "--batch_size=8", "--progress=bar")
  assert result.returncode == 0, result.stderr[-3000:]
  return model_dir, result


def test_train_bar_shows_steps_metrics_and_examples_per_second_on_stderr(bar_run):
  _, result = bar_run
  final = [line for line in _lines(result.stderr) if line.startswith("epoch 1/1: 100%")]
  assert final and "2/2 steps" in final[-1], result.stderr[-3000:]
  assert re.search(rf"loss \d+\.\d{{4}}, accuracy .*val_loss .* {FINAL_NUMBER} examples/s\]$", final[-1])
  # stdout: train's own lines, not Keras' (verbose 0 beside the bar).
  assert "train: starting at step 0, epoch 1" in result.stdout and "Epoch 1/1" not in result.stdout


def test_train_lines_prints_one_line_per_epoch_and_no_bar(tiny_run, tmp_path):
  result = verbs.run("train", "--model=rnn", f"--records={tiny_run.records}", f"--model_dir={tmp_path / 'rnn'}",
                     "--epochs=2", "--steps_per_epoch=1", "--eval_steps=1", "--batch_size=8", "--export=false",
                     "--progress=lines")
  assert result.returncode == 0, result.stderr[-3000:]
  epoch_lines = [line for line in result.stdout.splitlines() if " - loss: " in line or " - accuracy: " in line]
  assert len(epoch_lines) == 2 and all("val_loss" in line for line in epoch_lines), result.stdout
  assert " steps [" not in result.stderr


def test_evaluate_bar_counts_the_drawings_it_scores(bar_run, tmp_path):
  model_dir, _ = bar_run
  result = verbs.run("evaluate", f"--model_dir={model_dir}", f"--output_dir={tmp_path}", "--progress=bar")
  assert result.returncode == 0, result.stderr[-3000:]
  drawings = int(re.match(r"test: (\d+) drawings", result.stdout)[1])
  final = [line for line in _lines(result.stderr) if line.startswith("evaluate test: 100%")]
  assert final and f" {drawings}/{drawings} drawings [" in final[-1], result.stderr[-3000:]


def test_predict_bar_goes_to_stderr_and_leaves_stdout_as_it_was(bar_run, data_dir, tmp_path):
  model_dir, _ = bar_run
  with open(os.path.join(data_dir, "strokes", "simplified_lamnguyen", "cat.ndjson"), encoding="utf-8") as f:
    drawings = [next(f) for _ in range(3)]
  path = tmp_path / "in.ndjson"
  path.write_text("".join(drawings[:2]) + "not a drawing\n" + drawings[2])
  args = (f"--saved_model={os.path.join(model_dir, run_dir.SAVED_MODEL)}", f"--input={path}")
  bar, lines = verbs.run("predict", *args, "--progress=bar"), verbs.run("predict", *args, "--progress=lines")
  assert bar.returncode == lines.returncode == 0, bar.stderr[-3000:]
  assert bar.stdout == lines.stdout and len(lines.stdout.splitlines()) == 3
  assert f"{path}:3: skipped" in bar.stderr and f"{path}:3: skipped" in lines.stderr
  assert any(line.startswith("predict: 100%") and "3/3 drawings" in line for line in _lines(bar.stderr))
  assert " drawings [" not in lines.stderr


def test_visualize_embeddings_bar_counts_batches(bar_run):
  model_dir, _ = bar_run
  model, config = run_dir.restore(model_dir)
  stderr = io.StringIO()
  with contextlib.redirect_stderr(stderr):
    features, *_ = embeddings.embeddings(model, models.get("rnn"), config["records"], max_examples=12, batch_size=8,
                                        progress="bar")
  assert len(features) == 12
  assert any(line.startswith("embeddings: 100%") and "2/2 batches" in line for line in _lines(stderr.getvalue()))
