r"""python -m quickdraw_tf.evaluate: accuracy of a checkpoint or a SavedModel on a records split.

  python -m quickdraw_tf.evaluate --model_dir=runs/rnn [--split=test]
  python -m quickdraw_tf.evaluate --saved_model=runs/rnn/saved_model --records=tfrecords/quickdraw

Reports top-1, top-3, MAP@3 (the Kaggle Quick Draw metric), per-class
accuracy; writes metrics.json, confusion_matrix.json and confusion_matrix.png
into --output_dir (default <model_dir or saved_model>/eval_<split>).
"""

import json
import os

from absl import app
from absl import flags
import numpy as np
import tensorflow as tf

from quickdraw_tf import cli
from quickdraw_tf import export as export_lib
from quickdraw_tf import models
from quickdraw_tf import progress as progress_lib
from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.pipelines import data
from quickdraw_tf.pipelines import records
from quickdraw_tf.serving import saved_model
from quickdraw_tf.training import run_dir
from quickdraw_tf.training import summaries


def metrics(labels, probabilities, class_names, k=3):
  """Top-1, top-k, MAP@k, per-class accuracy and the confusion matrix.

  k is capped at the number of classes: with 2 classes top-3 is top-2, and
  MAP@3 averages over the 2 ranks there are.

  Args:
    labels: int ``[n]``, indices into ``class_names``; n >= 1.
    probabilities: float ``[n, classes]``, columns in ``class_names`` order.
    class_names: list of str.
    k: ranks counted by top-k and MAP@k.

  Returns:
    dict (JSON-ready): top-k figures under the names ``top3_accuracy`` and
    ``map3`` whatever k is, with ``top_k`` saying which k they are for.
  """
  labels = np.asarray(labels, np.int64)
  probabilities = np.asarray(probabilities)
  if probabilities.ndim != 2 or probabilities.shape != (len(labels), len(class_names)) or not len(labels):
    raise ValueError(f"need probabilities of shape [n >= 1, {len(class_names)}] for {len(labels)} labels, "
                     f"got {probabilities.shape}")
  if labels.min() < 0 or labels.max() >= len(class_names):
    raise ValueError(f"labels must index the {len(class_names)} classes, got {labels.min()}..{labels.max()}")
  bad = int((~np.isfinite(probabilities).all(axis=1)).sum())
  if bad:  # A NaN would rank somewhere and give a figure that looks right.
    raise ValueError(f"the model gave NaN or infinite probabilities for {bad} of {len(labels)} drawings: its "
                     "weights have diverged; evaluate an earlier checkpoint (--weights=checkpoints/epochNNN.weights.h5)")
  k = min(k, len(class_names))
  # A stable sort: ties rank in class order, the same way on every run.
  ranked = np.argsort(-probabilities, axis=1, kind="stable")[:, :k]
  hits = ranked == labels[:, None]
  confusion = np.zeros((len(class_names), len(class_names)), np.int64)
  np.add.at(confusion, (labels, ranked[:, 0]), 1)
  per_class = {name: (float(confusion[i, i] / confusion[i].sum()) if confusion[i].sum() else None)
               for i, name in enumerate(class_names)}
  return {
      "examples": int(len(labels)),
      "top_k": k,
      "top1_accuracy": float(hits[:, 0].mean()),
      "top3_accuracy": float(hits.any(axis=1).mean()),
      # Mean average precision at k: 1/rank of the true class when it is in the top k.
      "map3": float((hits / np.arange(1, k + 1)).sum(axis=1).mean()),
      "per_class_accuracy": per_class,
      "confusion_matrix": confusion.tolist(),
  }


def _drawings(records_dir, split, batch_size):
  """Batches of absolute points, as a client would send them, with labels."""
  with_image = not records.read_stats(records_dir).get("has_ink", True)
  dataset = tf.data.TFRecordDataset(records.shard_paths(records_dir, split)).map(data.parse_fn(with_image))
  for features, labels in dataset.padded_batch(batch_size):
    if with_image:
      yield {"image": features["image"]}, labels.numpy()
    else:
      points, lengths = ink_lib.decode_tf(features["ink"], features["bbox"], features["origin"],
                                          features["ink_length"])
      yield {"ink": points, "length": lengths}, labels.numpy()


def _tracked(batches, records_dir, split, progress):
  """``batches`` of (features, labels) of a split, behind a bar over its drawings in `progress_lib.track`'s way."""
  total = records.read_stats(records_dir).get("totals", {}).get(split)
  return progress_lib.track(batches, progress, f"evaluate {split}", "drawings", total=total,
                            weight=lambda batch: len(batch[1]))


def predict_saved_model(saved_model_dir, records_dir, split, batch_size=64, progress="lines"):
  """Probabilities of a SavedModel on a split, over all of the model's classes.

  The records may hold a subset of the model's classes (their labels are
  mapped to the model's), never a class the model lacks. ``progress``: a
  `cli.PROGRESS_MODES` mode (a bar on stderr, or nothing).

  Returns:
    (labels int [n] in the model's class order, probabilities float
    [n, classes of the model], the model's class names).
  """
  data.complete_stats(records_dir)  # The check train makes: a directory make_records did not finish is refused.
  loaded = tf.saved_model.load(saved_model_dir)
  with open(os.path.join(saved_model_dir, export_lib.CLASSES_ASSET), encoding="utf-8") as f:
    names = [line.rstrip("\n") for line in f]
  class_names = records.read_classes(records_dir)
  missing = sorted(set(class_names) - set(names))
  if missing:
    raise ValueError(f"the SavedModel does not know {len(missing)} class(es) of the records: {missing[:5]}")
  to_model = np.array([names.index(name) for name in class_names], np.int64)
  labels, probabilities = [], []
  for inputs, batch_labels in _tracked(_drawings(records_dir, split, batch_size), records_dir, split, progress):
    signature = loaded.signatures[saved_model.IMAGE_SIGNATURE if "image" in inputs else saved_model.INK_SIGNATURE]
    probabilities.append(signature(**inputs)["probabilities"].numpy())
    labels.append(to_model[batch_labels])
  _check_not_empty(labels, records_dir, split)
  return np.concatenate(labels), np.concatenate(probabilities), names


def _check_not_empty(labels, records_dir, split):
  if not labels:
    raise ValueError(f"the {split} split of {records_dir} holds no drawings: evaluate another --split, or make "
                     "records with more drawings a class (python -m quickdraw_tf.make_records)")


def predict_checkpoint(model_dir, records_dir, split, batch_size=64, weights=None, progress="lines"):
  """Probabilities of a trained model_dir's weights on a split; ``progress`` as `predict_saved_model`'s.

  Returns:
    (labels int [n], probabilities float [n, classes of the records]).
  """
  if models.get(run_dir.read_config(model_dir)["model"]).trainer:
    raise ValueError(f"{model_dir} holds a generative model, which evaluate does not score: its held-out losses "
                     "are in its TensorBoard logs; draw with python -m quickdraw_tf.generate")
  model, config = run_dir.restore(model_dir, weights)
  class_names = records.read_classes(records_dir)
  if class_names != config["classes"]:
    raise ValueError(f"{model_dir} was trained on {len(config['classes'])} classes, the records in {records_dir} "
                     f"have {len(class_names)} ({'same count, other names' if len(class_names) == len(config['classes']) else 'another count'})")
  spec = models.get(config["model"])
  dataset = data.make_dataset(records_dir, split, spec, batch_size, image_size=run_dir.image_size(config))
  labels, probabilities = [], []
  for features, batch_labels in _tracked(dataset, records_dir, split, progress):
    probabilities.append(tf.nn.softmax(tf.cast(model(features, training=False), tf.float32)).numpy())
    labels.append(batch_labels.numpy())
  _check_not_empty(labels, records_dir, split)
  return np.concatenate(labels), np.concatenate(probabilities)


def write_report(result, class_names, output_dir):
  """Writes `metrics`' ``result`` into ``output_dir`` (made if missing).

  Files: confusion_matrix.png, confusion_matrix.json ({"classes", "matrix"}, rows the true class) and
  metrics.json (the rest of ``result``).
  """
  os.makedirs(output_dir, exist_ok=True)
  summaries.save_png(summaries.confusion_image(result["confusion_matrix"], class_names),
                     os.path.join(output_dir, "confusion_matrix.png"))
  with open(os.path.join(output_dir, "confusion_matrix.json"), "w", encoding="utf-8") as f:
    json.dump({"classes": class_names, "matrix": result["confusion_matrix"]}, f)
  with open(os.path.join(output_dir, "metrics.json"), "w", encoding="utf-8") as f:
    json.dump({k: v for k, v in result.items() if k != "confusion_matrix"}, f, indent=1)


FLAGS = flags.FLAGS


def define_flags():
  """Defines evaluate's flags: --model_dir or --saved_model, --weights, --records, --split, --batch_size, ..."""
  cli.define_model_dir("A model_dir written by train (its best weights are evaluated).")
  cli.define_weights()
  cli.define_saved_model()
  cli.define_records(help_text="Records directory (default: the one the model was trained on).")
  flags.DEFINE_enum("split", "test", list(records.SPLITS), "Which split.")
  flags.DEFINE_integer("batch_size", 64, "Batch size.")
  flags.DEFINE_string("output_dir", None, "Where the reports go (default <model>/eval_<split>).")
  cli.define_progress()


def main(_):
  """Evaluates the model on --split: writes the reports (`write_report`), prints accuracy and the worst classes."""
  if bool(FLAGS.model_dir) == bool(FLAGS.saved_model):
    raise app.UsageError("give exactly one of --model_dir and --saved_model")
  records_dir = FLAGS.records
  try:
    if FLAGS.model_dir:
      records_dir = records_dir or run_dir.read_config(FLAGS.model_dir)["records"]
      labels, probabilities = predict_checkpoint(FLAGS.model_dir, records_dir, FLAGS.split, FLAGS.batch_size,
                                                 FLAGS.weights, FLAGS.progress)
      class_names = records.read_classes(records_dir)
    else:
      records_dir = records_dir or data.default_records_dir()
      labels, probabilities, class_names = predict_saved_model(FLAGS.saved_model, records_dir, FLAGS.split,
                                                               FLAGS.batch_size, FLAGS.progress)
  except (ValueError, OSError) as e:  # OSError: no SavedModel, weights or records there.
    raise cli.Error(str(e)) from None
  result = metrics(labels, probabilities, class_names)
  output_dir = FLAGS.output_dir or os.path.join(FLAGS.model_dir or FLAGS.saved_model, f"eval_{FLAGS.split}")
  write_report(result, class_names, output_dir)
  k = result["top_k"]
  progress_lib.write(f"{FLAGS.split}: {result['examples']} drawings, top-1 {result['top1_accuracy']:.4f}, "
                     f"top-{k} {result['top3_accuracy']:.4f}, MAP@{k} {result['map3']:.4f}; reports in {output_dir}")
  worst = sorted((v, k) for k, v in result["per_class_accuracy"].items() if v is not None)[:5]
  progress_lib.write("lowest per-class accuracy: " + ", ".join(f"{k} {v:.2f}" for v, k in worst))


if __name__ == "__main__":
  cli.run(define_flags, main)
