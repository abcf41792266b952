"""Backups of a training run that a kill at any instant leaves loadable.

Keras' `BackupAndRestore` writes ``latest.weights.h5`` and then
``training_metadata.json`` in place: a kill while either is being written
leaves a truncated file that can never be loaded, and a kill between the two
pairs new weights with an old epoch. Here the epoch and batch are attributes
of the weights file itself, which is written aside and renamed over the old
one: a reader sees the previous backup or the new one, whole.
"""

import json
import os

import h5py
import keras

from quickdraw_tf import cli

STATE_ATTR = "quickdraw_tf_training_state"  # JSON {"epoch", "batch"} on the weights file
PARTIAL_WEIGHTS = "partial.weights.h5"  # written here first (Keras wants the .weights.h5 ending)


class BackupError(cli.Error):
  """A backup that cannot be restored; the message names the file and the way out."""


def _unreadable(path, error):
  backup_dir = os.path.dirname(path)
  return BackupError(f"the backup file {path} cannot be read ({type(error).__name__}: {error}); to start this run "
                     f"again from its first step remove {backup_dir} (per-epoch weights stay in "
                     f"{os.path.join(os.path.dirname(backup_dir), 'checkpoints')}), or use another --model_dir")


def read_state(backup_dir):
  """(epoch, batch) of the backup in ``backup_dir``; (-1, -1) when there is none.

  Raises:
    BackupError: a backup is there but cannot be read.
  """
  path = os.path.join(backup_dir, "latest.weights.h5")
  if not os.path.exists(path):
    return -1, -1
  try:
    with h5py.File(path, "r") as f:
      state = f.attrs.get(STATE_ATTR)
    if state is None:  # Written by Keras' own callback: its metadata file beside.
      path = os.path.join(backup_dir, "training_metadata.json")
      with open(path, encoding="utf-8") as f:
        state = f.read()
    state = json.loads(state)
    return int(state["epoch"]), int(state.get("batch", 0))
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise _unreadable(path, e) from None


class BackupAndRestore(keras.callbacks.BackupAndRestore):
  """`keras.callbacks.BackupAndRestore` with atomic backups (see the module docstring)."""

  def __init__(self, backup_dir, save_freq="epoch"):
    super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=False)

  def _save_model(self):
    os.makedirs(self.backup_dir, exist_ok=True)
    partial = os.path.join(self.backup_dir, PARTIAL_WEIGHTS)
    self.model.save_weights(partial, overwrite=True)
    state = json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen})
    with h5py.File(partial, "a") as f:
      f.attrs[STATE_ATTR] = state
    with open(partial, "rb") as f:
      os.fsync(f.fileno())
    os.replace(partial, self._weights_path)
    # Keras' metadata file too, for tools that read it; restoring reads the weights file's own copy.
    partial_json = self._training_metadata_path + ".partial"
    with open(partial_json, "w", encoding="utf-8") as f:
      f.write(state)
    os.replace(partial_json, self._training_metadata_path)

  def _load_model(self):
    epoch, _ = read_state(self.backup_dir)
    if epoch < 0:
      return
    if self.model.optimizer is not None and not self.model.optimizer.built:
      self.model.optimizer.build(self.model.trainable_variables)
    try:
      self.model.load_weights(self._weights_path)
    except (OSError, ValueError) as e:
      raise _unreadable(self._weights_path, e) from None
    self.model._initial_epoch = epoch  # pylint: disable=protected-access  # As Keras' callback sets it.
