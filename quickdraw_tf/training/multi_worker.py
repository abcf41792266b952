"""Training under MultiWorkerMirroredStrategy: Keras 3's fit cannot, so `fit` runs the same callbacks in a loop.

``train`` calls `fit` in place of ``model.fit`` when the strategy is
MultiWorkerMirroredStrategy (`distribute.make_strategy`), and writes a
non-chief worker's outputs into `worker_dir`.
"""

import hashlib
import os
import tempfile

import keras
import numpy as np
import tensorflow as tf

from quickdraw_tf import cli
from quickdraw_tf import progress
from quickdraw_tf.training import backup

WORKERS_DIR = "quickdraw_tf_workers"  # under the temporary directory: non-chief workers' outputs


class WorkersDisagree(cli.Error):
  """The workers would resume from different backups; the message says which to remove."""


def worker_dir(model_dir, strategy):
  """Where a non-chief worker writes: a local directory, the same after a restart.

  tf.distribute's recipe: every worker saves (saving may need all of them),
  non-chief workers into a throwaway place. Keeping that place fixed per
  model_dir and task lets a restarted worker restore the backup it wrote in
  step with the chief.
  """
  resolver = strategy.cluster_resolver
  key = hashlib.sha1(f"{cli.absolute_path(model_dir)}:{resolver.task_type}:{resolver.task_id}".encode()).hexdigest()
  return os.path.join(tempfile.gettempdir(), WORKERS_DIR, key[:16])


def check_workers_agree(strategy, backup_dir):
  """Raises WorkersDisagree on every worker unless all are about to restore the same state.

  A worker that would restore another backup than the chief's (a stale one
  left by an earlier run) would train out of step; checked before restoring,
  since restoring itself runs collective ops that must match across workers.
  """
  state = tf.constant(backup.read_state(backup_dir), tf.float64)

  @tf.function
  def moments():
    # Each replica's (state, state^2, 1), summed over all replicas of all workers.
    return strategy.reduce("SUM", strategy.run(lambda: tf.concat([state, state * state, [1.0]], 0)), axis=None)

  sums = moments().numpy()
  count = sums[-1]
  if np.any(sums[2:4] * count != sums[:2] * sums[:2]):  # Zero variance <=> the same state everywhere.
    epoch, batch = backup.read_state(backup_dir)
    raise WorkersDisagree(f"the workers would restore different training states (this one: "
                     f"{'no backup' if epoch < 0 else f'epoch {epoch}, batch {batch}'} in {backup_dir}): a stale "
                     "backup is left from an earlier run: remove the chief's <model_dir>/backup and the workers' "
                     f"under {os.path.join(tempfile.gettempdir(), WORKERS_DIR)}, or use a new --model_dir")


def _batch_sums(labels, logits):
  """Summed loss, top-1 and top-3 hits of a batch: float32 scalars."""
  logits = tf.cast(logits, tf.float32)
  labels = tf.cast(labels, tf.int32)
  losses = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)(labels, logits)
  hits = [tf.reduce_sum(tf.cast(tf.math.in_top_k(labels, logits, k), tf.float32)) for k in (1, 3)]
  return tf.reduce_sum(losses), hits[0], hits[1]


def _mean_logs(sums, count, prefix=""):
  """Keras-style logs from (loss, top-1, top-3) sums over ``count`` examples."""
  return {f"{prefix}loss": sums[0] / count, f"{prefix}accuracy": sums[1] / count,
          f"{prefix}top3_accuracy": sums[2] / count}


def _multi_worker_steps(model, strategy, inputs, global_batch_size):
  """(train_step(iterator), eval_step(features, labels)): tf.functions returning (loss, top-1, top-3) sums.

  The train step's sums are all-reduced over every replica of every worker.
  """
  optimizer = model.optimizer

  @tf.function
  def train_step(iterator):

    def replica_step(features, labels):
      with tf.GradientTape() as tape:
        logits = model(inputs(features), training=True)
        loss_sum, top1, top3 = _batch_sums(labels, logits)
        loss = loss_sum / global_batch_size
        if model.losses:
          loss += tf.nn.scale_regularization_loss(tf.add_n(model.losses))
      gradients = tape.gradient(optimizer.scale_loss(loss), model.trainable_variables)
      optimizer.apply_gradients(zip(gradients, model.trainable_variables))
      return loss_sum, top1, top3

    return [strategy.reduce("SUM", value, axis=None) for value in strategy.run(replica_step, args=next(iterator))]

  @tf.function
  def eval_step(features, labels):
    return (*_batch_sums(labels, model(inputs(features), training=False)), tf.cast(tf.shape(labels)[0], tf.float32))

  return train_step, eval_step


def fit(model, strategy, train_data, eval_data, initial_epoch, epochs, steps, global_batch_size, callbacks,
        backup_dir, inputs):
  """``model.fit`` for MultiWorkerMirroredStrategy, with the same callbacks.

  Keras 3's fit cannot run under this strategy: it averages each step's
  scalar logs across workers along an axis they lack
  (tensorflow/tensorflow#72388). Here the optimizer all-reduces gradients as
  usual, the loss and hit counts are summed across replicas explicitly, and
  every worker evaluates the whole eval split locally after each epoch (its
  weights are the same on all workers), so that callbacks that act on eval
  metrics (best weights, ReduceLROnPlateau) act alike everywhere. The Keras
  callbacks (backup and restore, checkpoints, TensorBoard, summaries) run
  unchanged.

  ``inputs`` maps a batch's features to the model's inputs, on the replica
  (`data.replica_inputs`).

  Returns:
    the ``keras.callbacks.History`` of the run.
  """
  train_step, eval_step = _multi_worker_steps(model, strategy, inputs, global_batch_size)

  callback_list = keras.callbacks.CallbackList(callbacks, add_history=True, model=model, epochs=epochs,
                                               steps=steps)
  iterator = iter(strategy.experimental_distribute_dataset(train_data))
  with strategy.scope():  # As in fit: callbacks may create variables (a restored optimizer's).
    model.stop_training = False
    model._initial_epoch = initial_epoch  # pylint: disable=protected-access  # As fit sets it.
    check_workers_agree(strategy, backup_dir)
    callback_list.on_train_begin()
    for epoch in range(model._initial_epoch, epochs):  # pylint: disable=protected-access  # BackupAndRestore may move it.
      callback_list.on_epoch_begin(epoch)
      sums, step = np.zeros(3), 0
      for step in range(steps):
        callback_list.on_train_batch_begin(step)
        batch_sums_value = np.array([float(v) for v in train_step(iterator)])
        sums += batch_sums_value
        callback_list.on_train_batch_end(step, _mean_logs(batch_sums_value, global_batch_size))
        if model.stop_training:
          break
      logs = _mean_logs(sums, (step + 1) * global_batch_size)
      if eval_data is not None:
        eval_sums = np.sum([[float(v) for v in eval_step(*batch)] for batch in eval_data], axis=0)
        logs.update(_mean_logs(eval_sums[:3], eval_sums[3], prefix="val_"))
      callback_list.on_epoch_end(epoch, logs)
      progress.write(f"epoch {epoch + 1}/{epochs}: " + ", ".join(f"{k} {v:.4f}" for k, v in logs.items()))
      if model.stop_training:
        break
    callback_list.on_train_end()
  return model.history
