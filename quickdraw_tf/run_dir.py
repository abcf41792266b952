"""A training run's directory: whether a run may continue in it.

``config.json`` records what a run's weights depend on; a later run in the same
directory (to resume or extend it) must agree, and is checked before it writes
anything there, so that a mistaken ``--model_dir`` leaves the run it names as
it was.
"""

import json
import os

from quickdraw_tf import cli

CONFIG_FILE = "config.json"
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
