"""Trains Sketch-RNN: ``python -m quickdraw_tf.train --model=sketch_rnn`` (or ``sketch_rnn_uncond``) lands here.

`train.train` hands over to `train` below for models whose spec names this
module as their trainer. The model computes its own loss (L_R + KL with
annealing, see `models.sketch_rnn`), so ``fit`` runs it under the same
tf.distribute strategy, backups, checkpoints and time budget as the
classifiers. Writes into ``model_dir``:
  config.json        model, classes, model_options (with the training split's
                     scale_factor and max_seq_len), data counts (kept and
                     skipped drawings per split)
  backup/, checkpoints/, final.weights.h5
  best.weights.h5    lowest eval loss, with the KL term at its full weight
                     (comparable across epochs while the training weight anneals)
  logs/              TensorBoard: loss, L_R (r_loss), L_s, L_p, L_KL, KL weight,
                     examples/s; reconstructions of eval drawings and samples
  saved_model/       `sketch_rnn_export`: encode, decode and sample signatures
"""

import json
import os

import keras
import numpy as np
import tensorflow as tf

import quickdraw_tf
from quickdraw_tf import cli
from quickdraw_tf import models
from quickdraw_tf import progress
from quickdraw_tf.drawings import raster
from quickdraw_tf.models import sketch_rnn
from quickdraw_tf.pipelines import records
from quickdraw_tf.pipelines import sketch_rnn_data
from quickdraw_tf.training import distribute
from quickdraw_tf.training import run_dir
from quickdraw_tf.training import summaries

SUMMARY_TEMPERATURE = 0.2
SUMMARY_DRAWINGS = 8


def render_grid(model, strokes, lengths, titles, size=raster.BITMAP_SIZE):
  """Model-unit stroke-5 drawings -> a titled grid, uint8 ``[h, w, 3]`` (`summaries.drawing_grid`)."""
  images = []
  for drawing, length in zip(strokes, lengths):
    points = sketch_rnn_data.stroke5_to_points(drawing, length, model.hparams.scale_factor)
    images.append(np.zeros((size, size)) if points is None else raster.render(points, size) / 255.0)
  return summaries.drawing_grid(np.asarray(images)[..., None], titles)


class SketchSummaries(summaries.EpochSummaries):
  """After every epoch: examples/s, and eval reconstructions and samples as images in TensorBoard."""

  def __init__(self, log_dir, eval_batch, batch_size, seed=0):
    super().__init__(log_dir, batch_size)
    self.eval_batch = eval_batch
    self.seed = seed

  def write_validation(self, epoch):
    model, n = self.model, SUMMARY_DRAWINGS
    seed = tf.constant([self.seed, epoch], tf.int32)
    max_len = model.hparams.max_seq_len
    if model.hparams.conditional and self.eval_batch is not None:
      strokes, length = self.eval_batch["strokes"][:n], self.eval_batch["length"][:n]
      mu, _ = model.encode(strokes, length)
      drawn, drawn_length = sketch_rnn.sample(model, mu, SUMMARY_TEMPERATURE, seed, max_len)
      # Lists: the eval batch is as wide as its longest drawing, the samples as max_len.
      grid = render_grid(model, [*strokes.numpy(), *drawn.numpy()], np.concatenate([length, drawn_length]),
                         ["input"] * n + [f"tau {SUMMARY_TEMPERATURE}"] * n)
      tf.summary.image("reconstructions", grid[None])
    z = tf.random.stateless_normal([n, model.latent_size], seed)
    drawn, drawn_length = sketch_rnn.sample(model, z, SUMMARY_TEMPERATURE, seed, max_len, batch_size=n)
    tf.summary.image("samples", render_grid(model, drawn, drawn_length, [f"tau {SUMMARY_TEMPERATURE}"] * n)[None])


@keras.saving.register_keras_serializable(package="quickdraw_tf")
class DecayingLearningRate(keras.optimizers.schedules.LearningRateSchedule):
  """magenta's sketch-rnn schedule: ``(initial - minimum) decay^step + minimum``, float32."""

  def __init__(self, initial, decay, minimum):
    self.initial, self.decay, self.minimum = initial, decay, minimum

  def __call__(self, step):
    step = keras.ops.cast(step, "float32")
    return (self.initial - self.minimum) * keras.ops.power(self.decay, step) + self.minimum

  def get_config(self):
    return {"initial": self.initial, "decay": self.decay, "minimum": self.minimum}


def learning_rate(config, hparams):
  """``config.learning_rate``, decaying as ``hparams`` say (`DecayingLearningRate`) unless their decay is 1."""
  if hparams.learning_rate_decay == 1.0:
    return config.learning_rate
  return DecayingLearningRate(config.learning_rate, hparams.learning_rate_decay, hparams.min_learning_rate)


def data_options(records_dir, model_dir, model_options):
  """The run's model options with ``max_seq_len`` and ``scale_factor``, and the data counts.

  ``max_seq_len`` (``N_max``: the longest drawing a run takes, and its loss's
  divisor) is the training split's longest drawing unless given, as magenta
  sets it; the scale factor comes from the training split. A run continuing
  in ``model_dir`` keeps its config's values, so that it scales and
  normalises alike.
  """
  options = dict(model_options)
  previous = os.path.join(model_dir, run_dir.CONFIG_FILE)
  if os.path.exists(previous):
    with open(previous, encoding="utf-8") as f:
      before = json.load(f).get("model_options", {})
    for key in ("max_seq_len", "scale_factor"):
      if key not in options and before.get(key):
        options[key] = before[key]
  if "max_seq_len" not in options and records.shard_paths(records_dir, "train"):
    options["max_seq_len"] = sketch_rnn_data.split_statistics(records_dir, "train")["longest"] or 1
  options.setdefault("max_seq_len", sketch_rnn.HParams.max_seq_len)
  counts = {}
  for split in records.SPLITS:
    if records.shard_paths(records_dir, split):
      counts[split] = sketch_rnn_data.split_statistics(records_dir, split, options["max_seq_len"])
  if not counts.get("train", {}).get("kept"):
    raise ValueError(f"{records_dir} has no training drawings of 1 to {options['max_seq_len']} stroke-5 rows: "
                     "raise --model_option=max_seq_len=N or make records from other drawings")
  if not options.get("scale_factor"):
    options["scale_factor"] = counts["train"]["offset_std"] or 1.0
  return options, counts


def _callbacks(config, train_callbacks, eval_data):
  """Backups, checkpoints, TensorBoard and sketch summaries around ``train_callbacks`` (the time budget)."""
  model_dir = config.model_dir
  carried = [  # Their state goes into the backups: a resumed run goes on as if never stopped.
      *train_callbacks,
      SketchSummaries(os.path.join(model_dir, run_dir.LOGS_DIR),
                      next(iter(eval_data)) if eval_data is not None else None, config.batch_size, config.seed),
  ]
  if eval_data is not None:
    carried.append(run_dir.best_checkpoint(model_dir, "val_loss", "min"))
  return run_dir.training_callbacks(model_dir, config.checkpoint_steps, carried, config.profile_batch)


def train(config, callbacks=()):
  """Trains a sketch-rnn model as ``config`` (a `train_config.TrainConfig`) says; classifier-only fields are unused.

  ``clip_norm`` clips every gradient element to ``[-clip_norm, clip_norm]``,
  as magenta's sketch-rnn clips (``tf.clip_by_value``), not by global norm.
  ``callbacks`` come from train (its time budget).

  Returns:
    the Keras ``History``.

  Raises:
    ValueError: records or options that cannot train it (a one-line message).
  """
  records_dir, model_dir, batch_size, seed = config.records, config.model_dir, config.batch_size, config.seed
  strategy_obj = distribute.make_strategy(config.strategy, config.tpu)
  if isinstance(strategy_obj, tf.distribute.MultiWorkerMirroredStrategy):
    raise ValueError("sketch_rnn trains with fit, which Keras 3 cannot run under MultiWorkerMirroredStrategy: "
                     "use --strategy=mirrored (or tpu) on one machine")
  if not records.is_complete(records_dir):
    raise ValueError(f"no complete records in {records_dir!r}: create them with python -m quickdraw_tf.make_records")
  class_names = records.read_classes(records_dir)
  keras.utils.set_random_seed(seed)
  options, counts = data_options(records_dir, model_dir, dict(config.model_options))
  progress.write(f"train: {config.model} on {counts['train']['kept']} drawings (skipped: "
                 f"{counts['train']['too_long']} longer than {options['max_seq_len']} rows, "
                 f"{counts['train']['empty']} of one point); scale factor {options['scale_factor']:.4f}")
  run = {"model": config.model, "classes": class_names, "image_size": 0, "model_options": options,
         "records": cli.absolute_path(records_dir), "data": counts, "training": config.record(),
         "version": quickdraw_tf.__version__}
  hparams = sketch_rnn.make_hparams(config.model != "sketch_rnn_uncond", **options)  # Before the run dir changes.
  run_dir.start(model_dir, run)
  keras.mixed_precision.set_global_policy(distribute.precision_policy(config.mixed_precision, strategy_obj))
  with strategy_obj.scope():
    model = models.build(config.model, len(class_names), **options)
    model.compile(keras.optimizers.Adam(learning_rate(config, hparams), clipvalue=config.clip_norm or None),
                  jit_compile=config.jit_compile)
  make = lambda split, **kw: sketch_rnn_data.make_dataset(  # pylint: disable=unnecessary-lambda-assignment
      records_dir, split, batch_size, options["max_seq_len"], options["scale_factor"], **kw)
  train_data = make("train", training=True, seed=seed, random_scale_factor=hparams.random_scale_factor,
                    augment_stroke_prob=hparams.augment_stroke_prob)
  eval_data = make("eval") if counts.get("eval", {}).get("kept") else None
  if eval_data is not None and config.eval_steps:
    eval_data = eval_data.take(config.eval_steps)
  steps = config.steps_per_epoch or max(1, counts["train"]["kept"] // batch_size)
  verbose, bars = progress.fit_output(config.progress, config.verbose, batch_size)
  callbacks = [*bars, *_callbacks(config, callbacks, eval_data)]
  history = model.fit(train_data, epochs=config.epochs, steps_per_epoch=steps, validation_data=eval_data,
                      callbacks=callbacks, verbose=verbose,
                      shuffle=False)  # The tf.data pipeline shuffles; fit warns that it ignores shuffle=True.
  run_dir.save_weights(model, os.path.join(model_dir, run_dir.FINAL_WEIGHTS))
  if config.export:
    from quickdraw_tf.serving import sketch_rnn_export  # pylint: disable=g-import-not-at-top
    best = os.path.join(model_dir, run_dir.BEST_WEIGHTS)
    if os.path.exists(best):
      model.load_weights(best)
    sketch_rnn_export.export(model, os.path.join(model_dir, run_dir.SAVED_MODEL))
  return history
