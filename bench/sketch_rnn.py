r"""Sketch-RNN on this CPU: held-out L_R against steps, recognisability, settings compared; resumable.

  python -m bench.sketch_rnn --compare --budget=1800 --reuse  # cat: magenta's settings against the notes'
  python -m bench.sketch_rnn --budget=7200 --reuse            # cat and horse, the default settings, 2 CPU h each
  python -m bench.sketch_rnn --render                         # BENCHMARKS.md's section from bench/results alone
  python -m bench.sketch_rnn --quick                          # smoke check, tiny units; prints, writes nothing

Per class, records of that class alone (make_records, 80/10/10 split) train
``sketch_rnn`` through ``python -m quickdraw_tf.train`` (configs/sketch_rnn.cfg,
or configs/sketch_rnn_notes.cfg for the "notes" settings), in chunks of
--chunk CPU seconds up to --budget CPU seconds of the train processes
(train's --time_budget counts a resumed run's earlier seconds), evaluating on
the eval split every --steps_per_epoch steps. After each chunk the run's
result (held-out L_R and L_KL against steps, test L_R, recognisability) goes
to --results_dir/<class>_<settings>.json, so that --reuse goes on from the
last chunk: from the run directory's backup (--runs_dir, not committed: a
fresh machine without it restarts that run's training, and says so).

Recognisability: --classifier is trained on records of all the classes
together (same split), then classifies real test drawings, unconditional
samples of each class's model (``z ~ N(0, I)``, tau 0.5) and reconstructions
of that class's test drawings at tau 0.2 and 0.5: the share put in the right
class. Nothing is tuned on the test split: settings are picked by the eval
split's L_R.
"""

import glob
import json
import os
import re
import resource
import shutil
import subprocess
import sys

from absl import app
from absl import flags
import keras
import numpy as np
from PIL import Image
import tensorflow as tf

from bench import report
from bench import shared_flags  # noqa: F401  (defines --quick)
from quickdraw_tf import evaluate
from quickdraw_tf import generate
from quickdraw_tf import make_records
from quickdraw_tf import models
from quickdraw_tf.drawings import ink as ink_lib
from quickdraw_tf.models import sketch_rnn
from quickdraw_tf.pipelines import records
from quickdraw_tf.pipelines import sketch_rnn_data
from quickdraw_tf.training import run_dir as run_dir_lib
from quickdraw_tf.training import sketch_rnn_train

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
QUICK_OPTIONS = {"encoder_units": 16, "latent_size": 8, "decoder_units": 32, "num_mixtures": 5, "max_seq_len": 100}
RECONSTRUCTION_TEMPERATURES = (0.2, 0.5)
SAMPLE_TEMPERATURE = 0.5
# Training settings compared: extra train flags of each (configs/sketch_rnn.cfg is magenta's).
# magenta_noaug: magenta's without its training augmentation (scale, stroke drop), as the runs before it was ported.
SETTINGS = {"magenta": [], "magenta_noaug": ["--model_option=random_scale_factor=0", "--model_option=augment_stroke_prob=0"],
            "notes": ["--flagfile=configs/sketch_rnn_notes.cfg"]}

flags.DEFINE_list("classes", ["cat", "horse"], "Classes, each trained alone.")
flags.DEFINE_string("source", "simplified_vlandham", "Directory under <data_dir>/strokes.")
flags.DEFINE_float("budget", 7200, "CPU seconds of training per class and settings (train processes' own).")
flags.DEFINE_float("chunk", 900, "CPU seconds of training between results (each a train process).")
flags.DEFINE_integer("steps_per_epoch", 25, "Steps between evaluations.")
flags.DEFINE_bool("compare", False, "Train --compare_class with every one of SETTINGS (same --budget) instead.")
flags.DEFINE_string("compare_class", "cat", "The class --compare trains.")
flags.DEFINE_string("settings", "magenta", "The settings of the runs (one of SETTINGS).")
flags.DEFINE_bool("reuse", False, "Go on from --results_dir's results and --runs_dir's runs (after a stop).")
flags.DEFINE_bool("render", False, "Only write BENCHMARKS.md's section from --results_dir.")
flags.DEFINE_bool("picture", False, "Only draw --picture_path from the runs in --runs_dir (their last state).")
flags.DEFINE_string("picture_path", os.path.join(REPO, "docs", "sketch_rnn.png"), "Where --picture draws.")
flags.DEFINE_string("results_dir", os.path.join(REPO, "bench", "results", "bench_sketch_rnn"),
                    "One JSON per run (committed).")
flags.DEFINE_string("classifier", "sketchanet", "The classifier that judges recognisability (bench/accuracy's best).")
flags.DEFINE_float("classifier_budget", 240, "CPU seconds of training of the classifier.")
flags.DEFINE_integer("samples", 50, "Unconditional samples per class.")
# --quick (bench/shared_flags.py) here: tiny units, 2 steps a class, lamnguyen data; prints only.
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


def classifier_saved_model(all_records):
  """The judging classifier's SavedModel directory, trained once (kept with --reuse)."""
  classifier_dir = os.path.join(FLAGS.runs_dir, FLAGS.classifier)
  saved = os.path.join(classifier_dir, run_dir_lib.SAVED_MODEL)
  if not (FLAGS.reuse and os.path.isdir(saved)):
    shutil.rmtree(classifier_dir, ignore_errors=True)
    train(FLAGS.classifier, all_records, classifier_dir, FLAGS.classifier_budget,
          extra=["--image_size=64"] if models.get(FLAGS.classifier).uses_image else [])
  return saved


def train(model, records_dir, run_dir, budget, options=(), extra=()):
  """``python -m quickdraw_tf.train`` until ``budget`` CPU seconds of the run (a resumed run's included).

  Returns:
    (CPU seconds of this process, the step it stopped at or None).
  """
  command = [sys.executable, "-m", "quickdraw_tf.train", f"--model={model}", f"--records={records_dir}",
             f"--model_dir={run_dir}", "--epochs=100000", f"--time_budget={budget}", "--budget_clock=cpu",
             f"--checkpoint_steps={10**9}", *[f"--model_option={k}={v}" for k, v in dict(options).items()], *extra]
  print("sketch_rnn bench:", " ".join(command[1:]), flush=True)
  before = resource.getrusage(resource.RUSAGE_CHILDREN)
  result = subprocess.run(command, capture_output=True, text=True, cwd=REPO, check=False)
  if result.returncode:
    raise RuntimeError(f"{' '.join(command)} failed:\n{result.stderr[-3000:]}")
  after = resource.getrusage(resource.RUSAGE_CHILDREN)
  stopped = re.findall(r"spent at step (\d+)", result.stdout + result.stderr)
  cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
  return cpu, int(stopped[-1]) if stopped else None


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


def result_path(label):
  return os.path.join(FLAGS.results_dir, f"{label}.json")


def read_result(label):
  path = result_path(label)
  if FLAGS.reuse and os.path.exists(path):
    with open(path, encoding="utf-8") as f:
      return json.load(f)
  return None


def write_result(label, result):
  os.makedirs(FLAGS.results_dir, exist_ok=True)
  with open(result_path(label) + ".tmp", "w", encoding="utf-8") as f:
    json.dump(result, f, indent=1)
  os.replace(result_path(label) + ".tmp", result_path(label))


def run_chunk(name, settings, classifier, class_index, options):
  """Trains ``name`` with ``settings`` one more --chunk (up to --budget CPU s) and writes its result; returns it.

  Goes on from --results_dir's result and the run directory's backup with
  --reuse; without the backup (a fresh machine) the run starts again.
  """
  label = f"{name}_{settings}"
  records_dir = build_records(name, [name])
  run_dir = os.path.join(FLAGS.runs_dir, label)
  result = read_result(label)
  if result is None or not os.path.isdir(os.path.join(run_dir, run_dir_lib.BACKUP_DIR)):
    if result is not None:
      print(f"sketch_rnn bench: {run_dir} has no backup (a fresh machine?): {label} trains again from step 0, "
            f"its earlier result ({result['budget']:g} CPU s) replaced", flush=True)
    shutil.rmtree(run_dir, ignore_errors=True)
    result = {"class": name, "settings": settings, "budget": 0.0, "chunks": []}
  if result["budget"] >= FLAGS.budget:
    return result
  goal = min(FLAGS.budget, result["budget"] + FLAGS.chunk)
  cpu, step = train("sketch_rnn", records_dir, run_dir, goal, options,
                    extra=[f"--steps_per_epoch={FLAGS.steps_per_epoch}", *SETTINGS[settings]])
  # The chunk's last state: best.weights.h5 kept an earlier chunk's model across resumptions.
  model, config = run_dir_lib.restore(run_dir, os.path.join(run_dir, run_dir_lib.FINAL_WEIGHTS))
  test_r, test_kl = test_losses(model, records_dir)
  curve = loss_curve(run_dir, FLAGS.steps_per_epoch)
  result.update(budget=goal, curve=curve, data=config["data"], model_options=config["model_options"],
                training={k: config["training"].get(k) for k in ("batch_size", "learning_rate")})
  result["chunks"].append({"budget": goal, "process_cpu_s": round(cpu, 1),
                           "step": step or (curve[-1][0] if curve else 0), "eval_r": curve[-1][1] if curve else None,
                           "test_r": test_r, "test_kl": test_kl,
                           "recognised": generated_recognition(model, records_dir, classifier, class_index)})
  if not FLAGS.quick:
    write_result(label, result)
  print(f"sketch_rnn bench: {label} {json.dumps(result['chunks'][-1])}", flush=True)
  keras.backend.clear_session()
  return result


def real_recognition(classifier_dir, all_records):
  """{class: share of its real test drawings the classifier gets right}."""
  labels, probabilities, class_names = evaluate.predict_saved_model(classifier_dir, all_records, "test")
  return {name: float(np.mean(np.argmax(probabilities[labels == i], 1) == i)) for i, name in enumerate(class_names)}


PICTURE_COLUMNS = 8


def picture_rows(model, records_dir, name, completions):
  """[(title, model-unit stroke-5, length)] rows of one class's grid: real test drawings, reconstructions
  (tau 0.2), samples (tau 0.5), an interpolation between two test drawings (tau 0.1) and, when
  ``completions``, endings of the first half of a test drawing's strokes (tau 0.5).
  """
  hp, n = model.hparams, PICTURE_COLUMNS
  batch = next(iter(sketch_rnn_data.make_dataset(records_dir, "test", n, hp.max_seq_len, hp.scale_factor)))
  real = [(f"real {name}", s, k) for s, k in zip(batch["strokes"].numpy(), batch["length"].numpy())]
  drawings = [(title, sketch_rnn_data.stroke5_to_points(s, k, hp.scale_factor)) for title, s, k in real]
  rows = real + generate.generate(model, "reconstruct", drawings, n, [0.2], 0)
  rows += generate.generate(model, "sample", drawings, n, [SAMPLE_TEMPERATURE], 1)
  rows += [(f"interp {t}", s, k) for t, s, k in generate.generate(model, "interpolate", drawings[:2], n, [0.1], 2)]
  if completions:
    half = generate.complete(model, drawings[0][1], n - 1, SAMPLE_TEMPERATURE, tf.constant([3, 0]))
    strokes = ink_lib.points_to_strokes(drawings[0][1])
    kept = sum(len(xs) for xs, _ in strokes[:max(1, len(strokes) // 2)]) - 1  # the prefix's stroke-5 rows
    rows += [("half a cat" if name == "cat" else "half", real[0][1], kept)] + half
  return rows


def draw_picture():
  """docs/sketch_rnn.png: each class's `picture_rows` from its run's last state (final.weights.h5)."""
  images = []
  for name in FLAGS.classes:
    run_dir = os.path.join(FLAGS.runs_dir, f"{name}_{FLAGS.settings}")
    if not os.path.exists(os.path.join(run_dir, run_dir_lib.CONFIG_FILE)):
      sys.exit(f"sketch_rnn bench: no run in {run_dir}: train it with python -m bench.sketch_rnn --reuse first")
    model, _ = run_dir_lib.restore(run_dir, os.path.join(run_dir, run_dir_lib.FINAL_WEIGHTS))
    rows = picture_rows(model, build_records(name, [name]), name, completions=name == FLAGS.classes[0])
    grid = sketch_rnn_train.render_grid(model, [s for _, s, _ in rows], [k for _, _, k in rows],
                                        [t for t, _, _ in rows])
    images.append(grid)
    keras.backend.clear_session()
  os.makedirs(os.path.dirname(FLAGS.picture_path), exist_ok=True)
  Image.fromarray(np.concatenate(images, axis=0)).save(FLAGS.picture_path)
  print(f"sketch_rnn bench: wrote {FLAGS.picture_path}", flush=True)


TARGETS = {"samples, tau 0.5": 0.75, "reconstructions, tau 0.2": 0.85}


def load_results():
  """{label: result} of every run in --results_dir, and the classifier's (or None)."""
  results = {}
  for path in sorted(glob.glob(os.path.join(FLAGS.results_dir, "*.json"))):
    with open(path, encoding="utf-8") as f:
      results[os.path.basename(path)[:-len(".json")]] = json.load(f)
  return results, results.pop("classifier", None)


def falling(curve):
  """Whether held-out L_R still fell over the last third of the curve (its minimum there, below the rest's)."""
  if len(curve) < 6:
    return True
  cut = len(curve) * 2 // 3
  return min(r for _, r, _ in curve[cut:]) < min(r for _, r, _ in curve[:cut])


def result_row(label, result, real):
  last = result["chunks"][-1]
  shares = last["recognised"]
  row = [label, f"{result['training']['batch_size']}", f"{result['training']['learning_rate']:g}",
         f"{result['budget']:.0f}", last["step"], f"{last['eval_r']:.3f}", f"{last['test_r']:.3f}",
         f"{last['test_kl']:.3f}", f"{real.get(result['class'], float('nan')):.2f}"]
  row += [f"{shares[k]:.2f}" + (" (target {:.2f})".format(TARGETS[k]) if k in TARGETS else "") for k in shares]
  return row + ["yes" if falling(result["curve"]) else "no"]


def curve_rows(label, curve, points=10):
  """At most ``points`` rows of (label, steps, eval L_R, eval L_KL), evenly through the curve, its last included."""
  picks = sorted({round(i * (len(curve) - 1) / max(points - 1, 1)) for i in range(points)}) if curve else []
  return [[label, curve[i][0], f"{curve[i][1]:.3f}", f"{curve[i][2]:.3f}"] for i in picks]


def padding_rows(batch_size=100, batches=200):
  """Per class: the share of decoder steps that are padding, at each padding, over ``batches`` training batches."""
  rows = []
  for name in FLAGS.classes:
    records_dir = build_records(name, [name])
    longest = sketch_rnn_data.split_statistics(records_dir, "train")["longest"]
    row = [name, longest]
    for pad_to, training in ((251, False), (longest + 1, False), (None, False), (None, True)):
      kept = 250 if pad_to == 251 else longest  # Before: longer drawings were skipped.
      batches_of = sketch_rnn_data.make_dataset(records_dir, "train", batch_size, kept, 1.0, training=training,
                                                seed=0, repeat=True, pad_to=pad_to).take(batches)
      real = total = 0
      for batch in batches_of:
        real += int(np.sum(batch["length"].numpy() + 1))
        total += int(np.prod(batch["strokes"].shape[:2]))
      row.append(f"{1 - real / total:.0%} ({total / batches / batch_size:.0f})")
    rows.append(row)
  return rows


def write_section():
  """BENCHMARKS.md's sketch_rnn section from --results_dir (the committed results) alone."""
  results, classifier = load_results()
  if not results or classifier is None:
    sys.exit(f"sketch_rnn bench: no results in {FLAGS.results_dir}: run python -m bench.sketch_rnn --reuse first")
  real = classifier["real"]
  header = ["run (class_settings)", "batch", "lr", "CPU s of training", "steps", "eval L_R", "test L_R", "test L_KL",
            "classifier on real test drawings"] + list(next(iter(results.values()))["chunks"][-1]["recognised"]) + [
                "eval L_R still falling"]
  compared = [label for label in results if label.startswith(f"{FLAGS.compare_class}_")]
  by_chunk = [[label, c["budget"], c["step"], f"{c['eval_r']:.3f}",
               *[f"{v:.2f}" for v in c["recognised"].values()]] for label in compared
              for c in results[label]["chunks"]]
  body = "\n\n".join([
      f"Judge: `{classifier['classifier']}` trained on {', '.join(sorted(real))} together for "
      f"{classifier['budget']:g} CPU s; the share of drawings it puts in the drawing's class (chance "
      f"{1 / len(real):.2f}). Targets: samples (z ~ N(0, I), tau 0.5) >= 0.75, reconstructions of test drawings "
      "at tau 0.2 >= 0.85. Every run's model is its last state (its best by eval loss where one was kept).",
      report.table(header, [result_row(label, result, real) for label, result in results.items()]),
      f"Settings on {FLAGS.compare_class} at the same CPU budget (magenta: Adam 1e-3 decaying 0.9999 a step to "
      "1e-5, batch 100; notes: Adam 1e-4, batch 64), after each chunk of training (CPU s of the train "
      "processes); the default (configs/sketch_rnn.cfg) is the lower held-out (eval) L_R:",
      report.table(["run", "CPU s", "steps", "eval L_R"] + list(TARGETS) + ["reconstructions, tau 0.5"], by_chunk),
      "Padding: the share of the decoder's steps (batch 100, 200 training batches) that are padding rather than a "
      "drawing's rows and its end row, and in brackets the rows a batch runs, when every drawing is padded to 250 "
      "rows (before), to the longest training drawing (magenta's N_max), to its batch's longest, and to its "
      "batch's longest with batches bucketed by length (now, training):",
      report.table(["class", "longest training drawing (rows)", "to 250", "to the data's longest",
                    "to the batch's longest", "bucketed (now)"], padding_rows()),
      "Held-out (eval split) L_R and L_KL (KL at its full weight) against steps:",
      report.table(["run", "steps", "eval L_R", "eval L_KL"],
                   [row for label, result in results.items() for row in curve_rows(label, result["curve"])]),
      "![real test drawings, reconstructions, samples, an interpolation, completions](docs/sketch_rnn.png)",
  ])
  report.write_section("sketch_rnn", "Sketch-RNN: held-out losses, recognisability, settings (CPU)",
                       "python -m bench.sketch_rnn --compare --reuse; python -m bench.sketch_rnn --reuse "
                       f"(--budget={FLAGS.budget:g} --chunk={FLAGS.chunk:g}); python -m bench.sketch_rnn --render",
                       body)


def main(_):
  if FLAGS.quick:
    FLAGS.source, FLAGS.classes, FLAGS.runs_dir = "simplified_lamnguyen", ["cat", "fish"], FLAGS.runs_dir + "_quick"
    FLAGS.budget, FLAGS.chunk, FLAGS.classifier_budget, FLAGS.steps_per_epoch, FLAGS.samples = 8, 4, 4, 2, 8
  if FLAGS.picture:
    return draw_picture()
  if not FLAGS.render:
    options = QUICK_OPTIONS if FLAGS.quick else {}
    all_records = build_records("all", FLAGS.classes)
    classifier_dir = classifier_saved_model(all_records)
    real = real_recognition(classifier_dir, all_records)
    if not FLAGS.quick:
      write_result("classifier", {"classifier": FLAGS.classifier, "budget": FLAGS.classifier_budget, "real": real})
    classifier = tf.saved_model.load(classifier_dir)
    runs = ([(FLAGS.compare_class, s) for s in SETTINGS] if FLAGS.compare else
            [(name, FLAGS.settings) for name in FLAGS.classes])
    while runs:  # A chunk of each in turn, so that every run has a result early.
      results = [run_chunk(name, settings, classifier, list(real).index(name), options) for name, settings in runs]
      runs = [run for run, result in zip(runs, results) if result["budget"] < FLAGS.budget]
    if FLAGS.quick:
      return
  write_section()


if __name__ == "__main__":
  app.run(main)
