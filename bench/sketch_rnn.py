r"""Sketch-RNN on this CPU: held-out losses against steps, recognisability, training cost.

  python -m bench.sketch_rnn --budget=900     # cat and horse (simplified_vlandham), the paper's model sizes
  python -m bench.sketch_rnn --quick          # smoke check, tiny units, a few steps; prints, writes nothing

Per class, records of that class alone (make_records, 80/10/10 split) train
``sketch_rnn`` through ``python -m quickdraw_tf.train`` (configs/sketch_rnn.cfg,
--budget CPU seconds of the train process), evaluating on the eval split after
every --steps_per_epoch steps: held-out L_R and L_KL (KL at its full weight)
against steps, from its TensorBoard logs, and on the test split at the end.
The paper trained on 70,000 drawings a class (here: the few hundred that
simplified_vlandham holds) for far more steps on a GPU.

Recognisability: --classifier is trained on records of all the classes
together (same split), then classifies real test drawings, unconditional
samples of each class's model (``z ~ N(0, I)``, tau 0.5) and reconstructions
of that class's test drawings at tau 0.2 and 0.5: the share put in the right
class. Cost: training examples/s of sketch_rnn against the bilstm classifier,
``train_on_batch`` on the same real batch of 64, in this process.
"""

import glob
import os
import shutil
import subprocess
import sys
import time

from absl import app
from absl import flags
import keras
import numpy as np
import tensorflow as tf

from bench import report
from quickdraw_tf import evaluate
from quickdraw_tf import make_records
from quickdraw_tf import models
from quickdraw_tf.models import sketch_rnn
from quickdraw_tf.pipelines import data
from quickdraw_tf.pipelines import records
from quickdraw_tf.pipelines import sketch_rnn_data
from quickdraw_tf.training import run_dir as run_dir_lib

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_OPTIONS = {"encoder_units": 16, "latent_size": 8, "decoder_units": 32, "num_mixtures": 5, "max_seq_len": 100}
RECONSTRUCTION_TEMPERATURES = (0.2, 0.5)
SAMPLE_TEMPERATURE = 0.5

flags.DEFINE_list("classes", ["cat", "horse"], "Classes, each trained alone.")
flags.DEFINE_string("source", "simplified_vlandham", "Directory under <data_dir>/strokes.")
flags.DEFINE_float("budget", 900, "CPU seconds of training per class.")
flags.DEFINE_integer("steps_per_epoch", 25, "Steps between evaluations.")
flags.DEFINE_string("classifier", "sketchanet", "The classifier that judges recognisability (bench/accuracy's best).")
flags.DEFINE_float("classifier_budget", 240, "CPU seconds of training of the classifier.")
flags.DEFINE_integer("samples", 50, "Unconditional samples per class.")
flags.DEFINE_integer("timing_steps", 5, "Timed train_on_batch steps per model.")
flags.DEFINE_bool("quick", False, "Tiny units, 2 steps a class, lamnguyen data; prints only.")
flags.DEFINE_string("runs_dir", "runs/bench_sketch_rnn", "Records and runs go here.")
report.define_data_dir()
FLAGS = flags.FLAGS


def build_records(name, classes):
  out = os.path.join(FLAGS.runs_dir, "records", name)
  if not (records.is_complete(out) and records.read_classes(out) == sorted(classes)):
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(os.path.dirname(out), exist_ok=True)  # make_records creates the records directory, not its parents.
    inputs = [os.path.join(FLAGS.data_dir, "strokes", FLAGS.source, f"{c}.ndjson") for c in classes]
    make_records.convert(inputs, out, progress=False, num_shards=1, workers=1)
  return out


def train(model, records_dir, run_dir, budget, options=(), extra=()):
  """``python -m quickdraw_tf.train`` under a CPU budget; returns its wall seconds."""
  shutil.rmtree(run_dir, ignore_errors=True)
  command = [sys.executable, "-m", "quickdraw_tf.train", f"--model={model}", f"--records={records_dir}",
             f"--model_dir={run_dir}", "--epochs=100000", f"--time_budget={budget}", "--budget_clock=cpu",
             f"--checkpoint_steps={10**9}", *[f"--model_option={k}={v}" for k, v in dict(options).items()], *extra]
  print("sketch_rnn bench:", " ".join(command[1:]), flush=True)
  started = time.time()
  result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
  if result.returncode:
    raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
  return time.time() - started


def loss_curve(run_dir, steps_per_epoch):
  """[(steps, eval L_R, eval L_KL)] after every epoch, from train's TensorBoard logs."""
  values = {}
  for path in glob.glob(os.path.join(run_dir, "logs", "validation", "events.*")):
    for record in tf.data.TFRecordDataset(path):
      event = tf.compat.v1.Event.FromString(record.numpy())
      for value in event.summary.value:
        if value.tag in ("epoch_r_loss", "epoch_kl_loss"):
          values.setdefault(event.step, {})[value.tag] = float(tf.make_ndarray(value.tensor))
  return [((epoch + 1) * steps_per_epoch, v["epoch_r_loss"], v.get("epoch_kl_loss", float("nan")))
          for epoch, v in sorted(values.items()) if "epoch_r_loss" in v]


def test_losses(model, records_dir):
  batches = sketch_rnn_data.make_dataset(records_dir, "test", 64, model.hparams.max_seq_len,
                                         model.hparams.scale_factor)
  model.compile()  # The model's own loss; no optimizer: the KL term at its full weight.
  result = model.evaluate(batches, verbose=0, return_dict=True)
  return result["r_loss"], result["kl_loss"]


def _padded_points(point_sets):
  point_sets = [p for p in point_sets if p is not None and len(p) >= 2]
  padded = np.zeros((len(point_sets), max(len(p) for p in point_sets), 3), np.float32)
  for i, points in enumerate(point_sets):
    padded[i, :len(points)] = points
  return {"ink": tf.constant(padded), "length": tf.constant([len(p) for p in point_sets], tf.int32)}


def recognised(classifier, class_index, strokes, lengths, scale_factor):
  """Share of model-unit drawings the classifier SavedModel puts in ``class_index`` (empty ones count as wrong)."""
  point_sets = [sketch_rnn_data.stroke5_to_points(s, n, scale_factor) for s, n in zip(strokes, lengths)]
  if not any(p is not None and len(p) >= 2 for p in point_sets):
    return 0.0
  probabilities = classifier.signatures["serving_default"](**_padded_points(point_sets))["probabilities"].numpy()
  return float(np.sum(np.argmax(probabilities, 1) == class_index)) / len(point_sets)


def generated_recognition(model, records_dir, classifier, class_index, seed=0):
  """{label: share recognised} for samples and reconstructions of the test split."""
  hp = model.hparams
  shares = {}
  strokes, lengths = sketch_rnn.sample_prior(model, FLAGS.samples, SAMPLE_TEMPERATURE, [seed, 0], hp.max_seq_len)
  shares[f"samples, tau {SAMPLE_TEMPERATURE}"] = recognised(classifier, class_index, strokes.numpy(),
                                                            lengths.numpy(), hp.scale_factor)
  batch = next(iter(sketch_rnn_data.make_dataset(records_dir, "test", 64, hp.max_seq_len, hp.scale_factor)))
  mu, _ = model.encode(batch["strokes"], batch["length"])
  for tau in RECONSTRUCTION_TEMPERATURES:
    strokes, lengths = sketch_rnn.sample(model, mu, tau, [seed, 1], hp.max_seq_len)
    shares[f"reconstructions, tau {tau}"] = recognised(classifier, class_index, strokes.numpy(), lengths.numpy(),
                                                       hp.scale_factor)
  return shares


def examples_per_second(records_dir, options):
  """{model: training examples/s} of sketch_rnn and bilstm, train_on_batch on one real batch of 64."""
  rates = {}
  stats = sketch_rnn_data.split_statistics(records_dir, "train", options.get("max_seq_len", 250))
  sketch_batch = next(iter(sketch_rnn_data.make_dataset(records_dir, "train", 64, options.get("max_seq_len", 250),
                                                        stats["offset_std"], training=True, seed=0)))
  bilstm_batch = next(iter(data.make_dataset(records_dir, "train", models.get("bilstm"), 64, training=True,
                                             deterministic=True)))
  for name, build, batch in (("sketch_rnn", lambda: models.build("sketch_rnn", 1, **options), (sketch_batch,)),
                             ("bilstm", lambda: models.build("bilstm", len(records.read_classes(records_dir))),
                              bilstm_batch)):
    model = build()
    model.compile(keras.optimizers.Adam(1e-4),
                  None if name == "sketch_rnn" else keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.train_on_batch(*batch)  # Traces the step.
    started = time.time()
    for _ in range(FLAGS.timing_steps):
      model.train_on_batch(*batch)
    rates[name] = 64 * FLAGS.timing_steps / (time.time() - started)
    keras.backend.clear_session()
  return rates


def main(_):
  if FLAGS.quick:
    FLAGS.source, FLAGS.classes, FLAGS.runs_dir = "simplified_lamnguyen", ["cat", "fish"], FLAGS.runs_dir + "_quick"
    FLAGS.budget, FLAGS.classifier_budget, FLAGS.steps_per_epoch, FLAGS.samples = 4, 4, 2, 8
    FLAGS.timing_steps = 2
  options = QUICK_OPTIONS if FLAGS.quick else {}
  load_before = os.getloadavg()[0]
  all_records = build_records("all", FLAGS.classes)
  classifier_dir = os.path.join(FLAGS.runs_dir, FLAGS.classifier)
  train(FLAGS.classifier, all_records, classifier_dir, FLAGS.classifier_budget,
        extra=["--image_size=64"] if models.get(FLAGS.classifier).uses_image else [])
  classifier = tf.saved_model.load(os.path.join(classifier_dir, run_dir_lib.SAVED_MODEL))
  labels, probabilities, class_names = evaluate.predict_saved_model(
      os.path.join(classifier_dir, run_dir_lib.SAVED_MODEL), all_records, "test")
  curve_rows, test_rows, recognition_rows = [], [], []
  for name in FLAGS.classes:
    records_dir = build_records(name, [name])
    run_dir = os.path.join(FLAGS.runs_dir, f"sketch_rnn_{name}")
    wall = train("sketch_rnn", records_dir, run_dir, FLAGS.budget, options,
                 extra=[f"--steps_per_epoch={FLAGS.steps_per_epoch}"])
    curve = loss_curve(run_dir, FLAGS.steps_per_epoch)
    curve_rows += [[name, steps, f"{r:.3f}", f"{kl:.3f}"] for steps, r, kl in curve]
    model, config = run_dir_lib.restore(run_dir)
    test_r, test_kl = test_losses(model, records_dir)
    kept = config["data"]["train"]
    test_rows.append([name, f"{kept['kept']:,} ({kept['too_long']} skipped)", curve[-1][0] if curve else 0,
                      f"{wall:.0f}", f"{test_r:.3f}", f"{test_kl:.3f}", "n/a offline", "70,000"])
    index = class_names.index(name)
    real = float(np.mean(np.argmax(probabilities[labels == index], 1) == index))
    shares = generated_recognition(model, records_dir, classifier, index)
    recognition_rows.append([name, f"{real:.3f}"] + [f"{share:.3f}" for share in shares.values()])
    keras.backend.clear_session()
  rates = examples_per_second(build_records(FLAGS.classes[0], [FLAGS.classes[0]]), options)
  body = "\n\n".join([
      "Held-out (eval split) L_R and L_KL (KL at full weight w_KL = 0.5) against training steps:",
      report.table(["class", "steps", "eval L_R", "eval L_KL"], curve_rows),
      "At the end, on the test split, beside the paper's Table 1 (its figures for cat are not in the offline "
      "reference; it trained on 70,000 drawings a class, HyperLSTM or layer-norm decoders, far more steps on GPU):",
      report.table(["class", "training drawings (skipped: longer than max_seq_len)", "steps", "wall s",
                    "test L_R", "test L_KL", "paper L_R / L_KL", "paper's training drawings"], test_rows),
      f"Recognisability by `{FLAGS.classifier}` trained on {', '.join(FLAGS.classes)} for "
      f"{FLAGS.classifier_budget:g} CPU s: share put in the right class.",
      report.table(["class", "real test drawings"] + list(shares), recognition_rows),
      f"Chance is {1 / len(FLAGS.classes):.2f}. Where a class's generated drawings score near or below it, the "
      "classifier cannot tell them from another class's: within this budget (a few hundred training drawings a "
      "class) that model has learnt to draw strokes, not yet its class. The paper trains on 70,000 drawings a "
      "class for far more steps.",
      f"Training cost, batch 64, `train_on_batch` on real drawings: sketch_rnn {rates['sketch_rnn']:.1f} "
      f"examples/s, bilstm {rates['bilstm']:.1f} examples/s: a sketch_rnn step costs "
      f"{rates['bilstm'] / rates['sketch_rnn']:.1f}x a bilstm step. Load average before: {load_before:.1f}."])
  if FLAGS.quick:
    print(body)
    return
  report.write_section("sketch_rnn", "Sketch-RNN: held-out losses, recognisability, cost (CPU)",
                       f"python -m bench.sketch_rnn --budget={FLAGS.budget:g}", body)


if __name__ == "__main__":
  app.run(main)
