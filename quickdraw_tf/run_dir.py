"""A training run's directory: its layout, its config, the model it holds, and whether a run may continue in it.

  config.json        what train recorded (`read_config`): model, classes, image
                     size, model options, records, and every training setting
  best.weights.h5    the best weights by eval accuracy; final.weights.h5 the last
  saved_model/       the serving SavedModel (export.py writes it)
  backup/ checkpoints/ logs/   train's (see train.py)

``config.json`` records what a run's weights depend on; a later run in the same
directory (to resume or extend it) must agree, and is checked before it writes
anything there, so that a mistaken ``--model_dir`` leaves the run it names as
it was.
"""

import json
import os

from quickdraw_tf import cli
from quickdraw_tf import models

CONFIG_FILE = "config.json"
BEST_WEIGHTS = "best.weights.h5"
FINAL_WEIGHTS = "final.weights.h5"
SAVED_MODEL = "saved_model"
# What a run directory's weights depend on: a run may continue only with the same.
COMPATIBILITY_KEYS = ("model", "classes", "image_size", "model_options")


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
      previous = json.load(f)
    differences = [key for key in COMPATIBILITY_KEYS if previous.get(key) != config[key]]
  except (OSError, ValueError, AttributeError) as e:
    raise IncompatibleRun(f"{path} cannot be read ({e}): use another --model_dir") from None
  if differences:
    details = "; ".join(_difference(key, previous.get(key), config[key]) for key in differences)
    raise IncompatibleRun(f"{model_dir} holds another run ({details}): use another --model_dir, or the same "
                          "model, records and options to continue that run")


def _difference(key, before, now):
  if key == "classes" and isinstance(before, list):
    return (f"it was trained on {len(before)} classes, the records have {len(now)}"
            f"{' (different ones)' if len(before) == len(now) else ''}")
  return f"{key} {before!r} there, {now!r} now"


def read_config(model_dir):
  path = os.path.join(model_dir, CONFIG_FILE)
  if not os.path.exists(path):
    raise FileNotFoundError(f"{model_dir} holds no {CONFIG_FILE}: is it a model_dir written by "
                            "python -m quickdraw_tf.train?")
  with open(path, encoding="utf-8") as f:
    return json.load(f)


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
  model.load_weights(weights)
  return model, config


def image_size(config):
  """The image side the run's model reads (int), or None for a model that reads ink only."""
  return config.get("image_size") or None
