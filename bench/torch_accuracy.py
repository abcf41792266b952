r"""Converged accuracy of the original PyTorch code on our records, beside ours (bench.accuracy --converge).

  pip install torch   # bench only: PyTorch is not a dependency of quickdraw_tf
  python -m bench.torch_accuracy --reuse                      # every row, hours; rerun the same to resume
  python -m bench.torch_accuracy --reuse --rows=bilstm@vec17  # one row
  python -m bench.torch_accuracy --render                     # the table from the results there are; trains nothing

Each row trains the reference report's PyTorch model (bench/torch_models.py)
with its procedure (bench/torch_train.py: Adam, lr, weight decay, batch,
ReduceLROnPlateau on the training loss, PyTorch's initialisation, best
weights by eval top-1; the tutorial model ``rnn`` with Google's
train_model.py settings) on exactly the drawings and splits bench.accuracy's
converged run trained ours on: the same records (vec17, bmp22; built as
bench.accuracy builds them), read once through quickdraw_tf's own input
pipeline (`data.make_dataset`, so the same ink and the same images at the
same side) into an .npz under --torch_runs_dir. The stopping rule is
bench.converge's: --converge_patience evaluations without a better eval
top-1 or --converge_cap CPU seconds of the training process; it evaluates
every pass (--torch_eval_steps=0, the report's loop and the rule ours ran
under in the committed results) unless told otherwise. Test metrics come
from `quickdraw_tf.evaluate.metrics`, as ours.

One JSON a finished row in --results_dir/bench_torch_accuracy/<data>/<model>.json
(committed: a run longer than a machine's loan goes on with --reuse on the
next one; an interrupted row resumes from its backup on the same machine).
The side-by-side table goes into the ``torch_accuracy`` section of
BENCHMARKS.md, rows without a result on either side marked pending.
Flags shared with bench.accuracy: --reuse, --results_dir, --records_root,
--data_dir, --image_side, --converge_cap, --converge_patience.
"""

import json
import os
import shutil
import subprocess
import sys
import time

from absl import app
from absl import flags
import numpy as np

from bench import accuracy
from bench import report
from bench import torch_table
from quickdraw_tf import evaluate
from quickdraw_tf import models
from quickdraw_tf.pipelines import data
from quickdraw_tf.pipelines import records

flags.DEFINE_list("rows", list(torch_table.ROWS), "model@data rows to train, in this order (data: vec17 or bmp22).")
flags.DEFINE_bool("render", False, "Only render the table from the results there are; train nothing.")
flags.DEFINE_integer("torch_eval_steps", 0, "Evaluate every max(one pass, this many) steps; 0: every pass.",
                     lower_bound=0)
flags.DEFINE_string("torch_runs_dir", os.path.join(accuracy.REPO, "runs", "bench_torch_accuracy"),
                    "Exported drawings and the runs' directories (backups, logs).")
FLAGS = flags.FLAGS



def parse_row(row):
  """'model@data' -> (model, data); app.UsageError where it is not a row this bench can train."""
  model, _, data_name = row.partition("@")
  if f"{model}@{data_name}" not in torch_table.ROWS:
    raise app.UsageError(f"--rows={row}: expected one of {','.join(torch_table.ROWS)}")
  return model, data_name


def records_dir(data_name):
  """The records of ``data_name`` as bench.accuracy --converge builds them (built here unless complete)."""
  if data_name == "vec17":
    return accuracy.build_records("vec17", [os.path.join(FLAGS.data_dir, "strokes")], report.VEC17)
  return accuracy.build_records("bmp22", [os.path.join(FLAGS.data_dir, "bitmaps28", "numpy_bitmap_prefix")])


def split_arrays(records_path, split, spec, side):
  """One split through our input pipeline: {labels int64 [n], ink float32 [n, t, c], lengths int64 [n],
  image float16 [n, s, s]} (ink and image where the model reads them; ink zero-padded to the split's longest)."""
  parts = {"labels": [], "ink": [], "lengths": [], "image": []}
  for features, labels in data.make_dataset(records_path, split, spec, 256, image_size=side or None, bucket=False,
                                            deterministic=True):
    parts["labels"].append(labels.numpy())
    if spec.uses_ink:
      parts["ink"].append(features["ink"].numpy())
      parts["lengths"].append(features["ink_length"].numpy())
    if spec.uses_image:
      parts["image"].append(features["image"].numpy()[..., 0].astype(np.float16))
  out = {"labels": np.concatenate(parts["labels"]).astype(np.int64)}
  if spec.uses_ink:
    longest = max(ink.shape[1] for ink in parts["ink"])
    out["ink"] = np.concatenate([np.pad(ink, ((0, 0), (0, longest - ink.shape[1]), (0, 0))) for ink in parts["ink"]])
    out["lengths"] = np.concatenate(parts["lengths"]).astype(np.int64)
  if spec.uses_image:
    out["image"] = np.concatenate(parts["image"])
  return out


def export(records_path, model, side):
  """The drawings ``model`` reads from every split, as an .npz for bench.torch_train (made once); its path.

  Ink of all splits is padded to the longest drawing of any split (the report pads to its data's longest).
  """
  spec = models.get(model)
  name = f"{os.path.basename(records_path)}_ink{spec.ink_channels}_image{side}.npz"
  path = os.path.join(FLAGS.torch_runs_dir, "data", name)
  if os.path.exists(path):
    return path
  splits = {split: split_arrays(records_path, split, spec, side) for split in ("train", "eval", "test")}
  arrays = {"classes": np.int64(len(records.read_classes(records_path)))}
  longest = max(s["ink"].shape[1] for s in splits.values()) if spec.uses_ink else 0
  for split, values in splits.items():
    for field, value in values.items():
      arrays[f"{split}_{field}"] = np.pad(value, ((0, 0), (0, longest - value.shape[1]), (0, 0))) \
          if field == "ink" else value
  os.makedirs(os.path.dirname(path), exist_ok=True)
  np.savez(path + ".tmp.npz", **arrays)
  os.replace(path + ".tmp.npz", path)
  return path


def key_of(model, records_path, side):
  """What a result was trained under: a reused result must match it."""
  from bench import torch_train  # pylint: disable=import-outside-toplevel  (imports PyTorch)
  return {"model": model, "records": os.path.basename(records_path), "image_size": side,
          "train": records.read_stats(records_path)["totals"], "budget": FLAGS.converge_cap,
          "patience": FLAGS.converge_patience, "eval_steps": FLAGS.torch_eval_steps,
          "procedure": list(torch_train.PROCEDURES[model]), "framework": "torch"}


def result_path(model, data_name):
  return os.path.join(FLAGS.results_dir, torch_table.ORIGINAL, data_name, f"{model}.json")


def read_result(path):
  """A result dict, or None where there is none or it cannot be read."""
  try:
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  except FileNotFoundError:
    return None
  except ValueError as e:
    print(f"torch_accuracy: {path} cannot be read ({e}): treated as missing", flush=True)
    return None


def train_row(model, data_name):
  """Trains one row in a bench.torch_train process (or reuses its result); its result dict."""
  records_path = records_dir(data_name)
  side = accuracy.image_side(models.get(model))
  key, path = key_of(model, records_path, side), result_path(model, data_name)
  reused = read_result(path) if FLAGS.reuse else None
  if reused and reused.get("key") == key:
    print(f"torch_accuracy: reusing {path}", flush=True)
    return reused
  run_dir = os.path.join(FLAGS.torch_runs_dir, data_name, model)
  resume = FLAGS.reuse and os.path.exists(os.path.join(run_dir, "backup.pt"))
  if not resume:
    shutil.rmtree(run_dir, ignore_errors=True)
  os.makedirs(run_dir, exist_ok=True)
  exported = export(records_path, model, side)
  command = [sys.executable, "-m", "bench.torch_train", f"--data={exported}",
             f"--model={model}", f"--out={run_dir}", f"--cap={FLAGS.converge_cap}",
             f"--patience={FLAGS.converge_patience}", f"--eval_steps={FLAGS.torch_eval_steps}"]
  command += ["--resume"] if resume else []
  print(f"torch_accuracy: {model} on {data_name}: {' '.join(command[1:])}", flush=True)
  started = time.time()
  with open(os.path.join(run_dir, "train.log"), "a" if resume else "w", encoding="utf-8") as log:
    done = subprocess.run(command, stdout=log, stderr=subprocess.STDOUT, cwd=accuracy.REPO, check=False)
  if done.returncode:
    with open(os.path.join(run_dir, "train.log"), encoding="utf-8") as f:
      raise RuntimeError(f"{' '.join(command)} failed ({done.returncode}):\n{f.read()[-3000:]}")
  result = result_of(run_dir, np.load(exported)["test_labels"], records.read_classes(records_path),
                     records.read_stats(records_path)["totals"]["train"], model, side)
  result.update(key=key, label=model, run_wall_s=time.time() - started)
  os.makedirs(os.path.dirname(path), exist_ok=True)
  with open(path + ".tmp", "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  os.replace(path + ".tmp", path)
  print(f"torch_accuracy: {model} on {data_name}: {result['steps']} steps ({result['epochs']:.1f} epochs), "
        f"{result['fit_cpu_s']:.0f} CPU s, test top-1 {result['test']['top1_accuracy']:.4f}", flush=True)
  return result


def result_of(run_dir, labels, class_names, train_count, model, side):
  """A finished worker's summary and test metrics as a result dict (bench.accuracy's fields where they exist).

  Args:
    run_dir: the worker's --out, with worker.json and test_probabilities.npy.
    labels: int [n], the test split's labels in the exported order.
    class_names: list of str, the records' classes.
    train_count: training examples (epochs are steps x batch over it).
  """
  with open(os.path.join(run_dir, "worker.json"), encoding="utf-8") as f:
    worker = json.load(f)
  metrics = evaluate.metrics(labels, np.load(os.path.join(run_dir, "test_probabilities.npy")), class_names)
  batch = worker["batch_size"]
  curve = worker["curve"]
  return {**worker, "model": model, "image_size": side, "epochs": worker["steps"] * batch / train_count,
          "curve_epochs": [(step * batch / train_count, top1) for step, _, top1 in curve],
          "best_eval_top1": max(top1 for _, _, top1 in curve), "train_top1_last_epoch": worker["train_top1"][-1],
          "examples_per_cpu_s": worker["steps"] * batch / worker["fit_cpu_s"],
          "test": {k: metrics[k] for k in ("examples", "top1_accuracy", "top3_accuracy", "map3")}}


def main(argv):
  del argv
  rows = [parse_row(row) for row in FLAGS.rows]
  if not FLAGS.render:
    try:
      import torch  # noqa: F401  pylint: disable=import-outside-toplevel,unused-import
    except ImportError:
      sys.exit("torch_accuracy: PyTorch is not installed (bench only): pip install torch, or --render to only "
               "render the table from the results there are")
    for model, data_name in rows:
      train_row(model, data_name)
  torch_table.render(FLAGS.results_dir)


if __name__ == "__main__":
  app.run(main)
