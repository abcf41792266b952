"""A model's published training defaults, and the resolved training config a run records.

``configs/<model>.cfg`` (at the repository's top level, the one source; the
package carries the same files, ``quickdraw_tf/configs`` being a link to them
in a checkout and a copy in a wheel) holds ``--flag=value`` lines: table 1 of
the reference report, or the tutorial's settings for ``rnn``. ``train`` reads
the model's file strictly (a missing file, a line that is not a flag, or a flag
``train`` does not have is an error) and lets the command line override it.
What the run then trains with, every value, is written into its
``config.json`` under ``"training"`` (`record`).
"""

import dataclasses
import importlib.resources

from absl import flags

from quickdraw_tf import cli

# train's arguments that say where, not how: not part of the recorded training config.
NOT_RECORDED = ("model_name", "records_dir", "model_dir", "verbose", "export", "profile_batch", "callbacks")


def config_path(model):
  """The packaged ``configs/<model>.cfg`` (a `pathlib.Path`-like Traversable)."""
  return importlib.resources.files("quickdraw_tf") / "configs" / f"{model}.cfg"


def read_defaults(model):
  """The flags of ``configs/<model>.cfg``: list of (line number, flag name, value string).

  Raises:
    cli.Error: the file is missing or unreadable, or a line is neither a
      comment, blank, nor ``--name=value``.
  """
  path = config_path(model)
  try:
    text = path.read_text(encoding="utf-8")
  except (OSError, UnicodeDecodeError) as e:
    raise cli.Error(f"cannot read the training config of model {model!r} at {path} ({e}): the package is "
                    "incomplete; reinstall it (pip install .)") from None
  defaults = []
  for number, line in enumerate(text.splitlines(), 1):
    line = line.strip()
    if not line or line.startswith("#"):
      continue
    name, sep, value = line[2:].partition("=")
    if not line.startswith("--") or not sep or not name:
      raise cli.Error(f"{path}:{number}: not a --flag=value line: {line!r}")
    defaults.append((number, name, value))
  return defaults


def apply_defaults(model, flag_values, valid_names):
  """Sets each flag of the model's config that the command line did not set.

  Args:
    model: a model name.
    flag_values: the parsed ``absl.flags.FlagValues``.
    valid_names: the flags a config file may set (train's own).

  Raises:
    cli.Error: as `read_defaults`, or a flag outside ``valid_names`` (the
      message lists them) or a value the flag refuses.
  """
  path = config_path(model)
  for number, name, value in read_defaults(model):
    if name not in valid_names:
      raise cli.Error(f"{path}:{number}: unknown flag --{name}; valid: {', '.join(sorted(valid_names))}")
    if not flag_values[name].present:
      try:
        flag_values[name].parse(value)
      except flags.Error as e:  # A value the flag refuses (absl's IllegalFlagValueError).
        raise cli.Error(f"{path}:{number}: {e}") from None


def record(train_args):
  """The JSON-able training config of a run: ``train``'s arguments but where it reads and writes.

  Args:
    train_args: dict of ``train``'s arguments; ``augment`` may be an
      `augment.Ranges` (recorded as its fields) or None.
  """
  recorded = {k: v for k, v in train_args.items() if k not in NOT_RECORDED}
  if dataclasses.is_dataclass(recorded.get("augment")):
    recorded["augment"] = dataclasses.asdict(recorded["augment"])
  return recorded
