"""Backups of a training run that a kill at any instant leaves loadable.

Keras' `BackupAndRestore` writes ``latest.weights.h5`` and then
``training_metadata.json`` in place: a kill while either is being written
leaves a truncated file that can never be loaded, and a kill between the two
pairs new weights with an old epoch. Here the epoch and batch are attributes
of the weights file itself, which is written aside and renamed over the old
one: a reader sees the previous backup or the new one, whole.

So is the state of the callbacks that decide when training stops or slows
(``carried``): the best eval accuracy and patience counters of
ModelCheckpoint(save_best_only), EarlyStopping and ReduceLROnPlateau, the
time budget spent. Keras resets them at every ``fit``; restored, a resumed run
stops, saves its best weights and lowers its rate as the uninterrupted run
would have. (The learning rate itself is an optimizer variable, in the weights.)
"""

import json
import os

import h5py
import keras

from quickdraw_tf import cli

STATE_ATTR = "quickdraw_tf_training_state"  # JSON {"epoch", "batch", "callbacks"} on the weights file
PARTIAL_WEIGHTS = "partial.weights.h5"  # written here first (Keras wants the .weights.h5 ending)


class BackupError(cli.Error):
  """A backup that cannot be restored; the message names the file and the way out."""


def _unreadable(path, error):
  backup_dir = os.path.dirname(path)
  return BackupError(f"the backup file {path} cannot be read ({type(error).__name__}: {error}); to start this run "
                     f"again from its first step remove {backup_dir} (per-epoch weights stay in "
                     f"{os.path.join(os.path.dirname(backup_dir), 'checkpoints')}), or use another --model_dir")


# The attributes a Keras callback needs to act after a resumption as it would have without one.
KERAS_CALLBACK_STATE = ((keras.callbacks.EarlyStopping, ("wait", "best", "best_epoch")),
                        (keras.callbacks.ReduceLROnPlateau, ("wait", "best", "cooldown_counter")),
                        (keras.callbacks.ModelCheckpoint, ("best",)))


def callback_state(callback):
  """The JSON-able state ``callback`` carries over a resumption: its ``backup_state()``, the attributes
  `KERAS_CALLBACK_STATE` names, or None."""
  if hasattr(callback, "backup_state"):
    return callback.backup_state()
  for kind, names in KERAS_CALLBACK_STATE:
    if isinstance(callback, kind):
      return {name: _plain(getattr(callback, name, None)) for name in names}
  return None


def restore_callback_state(callback, state):
  """Puts a `callback_state` back: through ``restore_backup_state(state)``, or attribute by attribute."""
  if hasattr(callback, "restore_backup_state"):
    callback.restore_backup_state(state)
  else:
    for name, value in state.items():
      setattr(callback, name, value)


def _plain(value):
  """A number as JSON writes it (numpy and tensor scalars to float or int); None as it is."""
  if value is None or isinstance(value, (bool, int)):
    return value
  return float(value)


def read_state(backup_dir):
  """(epoch, batch) of the backup in ``backup_dir``; (-1, -1) when there is none.

  Raises:
    BackupError: a backup is there but cannot be read.
  """
  state = _read_json_state(backup_dir)
  if state is None:
    return -1, -1
  return state["epoch"], state["batch"]


def read_carried_state(backup_dir, kind):
  """The backed-up state of the carried callback of class name ``kind`` (e.g. "TimeBudget"), or None."""
  state = _read_json_state(backup_dir) or {}
  return next((value for key, value in state.get("callbacks", {}).items() if key.split(":")[1] == kind), None)


def _numbers_by_callback(carried):
  """Whether ``carried`` is {key: None or {name: number or None}}, as `BackupAndRestore` writes it."""
  return isinstance(carried, dict) and all(
      state is None or (isinstance(state, dict) and all(
          value is None or (isinstance(value, (int, float)) and not isinstance(value, bool))
          for value in state.values())) for state in carried.values())


def _read_json_state(backup_dir):
  """The backup's state dict, or None when there is no backup; BackupError when it cannot be read."""
  path = os.path.join(backup_dir, "latest.weights.h5")
  if not os.path.exists(path):
    return None
  try:
    with h5py.File(path, "r") as f:
      state = f.attrs.get(STATE_ATTR)
    if state is None:  # Written by Keras' own callback: its metadata file beside.
      path = os.path.join(backup_dir, "training_metadata.json")
      with open(path, encoding="utf-8") as f:
        state = f.read()
    state = json.loads(state)
    state["epoch"], state["batch"] = int(state["epoch"]), int(state.get("batch", 0))
    carried = state.setdefault("callbacks", {})
    if not _numbers_by_callback(carried):
      raise TypeError(f"its callbacks' state is not numbers by callback: {json.dumps(carried)[:80]}")
    return state
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise _unreadable(path, e) from None


class BackupAndRestore(keras.callbacks.BackupAndRestore):
  """`keras.callbacks.BackupAndRestore` with atomic backups and the state of ``carried`` callbacks.

  Place it after the ``carried`` callbacks in the callback list: it then
  restores their state after their own ``on_train_begin`` has reset it, and
  backs it up after their ``on_epoch_end`` has updated it. Their state is
  restored once, on resuming; a later ``fit`` of the same run (a new
  training stage) starts them afresh, as Keras does.
  """

  def __init__(self, backup_dir, save_freq="epoch", carried=()):
    super().__init__(backup_dir, save_freq=save_freq, delete_checkpoint=False)
    self.carried = {f"{i}:{type(c).__name__}": c for i, c in enumerate(carried) if callback_state(c) is not None}
    self._fitted_before = False  # Whether on_train_begin has run in this process (a training stage before).

  def _save_model(self):
    os.makedirs(self.backup_dir, exist_ok=True)
    partial = os.path.join(self.backup_dir, PARTIAL_WEIGHTS)
    self.model.save_weights(partial, overwrite=True)
    state = json.dumps({"epoch": self._current_epoch, "batch": self._last_batch_seen,
                        "callbacks": {key: callback_state(c) for key, c in self.carried.items()}})
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
    state = _read_json_state(self.backup_dir)
    resuming, self._fitted_before = not self._fitted_before, True
    if state is None:
      return
    if self.model.optimizer is not None and not self.model.optimizer.built:
      self.model.optimizer.build(self.model.trainable_variables)
    try:
      self.model.load_weights(self._weights_path)
    except (OSError, ValueError) as e:
      raise _unreadable(self._weights_path, e) from None
    self.model._initial_epoch = state["epoch"]  # pylint: disable=protected-access  # As Keras' callback sets it.
    for key, saved in state.get("callbacks", {}).items() if resuming else ():
      if key in self.carried and saved is not None:
        restore_callback_state(self.carried[key], saved)
