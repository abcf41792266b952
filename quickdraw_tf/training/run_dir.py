"""A training run's directory: its layout, its config, the model it holds, and whether a run may continue in it.

  config.json        what train recorded (`read_config`): model, classes, image
                     size, model options, records, and every training setting
  best.weights.h5    the best weights by eval accuracy; final.weights.h5 the last
  saved_model/       the serving SavedModel (export.py writes it)
  backup/            the backup a killed run resumes from (backup.py)
  checkpoints/       the weights after every epoch
  *.partial.weights.h5  weights being written (`PublishWeights` renames them)
  logs/              TensorBoard: train/, validation/ (and visualize's)

``config.json`` records what a run's weights depend on; a later run in the same
directory (to resume or extend it) must agree, and is checked before it writes
anything there, so that a mistaken ``--model_dir`` leaves the run it names as
it was.
"""

import json
import os
import warnings

import keras

from quickdraw_tf import cli
from quickdraw_tf import models
from quickdraw_tf import progress
from quickdraw_tf.training import backup

CONFIG_FILE = "config.json"
BEST_WEIGHTS = "best.weights.h5"
FINAL_WEIGHTS = "final.weights.h5"
WEIGHTS_SUFFIX = ".weights.h5"  # Keras' save_weights requires it.
PARTIAL_SUFFIX = ".partial.weights.h5"
SAVED_MODEL = "saved_model"
BACKUP_DIR = "backup"
CHECKPOINTS_DIR = "checkpoints"
LOGS_DIR = "logs"
# What a run directory's weights depend on: a run may continue only with the same.
COMPATIBILITY_KEYS = ("model", "classes", "image_size", "model_options")


class WeightsError(cli.Error, ValueError):
  """A weights file that does not load into the model its run directory's config describes."""


class IncompatibleRun(cli.Error, ValueError):
  """``model_dir`` holds another run; the message says what differs and what to do."""


def check_compatible(model_dir, config):
  """Raises IncompatibleRun unless ``model_dir`` is new or holds a run of the same model, classes and options.

  Args:
    model_dir: the run directory.
    config: dict with at least `COMPATIBILITY_KEYS`, what the new run would record.
  """
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.exists(path):
    return
  try:
    with open(path, encoding="utf-8") as f:
      previous = as_recorded_now(json.load(f))
    differences = [key for key in COMPATIBILITY_KEYS if previous.get(key) != config[key]]
  except (OSError, ValueError, AttributeError) as e:
    raise IncompatibleRun(f"{path} cannot be read ({e}): use another --model_dir") from None
  if differences:
    details = "; ".join(_difference(key, previous.get(key), config[key]) for key in differences)
    raise IncompatibleRun(f"{model_dir} holds another run ({details}): use another --model_dir, or the same "
                          "model, records and options to continue that run")


def start(model_dir, run):
  """Writes ``run`` (the config dict) to a new run directory, or one that `check_compatible` allows to go on.

  A run that goes on with other training settings (``run["training"]``) keeps
  the earlier ones in config.json (`with_settings_history`) and says so.
  """
  check_compatible(model_dir, run)
  run = with_settings_history(model_dir, run)
  os.makedirs(os.path.join(model_dir, CHECKPOINTS_DIR), exist_ok=True)
  write_json(os.path.join(model_dir, CONFIG_FILE), run)  # Whole: half a config would block resuming the run.


def with_settings_history(model_dir, run):
  """``run`` (a config dict) with the training settings of the run it continues in ``model_dir``, if they differ.

  config.json's ``"training"`` holds the settings of the latest process;
  ``"training_history"`` lists the earlier ones, oldest first, each as
  ``{"training": {...}, "epochs_done": N}`` (N: the epochs whose checkpoints
  were there when the settings changed; an interrupted epoch runs again from
  its start, under the new ones). A change is announced on stdout, naming
  each setting with its old and new value.
  """
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.exists(path) or "training" not in run:
    return run
  with open(path, encoding="utf-8") as f:
    previous = json.load(f)
  history = list(previous.get("training_history", []))
  before = previous.get("training")
  if before is not None and before != run["training"]:
    history.append({"training": before, "epochs_done": _epochs_done(model_dir)})
    changed = sorted(set(before) | set(run["training"]))
    changes = "; ".join(f"{key} {before.get(key)!r} -> {run['training'].get(key)!r}" for key in changed
                        if before.get(key) != run["training"].get(key))
    progress.write(f"train: {model_dir} continues with other settings ({changes}); {CONFIG_FILE} keeps the "
                   "earlier ones under \"training_history\"")
  return {**run, "training_history": history} if history else run


def _epochs_done(model_dir):
  """The highest epoch number among ``checkpoints/epochNNN.weights.h5`` (0 when there is none)."""
  directory = os.path.join(model_dir, CHECKPOINTS_DIR)
  names = os.listdir(directory) if os.path.isdir(directory) else []
  numbers = [int(name[5:-len(WEIGHTS_SUFFIX)]) for name in names
             if name.startswith("epoch") and name.endswith(WEIGHTS_SUFFIX) and name[5:-len(WEIGHTS_SUFFIX)].isdigit()]
  return max(numbers, default=0)


def write_json(path, value):
  """Writes ``value`` as JSON aside, then renames it to ``path``: a kill leaves the previous file or none."""
  with open(path + ".partial", "w", encoding="utf-8") as f:
    json.dump(value, f, indent=1)
  os.replace(path + ".partial", path)


def partial_path(path):
  """Where a ``*.weights.h5`` file is written before it is renamed to ``path``: never half a file under its name."""
  return path.removesuffix(WEIGHTS_SUFFIX) + PARTIAL_SUFFIX


def save_weights(model, path):
  """``model.save_weights(path)``, written aside and renamed: a kill mid-write leaves the previous file whole."""
  model.save_weights(partial_path(path))
  os.replace(partial_path(path), path)


def best_checkpoint(model_dir, monitor, mode):
  """Keras' ModelCheckpoint of the best weights by ``monitor``, written to their `partial_path`: `PublishWeights`
  (in `training_callbacks`) renames them to best.weights.h5 once whole."""
  return keras.callbacks.ModelCheckpoint(partial_path(os.path.join(model_dir, BEST_WEIGHTS)), monitor=monitor,
                                         mode=mode, save_best_only=True, save_weights_only=True)


class PublishWeights(keras.callbacks.Callback):
  """Renames the weights Keras' ModelCheckpoints wrote to their `partial_path` in a run directory to their names.

  Keras writes a checkpoint in place, and a kill mid-write would leave a
  truncated best.weights.h5 that evaluate reads. Place it after the
  checkpoints. A run's start removes the partial files a killed run left,
  which could be half written.
  """

  def __init__(self, model_dir):
    super().__init__()
    self.dirs = (model_dir, os.path.join(model_dir, CHECKPOINTS_DIR))

  def _partials(self):
    return [os.path.join(d, name) for d in self.dirs if os.path.isdir(d) for name in sorted(os.listdir(d))
            if name.endswith(PARTIAL_SUFFIX)]

  def on_train_begin(self, logs=None):
    for path in self._partials():
      os.remove(path)

  def on_epoch_end(self, epoch, logs=None):
    for path in self._partials():
      os.replace(path, path.removesuffix(PARTIAL_SUFFIX) + WEIGHTS_SUFFIX)


def training_callbacks(model_dir, checkpoint_steps, carried=(), profile_batch=0):
  """The callbacks that fill a run directory, around ``carried``: a checkpoint per epoch, TensorBoard, backups.

  Weights, optimizer state (so the step counter and learning rate), epoch and
  the state of the ``carried`` callbacks (`backup.callback_state`) are
  backed up every ``checkpoint_steps`` steps and after every epoch (one
  callback cannot do both); both restore the same backup, and an interrupted
  epoch runs again from its first batch. Returns them in the order they must
  run: `PublishWeights` after the checkpoints (``carried`` may hold one),
  the backups after ``carried``, then `StartingStep`, which reads the
  restored step.
  """
  backup_dir = os.path.join(model_dir, BACKUP_DIR)
  every_epoch = partial_path(os.path.join(model_dir, CHECKPOINTS_DIR, "epoch{epoch:03d}.weights.h5"))
  return [
      keras.callbacks.ModelCheckpoint(every_epoch, save_weights_only=True),
      keras.callbacks.TensorBoard(os.path.join(model_dir, LOGS_DIR), profile_batch=profile_batch or 0),
      *carried,
      PublishWeights(model_dir),  # Not carried: it has no state, and the carried ones keep their backup keys.
      backup.BackupAndRestore(backup_dir, save_freq=checkpoint_steps, carried=carried),
      backup.BackupAndRestore(backup_dir, save_freq="epoch", carried=carried),
      StartingStep(),
  ]


class StartingStep(keras.callbacks.Callback):
  """Says where training starts: after BackupAndRestore, a resumed run starts past 0."""

  def on_train_begin(self, logs=None):
    step = int(keras.ops.convert_to_numpy(self.model.optimizer.iterations))
    progress.write(f"train: starting at step {step}, epoch {(self.model._initial_epoch or 0) + 1}")  # pylint: disable=protected-access


def _difference(key, before, now):
  if key == "classes" and isinstance(before, list):
    return (f"it was trained on {len(before)} classes, the records have {len(now)}"
            f"{' (different ones)' if len(before) == len(now) else ''}")
  return f"{key} {before!r} there, {now!r} now"


def read_config(model_dir):
  """The run's config.json as a dict (`as_recorded_now`); FileNotFoundError naming what to run without one."""
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{model_dir} holds no {CONFIG_FILE}: is it a model_dir written by "
                            "python -m quickdraw_tf.train?")
  with open(path, encoding="utf-8") as f:
    return as_recorded_now(json.load(f))


def as_recorded_now(config):
  """A config.json dict an earlier version wrote, as this version records the same run (the dict itself if new).

  Up to 0.1.0 resnet18 used its "small" stem under 112 px when no stem was
  given; the default is now "imagenet" at every size.
  """
  version = tuple(int(part) for part in str(config.get("version", "0")).split(".")[:2] if part.isdigit())
  options = config.get("model_options", {})
  if (version < (0, 2) and config.get("model") == "resnet18" and "stem" not in options
      and 0 < (config.get("image_size") or 0) < 112):
    return {**config, "model_options": {**options, "stem": "small"}}
  return config


def restore(model_dir, weights=None):
  """Rebuilds a trained model from its model_dir.

  Args:
    model_dir: written by train.
    weights: a weights file; default the best by eval accuracy, else the final.

  Returns:
    (keras.Model, config dict).
  """
  config = read_config(model_dir)
  model = models.build(config["model"], len(config["classes"]), image_size=image_size(config),
                       **config.get("model_options", {}))
  if weights is None:
    weights = next((os.path.join(model_dir, w) for w in (BEST_WEIGHTS, FINAL_WEIGHTS)
                    if os.path.exists(os.path.join(model_dir, w))), None)
    if weights is None:
      raise FileNotFoundError(f"{model_dir} holds neither {BEST_WEIGHTS} nor {FINAL_WEIGHTS}")
  try:
    with warnings.catch_warnings():  # Keras only warns where parts of the model keep their fresh weights.
      warnings.filterwarnings("error", r"Skipping (nested container|variable loading)", UserWarning)
      model.load_weights(weights)
  except (OSError, ValueError, UserWarning) as e:  # Keras' message can list every layer and weight: its start will do.
    reason = " ".join(str(e).split())[:240] or type(e).__name__
    raise WeightsError(f"{weights} cannot be loaded into the {config['model']} model that {model_dir}'s "
                       f"{CONFIG_FILE} describes ({reason}): a damaged file, or weights of another model; pass "
                       "another (--weights=checkpoints/epochNNN.weights.h5) or train again") from None
  return model, config


def image_size(config):
  """The image side the run's model reads (int), or None for a model that reads ink only."""
  return config.get("image_size") or None
