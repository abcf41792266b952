"""Every training setting, defined once: its name, type, default, bounds, choices and help.

`TrainConfig`'s fields are the one definition. ``train``'s flags are generated
from them (`define_flags`: each field's ``metadata`` holds its help, bounds and
choices), the checks a config passes when made come from the same metadata, and
what a run trained with is written into its ``config.json`` under
``"training"`` (`TrainConfig.record`).

``configs/<model>.cfg`` (at the repository's top level, the one source; the
package carries the same files, ``quickdraw_tf/configs`` being a link to them
in a checkout and a copy in a wheel) are absl flagfiles: table 1 of the
reference report, or the tutorial's settings for ``rnn``. ``train`` reads the
model's file with absl's ``--flagfile`` reader (`apply_defaults`: strictly, a
missing file, a line that is not a flag, or a flag that is not a training
setting is an error) and lets the command line override it.
"""

import copy
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

# The flags `define_flags` defines belong to the verb that calls it (train's --help lists them).
flags.disclaim_key_flags()

# TrainConfig fields that say where a run reads and writes and how it reports, not how it trains: not recorded.
NOT_RECORDED = ("model", "records", "model_dir", "verbose", "progress", "export", "profile_batch")
# --lr_monitor -> the Keras log ReduceLROnPlateau watches.
LR_MONITORS = {"eval_loss": "val_loss", "train_loss": "loss"}
IMAGE_SOURCES = ("auto", "stored", "raster")
BUDGET_CLOCKS = ("wall", "cpu")
AUGMENT_PREFIX = "augment_"  # --augment_<name>: a field of augment_lib.Ranges
# The flags of the fields that are not one flag each: --augment (with the --augment_* ranges) makes `augment`;
# --model_option and --vgg19_weights make `model_options` (`from_flags`).
COMPOSITE_FLAGS = ("augment", "model_option", "vgg19_weights")


def setting(default=dataclasses.MISSING, help_text=None, *, lower=None, upper=None, above=None, choices=None,
            flag=True, default_factory=dataclasses.MISSING):
  """A `TrainConfig` field with what its flag and its check need, in ``metadata``.

  Args:
    default: the default value (or ``default_factory``).
    help_text: the flag's help; None for a field without a flag of its own.
    lower, upper: inclusive bounds (the flag's ``lower_bound``/``upper_bound`` and the config's check).
    above: an exclusive lower bound (checked when the config is made).
    choices: the allowed values (an enum flag).
    flag: the flag's name: True for the field's own, a string for another, False for none generated here.
  """
  metadata = {"help": help_text, "lower": lower, "upper": upper, "above": above,
              "choices": tuple(choices) if choices is not None else None, "flag": flag}
  return dataclasses.field(default=default, default_factory=default_factory, metadata=metadata)


class ConfigError(cli.Error, ValueError):
  """A training setting out of its range; the message names it."""


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything one training run is given; checked once, when made, and recorded with the run.

  Built by `from_flags` (``configs/<model>.cfg`` under the command line) or
  directly by library callers; ``train.train`` takes nothing else. Each field
  with a help text is a flag of ``train`` of the same name (``head_epochs``:
  ``--vgg19_head_epochs``); ``model_options`` comes from ``--model_option``
  and ``--vgg19_weights``, ``augment`` from ``--augment`` and the
  ``--augment_*`` ranges (`augment_lib.Ranges`' fields), ``progress`` from the
  verbs' shared ``--progress``.
  """
  model: str = setting(flag=False)
  records: str = setting(flag=False)
  model_dir: str = setting(flag=False)
  epochs: int = setting(10, "Epochs.", lower=1)
  steps_per_epoch: int = setting(0, "Steps per epoch (0: one pass over the training split).", lower=0)
  eval_steps: int = setting(0, "Eval batches per evaluation (0: the whole eval split).", lower=0)
  batch_size: int = setting(64, "Global batch size.", lower=1)
  learning_rate: float = setting(1e-3, "Adam learning rate.", above=0)
  weight_decay: float = setting(0.0, "Adam weight decay (decoupled, as Keras applies it: each step subtracts "
                                "learning_rate * weight_decay * w).", lower=0)
  l2_decay: float = setting(0.0, "Coupled weight decay, as PyTorch's Adam(weight_decay=...): each step adds "
                            "l2_decay * w to every trainable variable's gradient (after --clip_norm's clipping) "
                            "before Adam's update (an L2 penalty; the reference report's code).", lower=0)
  clip_norm: float = setting(0.0, "Clip gradients to this global norm (0: no clipping).", lower=0)
  lr_factor: float = setting(0.3, "ReduceLROnPlateau factor (1: a constant learning rate).", above=0, upper=1)
  lr_patience: int = setting(2, "ReduceLROnPlateau patience, in epochs.", lower=0)
  lr_monitor: str = setting("eval_loss", "The loss ReduceLROnPlateau watches: each epoch's eval loss, or its mean "
                            "training loss (the reference report's PyTorch code).", choices=LR_MONITORS)
  stop_patience: int = setting(0, "Stop when eval accuracy has not improved for this many epochs (0: never).",
                               lower=0)
  strategy: str = setting("auto", "tf.distribute strategy.", choices=distribute.STRATEGIES)
  tpu: Optional[str] = setting(None, "TPU name or address ('local' on a TPU VM).")
  mixed_precision: str = setting("auto", "auto: float16 on GPU, bfloat16 on TPU, float32 on CPU.",
                                 choices=distribute.PRECISIONS)
  jit_compile: bool = setting(False, "Compile the training step with XLA.")
  image_size: int = setting(0, "Image input side (0: the model's default).", lower=0)
  image_source: str = setting("auto", "Images from records or rasterised.", choices=IMAGE_SOURCES)
  # --augment (True: augment_lib.Ranges from the --augment_* flags; False: None).
  augment: Optional[augment_lib.Ranges] = setting(None, "Augment training drawings (on ink, before rasterising).",
                                                  flag=False)
  checkpoint_steps: int = setting(100, "Back up the training state every N steps (also every epoch).", lower=1)
  profile_batch: str = setting("", "Profile these batches in TensorBoard, e.g. '10,20'.")
  seed: int = setting(0, "Random seed.")
  # --model_option key=value (repeated), and --vgg19_weights as the option weights_path.
  model_options: Mapping[str, Any] = setting(default_factory=dict, flag=False)
  export: bool = setting(True, "Write the serving SavedModel at the end.")
  verbose: int = setting(2, flag=False)  # Keras fit's verbose, for library callers.
  # "lines" (fit's verbose as given) unless a program asks for more; the flag is the verbs' shared --progress.
  progress: str = setting("lines", choices=cli.PROGRESS_MODES, flag=False)
  time_budget: float = setting(0.0, "Stop training after this many seconds (0: no limit); the epoch in progress is "
                               "cut short, then evaluated and saved as usual.", lower=0)
  budget_clock: str = setting("wall", "What --time_budget counts: wall-clock seconds, or CPU seconds of this "
                              "process (all threads; fair between runs that share a machine).", choices=BUDGET_CLOCKS)
  head_epochs: int = setting(2, "With --vgg19_weights: epochs that train only the head on the frozen backbone, "
                             "before its last block is unfrozen too.", lower=0, flag="vgg19_head_epochs")

  def __post_init__(self):
    object.__setattr__(self, "model_options", types.MappingProxyType(dict(self.model_options)))
    bad = [field.name for field in dataclasses.fields(self) if not _in_range(getattr(self, field.name), field.metadata)]
    if bad:
      raise ConfigError(", ".join(f"{name}={getattr(self, name)!r}" for name in bad) + " out of range")

  def record(self):
    """The JSON-able settings: all fields but where the run reads and writes and how it reports."""
    recorded = {f.name: getattr(self, f.name) for f in dataclasses.fields(self) if f.name not in NOT_RECORDED}
    recorded["model_options"] = dict(self.model_options)
    recorded["augment"] = dataclasses.asdict(self.augment) if self.augment else None
    return recorded


def _in_range(value, metadata):
  """Whether ``value`` is within a `setting`'s bounds and choices (a setting without them: always)."""
  checks = ((metadata["lower"], lambda bound: value >= bound), (metadata["upper"], lambda bound: value <= bound),
            (metadata["above"], lambda bound: value > bound), (metadata["choices"], lambda choices: value in choices))
  return all(check(bound) for bound, check in checks if bound is not None)


def flag_fields():
  """The `TrainConfig` fields that `define_flags` makes flags of: list of (flag name, dataclasses.Field)."""
  return [(field.name if field.metadata["flag"] is True else field.metadata["flag"], field)
          for field in dataclasses.fields(TrainConfig) if field.metadata["flag"]]


def define_flags(flag_values=flags.FLAGS):
  """Defines a flag for every training setting (`flag_fields`) and every ``--augment_*`` range.

  Each flag's type, default, bounds, choices and help are its field's: there is no other definition.
  """
  for name, field in flag_fields():
    meta, default = field.metadata, field.default
    if meta["choices"]:
      flags.DEFINE_enum(name, default, list(meta["choices"]), meta["help"], flag_values=flag_values)
    elif field.type is bool:
      flags.DEFINE_bool(name, default, meta["help"], flag_values=flag_values)
    elif field.type in (int, float):
      define = flags.DEFINE_integer if field.type is int else flags.DEFINE_float
      define(name, default, meta["help"], lower_bound=meta["lower"], upper_bound=meta["upper"],
             flag_values=flag_values)
    else:
      flags.DEFINE_string(name, default, meta["help"], flag_values=flag_values)
  augment = next(field for field in dataclasses.fields(TrainConfig) if field.name == "augment")
  flags.DEFINE_bool("augment", False, augment.metadata["help"], flag_values=flag_values)
  for field in dataclasses.fields(augment_lib.Ranges):
    flags.DEFINE_float(AUGMENT_PREFIX + field.name, field.default, field.metadata["help"], flag_values=flag_values)
  flags.DEFINE_multi_string("model_option", [], "Model builder option key=value, e.g. activation=relu.",
                            flag_values=flag_values)
  flags.DEFINE_string("vgg19_weights", None, "Local Keras VGG19 notop weights file (ImageNet).",
                      flag_values=flag_values)


def config_flag_names():
  """The flags a ``configs/<model>.cfg`` may set: every training setting's."""
  return sorted([name for name, _ in flag_fields()] + [AUGMENT_PREFIX + f.name for f in
                                                       dataclasses.fields(augment_lib.Ranges)] + list(COMPOSITE_FLAGS))


def config_path(model):
  """The packaged ``configs/<model>.cfg`` (a `pathlib.Path`-like Traversable)."""
  return importlib.resources.files("quickdraw_tf") / "configs" / f"{model}.cfg"


def apply_defaults(model, flag_values):
  """Sets each flag of the model's ``configs/<model>.cfg`` that the command line did not set.

  absl reads and parses the file (its ``--flagfile``: ``--name=value`` lines,
  ``#`` comments) into a scratch copy of the settings' flags; those the
  command line left alone take the file's values.

  Args:
    model: a model name.
    flag_values: the parsed ``absl.flags.FlagValues`` (with `define_flags`' flags).

  Raises:
    cli.Error: the file is missing or unreadable, or a line (named by its
      number) is not a flag, is not a training setting (the message lists
      them), or has a value the flag refuses.
  """
  scratch = flags.FlagValues()
  for name in config_flag_names():
    scratch[name] = copy.deepcopy(flag_values[name])
  with importlib.resources.as_file(config_path(model)) as path:
    try:
      lines = [line.strip() for line in path.read_text(encoding="utf-8").splitlines()]
    except (OSError, UnicodeDecodeError) as e:
      raise cli.Error(f"cannot read the training config of model {model!r} at {path} ({e}): the package is "
                      "incomplete; reinstall it (pip install .)") from None
    try:
      rest = scratch(["train", f"--flagfile={path}"])[1:]
    except flags.UnrecognizedFlagError as e:
      raise cli.Error(f"{_where(path, lines, '--' + e.flagname)}: unknown flag --{e.flagname}; valid: "
                      f"{', '.join(config_flag_names())}") from None
    except flags.Error as e:  # A value the flag refuses (absl's IllegalFlagValueError names it).
      raise cli.Error(f"{_where(path, lines, str(e).split(':', 1)[0].removeprefix('flag '))}: {e}") from None
  if rest:
    raise cli.Error(f"{_where(path, lines, rest[0])}: not a --flag=value line: {rest[0]!r}")
  for name in config_flag_names():
    if scratch[name].present and not flag_values[name].present:
      flag_values[name].value, flag_values[name].present = scratch[name].value, scratch[name].present


def model_defaults(model):
  """The settings ``train --model=<model>`` starts from: {flag name: value}, configs/<model>.cfg over the fields'."""
  scratch = flags.FlagValues()
  define_flags(scratch)
  scratch(["train"])
  apply_defaults(model, scratch)
  return {name: scratch[name].value for name in config_flag_names()}


def _where(path, lines, text):
  """``path:N`` of the first line that starts with ``text`` (``path`` alone if none does)."""
  number = next((n for n, line in enumerate(lines, 1) if text and line.startswith(text)), None)
  return f"{path}:{number}" if number else str(path)


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
  values = {field.name: flag_values[name].value for name, field in flag_fields()}
  options = parse_options(flag_values.model_option)
  if flag_values.vgg19_weights:
    options["weights_path"] = flag_values.vgg19_weights
  augment = augment_lib.Ranges(**{field.name: flag_values[AUGMENT_PREFIX + field.name].value
                                  for field in dataclasses.fields(augment_lib.Ranges)})
  model_dir = flag_values.model_dir or os.path.join("runs", flag_values.model)
  return TrainConfig(model=flag_values.model, records=flag_values.records, model_dir=model_dir,
                     progress=flag_values.progress, model_options=options,
                     augment=augment if flag_values.augment else None, **values)
