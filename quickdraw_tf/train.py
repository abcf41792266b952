r"""python -m quickdraw_tf.train --model=NAME: train a sketch classifier on records.

  python -m quickdraw_tf.train --model=fusion
  python -m quickdraw_tf.train --flagfile=configs/rnn.cfg --records=tfrecords/quickdraw --epochs=5

Each model's defaults (table 1 of the reference report, the tutorial's for
``rnn``) live in ``configs/<model>.cfg`` and are read automatically; flags on
the command line override them. Writes into ``--model_dir``:
  config.json            model, classes, options: what evaluate/export rebuild; and under
                         "training" every setting it trained with (train_config.record)
  backup/                state for resuming an interrupted run with the same flags
                         (every --checkpoint_steps steps and every epoch)
  checkpoints/           weights after every epoch
  best.weights.h5        the weights with the best eval accuracy so far
  final.weights.h5       the weights at the end
  logs/                  TensorBoard: losses, accuracy, top-3, learning rate,
                         examples/s, sample drawings, confusion matrices
  saved_model/           the serving SavedModel of the best weights (see serving/saved_model.py)
Under MultiWorkerMirroredStrategy only the chief writes these; other workers
write theirs into a local temporary directory (see `multi_worker.worker_dir`).
"""

import importlib
import os
import time

from absl import app
from absl import flags
from absl import logging
import keras
import numpy as np
import tensorflow as tf

import quickdraw_tf
from quickdraw_tf import cli
from quickdraw_tf import models
from quickdraw_tf import progress
from quickdraw_tf.pipelines import data
from quickdraw_tf.pipelines import records
from quickdraw_tf.serving import saved_model
from quickdraw_tf.training import distribute
from quickdraw_tf.training import multi_worker
from quickdraw_tf.training import optimizer as optimizer_lib
from quickdraw_tf.training import run_dir
from quickdraw_tf.training import summaries
from quickdraw_tf.training import train_config


def define_flags():
  """train's flags: where it reads and writes, and every training setting (generated from `train_config`)."""
  flags.DEFINE_string("model", None, f"One of: {', '.join(models.MODELS)}.")
  cli.define_records(data.default_records_dir())
  cli.define_model_dir("Output directory (default runs/<model>).")
  train_config.define_flags()
  cli.define_progress()


FLAGS = flags.FLAGS


class TrainError(cli.Error):
  """A problem the user can act on."""


class TimeBudget(keras.callbacks.Callback):
  """Stops training once ``seconds`` of training have passed (benchmarks give every model the same budget).

  ``clock`` "wall" counts wall-clock time, "cpu" the CPU time of this process
  over all its threads, which other work on the machine does not inflate. A
  resumed run counts what its backup had spent (`backup.BackupAndRestore`).
  """

  def __init__(self, seconds, clock="wall"):
    super().__init__()
    self.seconds = seconds
    self.clock = time.process_time if clock == "cpu" else time.time
    self.clock_name = "CPU" if clock == "cpu" else "wall"
    self.started = None
    self.spent_before = 0.0  # By earlier processes of this run, up to the backup it resumed from.

  def on_train_begin(self, logs=None):
    if self.started is None:  # One budget for all of train's stages (fits).
      self.started = self.clock()

  def spent(self):
    """Seconds of the budget spent so far, by this process and the ones before it."""
    return self.spent_before + (self.clock() - self.started if self.started is not None else 0.0)

  def backup_state(self):
    return {"spent": self.spent()}

  def restore_backup_state(self, state):
    self.spent_before = float(state.get("spent", 0.0))
    progress.write(f"train: {self.spent_before:.0f} of the {self.seconds:g} {self.clock_name} seconds of --time_budget "
                   "were spent before this resumption")

  def on_train_batch_end(self, batch, logs=None):
    if self.spent() >= self.seconds:
      self.model.stop_training = True
      step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
      progress.write(f"train: time budget of {self.seconds:g} {self.clock_name} seconds spent at step {step}")


class Summaries(summaries.EpochSummaries):
  """Learning rate, examples/s, sample drawings and a confusion matrix in TensorBoard."""

  def __init__(self, log_dir, eval_batches, class_names, batch_size):
    super().__init__(log_dir, batch_size)
    self.eval_batches = eval_batches
    self.class_names = class_names

  def train_scalars(self):
    return {"learning_rate": float(keras.ops.convert_to_numpy(self.model.optimizer.learning_rate))}

  def write_validation(self, epoch):
    labels, predictions, images, titles = [], [], [], []
    for features, label in self.eval_batches:
      predicted = np.argmax(self.model(features, training=False), axis=1)
      labels.append(label.numpy())
      predictions.append(predicted)
      if len(images) < 16:
        pictures = features["image"].numpy() if "image" in features else _ink_pictures(features)
        for picture, true, pred in zip(pictures, label.numpy(), predicted):
          images.append(picture)
          titles.append(f"{self.class_names[true][:7]}/{self.class_names[pred][:7]}")
    labels, predictions = np.concatenate(labels), np.concatenate(predictions)
    matrix = tf.math.confusion_matrix(labels, predictions, num_classes=len(self.class_names)).numpy()
    tf.summary.image("confusion_matrix", summaries.confusion_image(matrix, self.class_names)[None])
    tf.summary.image("drawings (true/predicted)", summaries.drawing_grid(images[:16], titles[:16])[None])


def _ink_pictures(features):
  """Sequence models see no image: rasterise their ink for the picture."""
  from quickdraw_tf.drawings import ink as ink_lib  # pylint: disable=g-import-not-at-top
  from quickdraw_tf.drawings import raster  # pylint: disable=g-import-not-at-top
  ink = features["ink"][..., :3] if features["ink"].shape[-1] == 3 else tf.concat(
      [features["ink"][..., :2], features["ink"][..., 3:4]], -1)  # stroke-5 -> stroke-3
  length = features["ink_length"]
  batch = tf.shape(ink)[0]
  points, lengths = ink_lib.decode_tf(ink, tf.tile([[0.0, 0.0, 1.0, 1.0]], [batch, 1]), tf.zeros([batch, 3]), length)
  return raster.rasterize(points, lengths).numpy()


def train(config):
  """Trains one model as ``config`` (a `train_config.TrainConfig`) says; see the module docstring for what lands
  in ``config.model_dir``. Leaves Keras' global dtype policy as it found it.

  Returns:
    the Keras ``History`` of this run.
  """
  policy = keras.mixed_precision.global_policy()
  try:
    try:
      spec = models.get(config.model)
      models.check_options(config.model, config.model_options)
    except ValueError as e:
      raise TrainError(str(e)) from None
    if spec.trainer:  # A generative model trains its own way (its module's train), with these callbacks.
      budget = [TimeBudget(config.time_budget, config.budget_clock)] if config.time_budget else []
      try:
        return importlib.import_module(spec.trainer).train(config, callbacks=budget)
      except ValueError as e:  # Its records or options: one line.
        raise TrainError(str(e)) from None
    return _train_classifier(config, spec)
  finally:
    keras.mixed_precision.set_global_policy(policy)


def _train_classifier(config, spec):
  """`train` for a classifier: the run directory, the model, its data and callbacks, the stages, the export."""
  strategy = distribute.make_strategy(config.strategy, config.tpu)  # First: before any TensorFlow op runs.
  size = (config.image_size or spec.image_size) if spec.uses_image else None
  # Non-chief workers write into a directory of their own (tf.distribute's recipe).
  out_dir = config.model_dir if distribute.is_chief(strategy) else multi_worker.worker_dir(config.model_dir, strategy)
  class_names, steps, run = _check_run(config, spec, size)
  keras.mixed_precision.set_global_policy(distribute.precision_policy(config.mixed_precision, strategy))
  with strategy.scope():
    try:
      model = models.build(config.model, len(class_names), image_size=size, **config.model_options)
    except ValueError as e:  # An option's value (its key was checked): one line, and no run directory written.
      raise TrainError(f"--model_option: {e}") from None
  run_dir.start(out_dir, run)
  # With GPUs or TPUs the replicas rasterise ink (data.rasterise_in_step): a host's cores rasterising could
  # not keep them fed (BENCHMARKS.md, "Where image models' images come from").
  raster_on_replicas = spec.uses_image and data.has_accelerators(strategy)
  if raster_on_replicas:
    data.rasterise_in_step(model, spec, size)
  train_data, eval_data = _datasets(config, spec, size, raster_on_replicas)
  replica_inputs = lambda features: data.replica_inputs(spec, features, size)  # pylint: disable=unnecessary-lambda-assignment
  callbacks = _callbacks(config, out_dir, eval_data, class_names, replica_inputs)
  stages = spec.stages(config.model_options, config.epochs, config.head_epochs) if spec.stages else [
      models.Stage(config.epochs)]
  history = _fit_stages(model, config, stages, strategy, (train_data, eval_data, steps), callbacks,
                        os.path.join(out_dir, run_dir.BACKUP_DIR), replica_inputs)
  run_dir.save_weights(model, os.path.join(out_dir, run_dir.FINAL_WEIGHTS))
  if config.export:
    best = os.path.join(out_dir, run_dir.BEST_WEIGHTS)
    if os.path.exists(best):  # Serve the weights evaluate picks by default: the best by eval accuracy.
      model.load_weights(best)
    saved_model.export(model, spec, class_names, os.path.join(out_dir, run_dir.SAVED_MODEL), size)
  return history


def _check_run(config, spec, size):
  """Checks the records and the run directory; returns (class names, steps an epoch, the run's config.json dict)."""
  data.image_source_for(config.records, spec, config.image_source)
  class_names = records.read_classes(config.records)
  stats = records.read_stats(config.records)
  keras.utils.set_random_seed(config.seed)
  run = {"model": config.model, "classes": class_names, "image_size": size or 0,
         "model_options": dict(config.model_options), "records": cli.absolute_path(config.records),
         "training": config.record(), "version": quickdraw_tf.__version__}
  run_dir.check_compatible(config.model_dir, run)  # A worker's out_dir is its own; the run is model_dir.
  return class_names, config.steps_per_epoch or max(1, stats["totals"]["train"] // config.batch_size), run


def _datasets(config, spec, size, raster_on_replicas):
  """(training dataset, eval dataset or None) of global batches.

  Keras distributes a plain dataset itself (tf.data shards it by file across
  workers); its fit does not take a DistributedDataset.
  """
  common = dict(image_size=size, image_source=config.image_source, raster_on_replicas=raster_on_replicas)
  train_data = data.make_dataset(config.records, "train", spec, config.batch_size, training=True, seed=config.seed,
                                 augment=config.augment, **common)
  if not records.shard_paths(config.records, "eval"):
    return train_data, None
  # In a fixed order: with --eval_steps every worker (and every run) evaluates the same batches.
  eval_data = data.make_dataset(config.records, "eval", spec, config.batch_size, deterministic=True, **common)
  return train_data, eval_data.take(config.eval_steps) if config.eval_steps else eval_data


def _callbacks(config, out_dir, eval_data, class_names, replica_inputs):
  """Backups, checkpoints, TensorBoard and summaries; the schedule, early stop and time budget as configured."""
  carried = []  # Their state goes into the backups: a resumed run goes on as if never stopped.
  if eval_data is not None:
    carried += [
        run_dir.best_checkpoint(out_dir, "val_accuracy", "max"),
        Summaries(os.path.join(out_dir, run_dir.LOGS_DIR), eval_data.take(4).map(lambda f, label: (replica_inputs(f), label)), class_names,
                  config.batch_size),
    ]
  if config.lr_factor < 1 and (eval_data is not None or config.lr_monitor == "train_loss"):
    carried.append(keras.callbacks.ReduceLROnPlateau(train_config.LR_MONITORS[config.lr_monitor],
                                                     factor=config.lr_factor, patience=config.lr_patience))
  if config.stop_patience and eval_data is not None:
    carried.append(keras.callbacks.EarlyStopping("val_accuracy", patience=config.stop_patience, mode="max"))
  if config.time_budget:
    carried.append(TimeBudget(config.time_budget, config.budget_clock))
  return run_dir.training_callbacks(out_dir, config.checkpoint_steps, carried, config.profile_batch)


def _fit_stages(model, config, stages, strategy, data_and_steps, callbacks, backup_dir, replica_inputs):
  """Fits the model through ``stages`` (`models.Stage`: one, unless a spec says otherwise, as vgg19's does).

  Each stage sets what trains and compiles a fresh optimizer for those weights
  at its share of the learning rate; a resumed run skips the stages its backup
  is past (BackupAndRestore sets the epoch). ``data_and_steps``: (training
  dataset, eval dataset or None, steps an epoch).
  """
  train_data, eval_data, steps = data_and_steps
  verbose, bars = progress.fit_output(config.progress, config.verbose, config.batch_size)
  callbacks = [*bars, *callbacks]  # The bar first: an epoch's line is out before other callbacks print.
  first_epoch, history = 0, None
  for stage in stages:
    stage.prepare(model)
    with strategy.scope():
      optimizer = optimizer_lib.adam(config.learning_rate * stage.learning_rate_scale, config.weight_decay,
                                     config.l2_decay, config.clip_norm)
      model.compile(optimizer, keras.losses.SparseCategoricalCrossentropy(from_logits=True),
                    metrics=[keras.metrics.SparseCategoricalAccuracy(name="accuracy"),
                             keras.metrics.SparseTopKCategoricalAccuracy(3, name="top3_accuracy")],
                    jit_compile=config.jit_compile)
    if isinstance(strategy, tf.distribute.MultiWorkerMirroredStrategy):
      history = multi_worker.fit(model, strategy, train_data, eval_data, first_epoch, stage.last_epoch, steps,
                                  config.batch_size, callbacks, backup_dir, replica_inputs)
    else:
      history = model.fit(train_data, initial_epoch=first_epoch, epochs=stage.last_epoch, steps_per_epoch=steps,
                          validation_data=eval_data, callbacks=callbacks, verbose=verbose,
                          shuffle=False)  # The tf.data pipeline shuffles; fit warns that it ignores shuffle=True.
    if model.stop_training:  # --time_budget spent.
      break
    first_epoch = stage.last_epoch
  return history


def main(_):
  """Trains ``--model`` as the flags (over configs/<model>.cfg) say."""
  if not FLAGS.model:
    raise app.UsageError(f"--model is required; one of: {', '.join(models.MODELS)}")
  try:
    models.get(FLAGS.model)
  except ValueError as e:
    raise TrainError(str(e)) from None
  train_config.apply_defaults(FLAGS.model, FLAGS)  # The model's published defaults, beneath the command line.
  train(train_config.from_flags(FLAGS))
  logging.info("done")


if __name__ == "__main__":
  cli.run(define_flags, main)
