"""A model's published training defaults, and the resolved training config a run records.

``configs/<model>.cfg`` (at the repository's top level, the one source; the
package carries the same files, ``quickdraw_tf/configs`` being a link to them
in a checkout and a copy in a wheel) holds ``--flag=value`` lines: table 1 of
the reference report, or the tutorial's settings for ``rnn``. ``train`` reads
the model's file strictly (a missing file, a line that is not a flag, or a flag
``train`` does not have is an error) and lets the command line override it.
The flags (or a library caller) then make one frozen `TrainConfig`, checked
once, which is all ``train.train`` takes; what the run trains with, every
value, is written into its ``config.json`` under ``"training"``
(`TrainConfig.record`).
"""

import dataclasses
import importlib.resources
import json
import os
import types
from typing import Any
from typing import Mapping
from typing import Optional

from absl import flags

from quickdraw_tf import cli
from quickdraw_tf.drawings import augment as augment_lib
from quickdraw_tf.training import distribute

# TrainConfig fields that say where a run reads and writes and how it reports, not how it trains: not recorded.
NOT_RECORDED = ("model", "records", "model_dir", "verbose", "progress", "export", "profile_batch")
# --lr_monitor -> the Keras log ReduceLROnPlateau watches.
LR_MONITORS = {"eval_loss": "val_loss", "train_loss": "loss"}
IMAGE_SOURCES = ("auto", "stored", "raster")
BUDGET_CLOCKS = ("wall", "cpu")


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


class ConfigError(cli.Error, ValueError):
  """A training setting out of its range; the message names it."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything one training run is given; checked once, when made, and recorded with the run.

  Built by `from_flags` (``configs/<model>.cfg`` under the command line) or
  directly by library callers; ``train.train`` takes nothing else. The fields
  are train's flags (``model_options`` is ``--model_option``; ``augment`` the
  ``--augment*`` ranges or None; ``head_epochs`` is ``--vgg19_head_epochs``).
  """
  model: str
  records: str
  model_dir: str
  epochs: int = 10
  steps_per_epoch: int = 0  # 0: one pass over the training split
  eval_steps: int = 0  # 0: the whole eval split
  batch_size: int = 64
  learning_rate: float = 1e-3
  weight_decay: float = 0.0
  clip_norm: float = 0.0  # 0: no clipping
  lr_factor: float = 0.3  # ReduceLROnPlateau; 1: a constant rate
  lr_patience: int = 2
  lr_monitor: str = "eval_loss"
  stop_patience: int = 0  # 0: never stop early
  strategy: str = "auto"
  tpu: Optional[str] = None
  mixed_precision: str = "auto"
  jit_compile: bool = False
  image_size: int = 0  # 0: the model's default
  image_source: str = "auto"
  augment: Optional[augment_lib.Ranges] = None
  checkpoint_steps: int = 100
  profile_batch: str = ""
  seed: int = 0
  model_options: Mapping[str, Any] = dataclasses.field(default_factory=dict)
  export: bool = True
  verbose: int = 2
  progress: str = "lines"  # cli.PROGRESS_MODES; "lines" (fit's verbose as given) unless a program asks for more
  time_budget: float = 0.0  # 0: no limit
  budget_clock: str = "wall"
  head_epochs: int = 2

  def __post_init__(self):
    object.__setattr__(self, "model_options", types.MappingProxyType(dict(self.model_options)))
    checks = (
        ("epochs", self.epochs >= 1), ("steps_per_epoch", self.steps_per_epoch >= 0),
        ("eval_steps", self.eval_steps >= 0), ("batch_size", self.batch_size >= 1),
        ("learning_rate", self.learning_rate > 0), ("weight_decay", self.weight_decay >= 0),
        ("clip_norm", self.clip_norm >= 0), ("lr_factor", 0 < self.lr_factor <= 1),
        ("lr_patience", self.lr_patience >= 0), ("lr_monitor", self.lr_monitor in LR_MONITORS),
        ("stop_patience", self.stop_patience >= 0), ("strategy", self.strategy in distribute.STRATEGIES),
        ("mixed_precision", self.mixed_precision in distribute.PRECISIONS), ("image_size", self.image_size >= 0),
        ("image_source", self.image_source in IMAGE_SOURCES), ("checkpoint_steps", self.checkpoint_steps >= 1),
        ("time_budget", self.time_budget >= 0), ("budget_clock", self.budget_clock in BUDGET_CLOCKS),
        ("head_epochs", self.head_epochs >= 0), ("progress", self.progress in cli.PROGRESS_MODES))
    bad = [name for name, ok in checks if not ok]
    if bad:
      raise ConfigError(", ".join(f"{name}={getattr(self, name)!r}" for name in bad) + " out of range")

  def record(self):
    """The JSON-able settings: all fields but where the run reads and writes and how it reports."""
    recorded = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in NOT_RECORDED}
    recorded["model_options"] = dict(self.model_options)
    recorded["augment"] = dataclasses.asdict(self.augment) if self.augment else None
    return recorded


def parse_options(items):
  """``["key=value", ...]`` (--model_option) -> dict, each value read as JSON where it parses as JSON."""
  options = {}
  for item in items:
    key, sep, value = item.partition("=")
    if not sep:
      raise ConfigError(f"--model_option={item!r} is not key=value")
    try:
      options[key] = json.loads(value)
    except ValueError:
      options[key] = value
  return options


def from_flags(flag_values):
  """The `TrainConfig` of train's parsed flags (configs/<model>.cfg already applied, `apply_defaults`)."""
  values = {f.name: flag_values[f.name].value for f in dataclasses.fields(TrainConfig) if f.name in flag_values}
  options = parse_options(flag_values.model_option)
  if flag_values.vgg19_weights:
    options["weights_path"] = flag_values.vgg19_weights
  names = ("rotation", "scale", "shear", "translation", "stroke_dropout")
  augment = augment_lib.Ranges(*(flag_values[f"augment_{name}"].value for name in names))
  return TrainConfig(**{**values, "model_dir": values["model_dir"] or os.path.join("runs", values["model"]),
                        "model_options": options, "augment": augment if flag_values.augment else None,
                        "head_epochs": flag_values.vgg19_head_epochs})
