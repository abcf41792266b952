"""bench.converge's rule, bench.torch_accuracy's data reading, its worker (bench.torch_train) and its table.

No real training: the worker runs one step on a few made-up drawings. Tests
that need PyTorch (a bench-only dependency) skip without it.
"""

import json
import os
import subprocess
import sys

import numpy as np
import pytest

from bench import converge
from bench import torch_table

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _result(top1, examples=400, epochs=5.0, cpu_s=300.0, train_flags=(), eval_period=None):
  result = {"model": "alexnet", "epochs": epochs, "fit_cpu_s": cpu_s, "batch_size": 64,
            "key": {"budget": 3600.0, "train": {"train": 6811}, "train_flags": list(train_flags)},
            "test": {"top1_accuracy": top1, "examples": examples}, "curve_epochs": [[1.0, 0.4], [2.0, 0.5]]}
  if eval_period:
    result["eval_period"] = eval_period
  return result


def test_eval_period_is_a_pass_or_the_minimum_whichever_is_longer():
  assert converge.one_pass(6811, 64) == 106
  assert converge.eval_period(6811, 64) == 500  # vec17 at batch 64: a pass is shorter
  assert converge.eval_period(6811, 8) == 851  # rnn's batch of 8: a pass is longer
  assert converge.eval_period(6811, 64, 0) == 106  # 0: every pass
  assert converge.one_pass(10, 64) == 1


def test_stall_counts_evaluations_without_a_strictly_better_top1():
  stall = converge.Stall(patience=2)
  assert stall.add(0.5) and not stall.add(0.5)  # equal is no improvement, as Keras' EarlyStopping
  assert not stall.stalled
  assert stall.add(0.6) and stall.wait == 0
  assert not stall.add(0.1) and not stall.add(0.59)
  assert stall.stalled
  restored = converge.Stall(**stall.state())
  assert (restored.best, restored.wait, restored.stalled) == (0.6, 2, True)


def test_accuracy_converge_sets_steps_per_epoch_only_where_a_pass_is_shorter(tmp_path):
  from bench import accuracy  # pylint: disable=import-outside-toplevel
  (tmp_path / "stats.json").write_text(json.dumps({"totals": {"train": 6811, "eval": 772, "test": 863}}))
  records_dir = str(tmp_path)
  assert accuracy.eval_period_flags("alexnet", records_dir, [], 500) == ["--steps_per_epoch=500"]
  assert accuracy.eval_period_flags("rnn", records_dir, [], 500) == []  # batch 8 (configs/rnn.cfg): 851 steps a pass
  assert accuracy.eval_period_flags("rnn", records_dir, ["--batch_size=64"], 500) == ["--steps_per_epoch=500"]
  assert accuracy.eval_period_flags("alexnet", records_dir, ["--steps_per_epoch=300"], 500) == []  # a variant's own
  assert accuracy.eval_period_flags("alexnet", records_dir, [], 0) == []  # 0: every pass


def test_table_verdict_allows_one_standard_error_of_the_difference():
  ours, original = _result(0.60), _result(0.62)  # errors 0.0245 and 0.0243: the difference's 0.0345
  assert torch_table.verdict(ours, original) == ("-0.0200 (-0.6 SE)", "met")
  assert torch_table.verdict(_result(0.55), original)[1] == "**not met**"
  row = torch_table.row("alexnet", "vec17", ours, _result(0.62, eval_period=106))
  assert row[2:8] == ["0.6000 +- 0.0245", "0.6200 +- 0.0243", "-0.0200 (-0.6 SE)", "0.97", "met", "5.0 / 5.0"]
  assert row[9] == "106 / 106"
  assert torch_table.row("alexnet", "vec17", _result(0.6, train_flags=["--steps_per_epoch=500"]), original)[9] \
      == "500 / 106"


def test_table_marks_rows_without_both_results_pending(tmp_path):
  ours_dir = tmp_path / torch_table.OURS / "vec17"
  ours_dir.mkdir(parents=True)
  (ours_dir / "sketchanet.json").write_text(json.dumps(_result(0.56)))
  found = {(m, d): (o, t) for m, d, o, t in torch_table.rows(str(tmp_path))}
  assert len(found) == len(torch_table.ROWS)
  assert found["sketchanet", "vec17"][0]["test"]["top1_accuracy"] == 0.56
  assert torch_table.row("sketchanet", "vec17", *found["sketchanet", "vec17"])[2:7] == [
      "0.5600 +- 0.0248", "pending", "-", "-", "pending"]
  text = torch_table.body(str(tmp_path))
  assert "No original run has finished yet." in text
  assert f"Pending ({len(torch_table.ROWS)})" in text


def test_split_arrays_reads_every_drawing_of_a_split_padded(synthetic_files, tmp_path):
  from bench import torch_accuracy  # pylint: disable=import-outside-toplevel
  from quickdraw_tf import make_records  # pylint: disable=import-outside-toplevel
  from quickdraw_tf import models  # pylint: disable=import-outside-toplevel
  from quickdraw_tf.pipelines import records  # pylint: disable=import-outside-toplevel
  out = str(tmp_path / "records")
  make_records.convert(synthetic_files(["cat", "dog"], 30), out, workers=1, progress=False, num_shards=1)
  totals = records.read_stats(out)["totals"]
  arrays = torch_accuracy.split_arrays(out, "train", models.get("fusion"), 32)
  n, width = totals["train"], arrays["ink"].shape[1]
  assert arrays["labels"].shape == (n,) and set(arrays["labels"]) == {0, 1}
  assert arrays["ink"].shape == (n, width, 5) and arrays["image"].shape == (n, 32, 32)
  assert arrays["image"].dtype == np.float16 and arrays["lengths"].max() == width
  beyond = np.arange(width)[None, :] >= arrays["lengths"][:, None]
  padding = arrays["ink"][beyond]  # stroke-5's end rows within a batch, zeros past the batch's longest
  assert ((padding == 0).all(1) | (padding == [0, 0, 0, 0, 1]).all(1)).all()
  assert not (arrays["ink"][~beyond] == [0, 0, 0, 0, 1]).all(1).any()  # no real point is a padding row


def _tiny_npz(path, side=28, classes=3, count=12):
  rng = np.random.default_rng(0)
  arrays = {"classes": np.int64(classes)}
  for split in ("train", "eval", "test"):
    arrays[f"{split}_labels"] = rng.integers(0, classes, count)
    arrays[f"{split}_image"] = rng.uniform(size=(count, side, side)).astype(np.float16)
  np.savez(path, **arrays)


def test_worker_stops_at_the_cap_writes_its_summary_and_resumes_without_training_again(tmp_path):
  pytest.importorskip("torch", reason="PyTorch is a bench-only dependency: pip install torch")
  data, out = tmp_path / "tiny.npz", tmp_path / "run"
  _tiny_npz(data)
  command = [sys.executable, "-m", "bench.torch_train", f"--data={data}", "--model=resnet18", f"--out={out}",
             "--cap=0", "--patience=3"]
  done = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  worker = json.loads((out / "worker.json").read_text())
  # --cap=0: one step, then the evaluation that ends every run, then the test of the best weights.
  assert (worker["steps"], worker["stopped_by"], worker["batch_size"], worker["threads"]) == (1, "cap", 64, 1)
  assert len(worker["curve"]) == 1 and worker["eval_period"] == 1
  probabilities = np.load(out / "test_probabilities.npy")
  assert probabilities.shape == (12, 3) and np.allclose(probabilities.sum(1), 1, atol=1e-5)
  done = subprocess.run(command + ["--resume"], capture_output=True, text=True, cwd=REPO, check=False)
  assert done.returncode == 0, done.stderr[-3000:]
  resumed = json.loads((out / "worker.json").read_text())
  assert (resumed["steps"], resumed["resumed"], len(resumed["curve"])) == (1, True, 1)

  from bench import torch_accuracy  # pylint: disable=import-outside-toplevel
  result = torch_accuracy.result_of(str(out), np.load(data)["test_labels"], ["a", "b", "c"], 6811, "resnet18", 28)
  assert result["test"]["examples"] == 12 and 0 <= result["test"]["top1_accuracy"] <= 1
  assert result["epochs"] == pytest.approx(64 / 6811) and result["best_eval_top1"] == worker["curve"][0][2]


def test_stroke5_is_scaled_and_padded_as_the_reports_loader():
  pytest.importorskip("torch", reason="PyTorch is a bench-only dependency: pip install torch")
  from bench import torch_train  # pylint: disable=import-outside-toplevel
  ink = np.zeros((2, 4, 5), np.float32)
  ink[0, :3, :2] = [[1, 0], [0, 1], [-1, 0]]
  ink[1, :2, :2] = [[3, 0], [0, -3]]
  lengths = np.array([3, 2])
  scale = torch_train.stroke5_scale(ink, lengths)
  assert scale == pytest.approx(np.std([1, 0, 0, 1, -1, 0, 3, 0, 0, -3]))
  padded = torch_train.padded_stroke5(ink, lengths, scale)
  assert padded[0, 0, 0] == pytest.approx(1 / scale)
  assert padded[0, 3].tolist() == list(torch_train.STROKE5_PADDING)
  assert padded[1, 2:].tolist() == [list(torch_train.STROKE5_PADDING)] * 2


def test_batches_take_each_drawing_once_a_pass_and_drop_the_partial_batch():
  pytest.importorskip("torch", reason="PyTorch is a bench-only dependency: pip install torch")
  from bench import torch_train  # pylint: disable=import-outside-toplevel
  first = np.concatenate([torch_train.batch_index(step, 10, 3, 0).numpy() for step in range(3)])
  assert len(set(first)) == 9  # 3 batches of 3 of 10 drawings: one left out, none twice
  second = np.concatenate([torch_train.batch_index(step, 10, 3, 0).numpy() for step in range(3, 6)])
  assert not np.array_equal(first, second)  # a fresh order each pass
  assert np.array_equal(torch_train.batch_index(4, 10, 3, 0).numpy(), second[3:6])  # resumable by step
