"""The shape every ``python -m quickdraw_tf.<verb>`` shares.

A verb module has ``define_flags()`` (flags exist only while it runs as a
program, so that any modules import side by side; required ones marked with
``flags.mark_flags_as_required``) and ``main(_)``, which reads ``flags.FLAGS``,
and ends in ``cli.run(define_flags, main)``. Flags that several verbs take are defined
here, once. A problem the user can act on is an `Error`: it ends the program
with one line, ``<verb>: error: <message>``, and exit status 1, never a
traceback.

A verb starts with `start_quietly` (called by the package's ``__init__`` when
Python runs ``-m quickdraw_tf.<verb>``, before anything imports TensorFlow):
TensorFlow's C++ log stays off the user's screen unless they ask for it.
"""

import contextlib
import os
import re
import sys
import tempfile

from absl import app
from absl import flags

# The flags defined below belong to the verb that calls these functions (its --help lists them).
flags.disclaim_key_flags()


class Error(Exception):
  """A problem the user can act on; its message says what to do next."""


def check_choice(value, choices, what, error=ValueError):
  """Raises ``error`` ("unknown <what> 'value'; valid: a, b, ...") unless ``value`` is in ``choices``."""
  if value not in choices:
    raise error(f"unknown {what} {value!r}; valid: {', '.join(choices)}")


_URL_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")


def is_url(path):
  """Whether ``path`` names a file system by its scheme ("gs://b/x", "ram://x", "s3://b/x")."""
  return bool(_URL_RE.match(path))


def absolute_path(path):
  """``path`` made absolute, unless it is a URL: os.path.abspath would make "gs://b/x" a local "<cwd>/gs:/b/x",
  and such paths are read through tf.io.gfile as they are."""
  return path if is_url(path) else os.path.abspath(path)


# --- Flags several verbs share ----------------------------------------------


def define_model_dir(help_text="A model_dir written by train."):
  """Defines --model_dir (str, default None), with ``help_text``."""
  flags.DEFINE_string("model_dir", None, help_text)


def define_records(default=None, help_text="Records directory written by make_records."):
  """Defines --records (str, default ``default``), with ``help_text``."""
  flags.DEFINE_string("records", default, help_text)


def define_weights():
  """Defines --weights (str, default None): a weights file inside --model_dir."""
  flags.DEFINE_string("weights", None, "Weights file inside --model_dir (default: best by eval accuracy, else "
                      "final).")


def define_saved_model():
  """Defines --saved_model (str, default None): a SavedModel written by export."""
  flags.DEFINE_string("saved_model", None, "A SavedModel written by export (or train).")


def define_input(help_text="An ndjson file of drawings, or a PNG of one drawing."):
  """Defines --input (str, default None), with ``help_text``."""
  flags.DEFINE_string("input", None, help_text)


PROGRESS_MODES = ("auto", "bar", "lines")  # quickdraw_tf.progress draws them


def define_progress():
  """Defines --progress: one of `PROGRESS_MODES`, default "auto" (see `quickdraw_tf.progress`)."""
  flags.DEFINE_enum("progress", "auto", list(PROGRESS_MODES), "How to show progress. bar: a live bar on stderr "
                    "(steps, loss, accuracy, examples/s, time left); lines: train prints one line per epoch, other "
                    "verbs only their results; auto: bar when stderr (for train, stdout too) is a terminal.")


# --- Starting quietly ---------------------------------------------------------

TF_LOG_LEVEL = "TF_CPP_MIN_LOG_LEVEL"
# TensorFlow's C++ log levels: 0 shows everything, 1 hides INFO, 2 WARNING too, 3 ERROR too (FATAL stays).
QUIET_LOG_LEVEL = 3
# A C++ log line as absl writes it before absl::InitializeLog():
# "I0000 00:00:1796459379.226942    5753 port.cc:153] " (absl's Python lines name a .py file).
_LOG_LINE = re.compile(r"([IWEF])\d{4} \d\d:\d\d:[\d.]+ +\d+ [^ \]]+\.(?:cc|c|cpp|h):\d+\] ")
_LOG_NOTICE = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR"


def start_quietly(argv, environ=os.environ):
  """Imports TensorFlow for a program without its C++ log lines, unless the user asks for them.

  Only a program's entry point calls this (library imports leave the
  environment as they found it). Sets ``TF_CPP_MIN_LOG_LEVEL`` (inherited by
  the program's subprocesses) to `tensorflow_log_level` unless the user set it,
  and drops the lines below that level which TensorFlow 2.21 writes while it is
  imported whatever the variable says (its oneDNN and CUDA notices).

  Args:
    argv: the program's arguments (list of str), for ``--verbosity``.
    environ: the environment to set (a dict of str).
  """
  level = tensorflow_log_level(argv, environ)
  environ.setdefault(TF_LOG_LEVEL, str(level))
  with _stderr_without_log_lines_below(level):
    import tensorflow  # noqa: F401  # pylint: disable=g-import-not-at-top,unused-import


def tensorflow_log_level(argv, environ):
  """The C++ log level (int, 0-3) a program gives TensorFlow.

  The user's ``TF_CPP_MIN_LOG_LEVEL`` wins (0 if it is not a number, as
  TensorFlow reads it); else ``--verbosity``/``-v`` on the command line (absl's
  flag: 1 debug, 0 info, -1 warning, -2 error); else `QUIET_LOG_LEVEL`.
  """
  if TF_LOG_LEVEL in environ:
    return int(environ[TF_LOG_LEVEL]) if environ[TF_LOG_LEVEL].strip().isdigit() else 0
  given = flags.FlagValues()  # Only --verbosity (and --flagfile): the verb's own flags are not defined yet.
  flags.DEFINE_integer("verbosity", None, "", short_name="v", flag_values=given)
  try:
    given(list(argv), known_only=True)
  except flags.Error:
    return QUIET_LOG_LEVEL  # app.run reports the bad value.
  return QUIET_LOG_LEVEL if given.verbosity is None else min(max(-given.verbosity, 0), QUIET_LOG_LEVEL)


def is_below(line, level):
  """True for a C++ log line (or absl's notice before the first) that ``level`` hides; other lines are False."""
  match = _LOG_LINE.match(line)
  if match:
    return "IWEF".index(match.group(1)) < level
  return line.rstrip("\n") == _LOG_NOTICE and level > 0


@contextlib.contextmanager
def _stderr_without_log_lines_below(level):
  """Holds what is written to file descriptor 2 in the block; then writes it to stderr less `is_below` lines."""
  try:
    sys.stderr.flush()
    saved = os.dup(2)
  except (OSError, ValueError, AttributeError):  # No stderr to filter.
    yield
    return
  with tempfile.TemporaryFile() as held:
    os.dup2(held.fileno(), 2)
    try:
      yield
    finally:
      sys.stderr.flush()
      os.dup2(saved, 2)
      os.close(saved)
      held.seek(0)
      sys.stderr.writelines(line for line in held.read().decode(errors="replace").splitlines(keepends=True)
                            if not is_below(line, level))
      sys.stderr.flush()


# --- Running a verb ------------------------------------------------------------


def verb_name(main):
  """``quickdraw_tf.train``'s main -> "train"."""
  return main.__module__.rsplit(".", 1)[-1] if main.__module__ != "__main__" else os.path.basename(
      sys.argv[0]).removesuffix(".py")


def call(main, argv):
  """Runs ``main(argv)`` with parsed flags; an `Error` becomes one line on stderr and status 1.

  Returns:
    the exit status (int).
  """
  if len(argv) > 1:
    raise app.UsageError(f"unexpected arguments: {argv[1:]}")
  devices = found_devices()
  if devices:  # TensorFlow's own line about them is in the log that `start_quietly` hides.
    print(f"{verb_name(main)}: found {devices}", file=sys.stderr)
  try:
    return main(argv) or 0
  except Error as e:
    print(f"{verb_name(main)}: error: {e}", file=sys.stderr)
    return 1


def found_devices():
  """The GPUs TensorFlow found, in one line (`describe_gpus`); "" without any."""
  import tensorflow as tf  # pylint: disable=g-import-not-at-top
  gpus = tf.config.list_physical_devices("GPU")  # Physical: listing logical ones would start the runtime.
  return describe_gpus([(gpu.name.removeprefix("/physical_device:"), tf.config.experimental.get_device_details(gpu))
                        for gpu in gpus])


def describe_gpus(gpus):
  """``[("GPU:0", {"device_name": "NVIDIA H100", "compute_capability": (9, 0)}), ...]`` -> one line.

  Returns:
    e.g. "1 GPU: GPU:0 NVIDIA H100 (compute capability 9.0)"; "" for no GPUs.
  """
  described = []
  for name, details in gpus:
    capability = details.get("compute_capability")
    described.append(" ".join(filter(None, [name, details.get("device_name"),
                                            capability and f"(compute capability {capability[0]}.{capability[1]})"])))
  return f"{len(gpus)} GPU{'s' if len(gpus) > 1 else ''}: {', '.join(described)}" if gpus else ""


def run(define_flags, main):
  """The program: defines the verb's flags, parses them, runs `call`."""
  define_flags()
  app.run(lambda argv: call(main, argv))
