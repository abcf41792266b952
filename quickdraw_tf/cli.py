"""The shape every ``python -m quickdraw_tf.<verb>`` shares.

A verb module has ``define_flags()`` (flags exist only while it runs as a
program, so that any modules import side by side; required ones marked with
``flags.mark_flags_as_required``) and ``main(_)``, which reads ``flags.FLAGS``,
and ends in ``cli.run(define_flags, main)``. Flags that several verbs take are defined
here, once. A problem the user can act on is an `Error`: it ends the program
with one line, ``<verb>: error: <message>``, and exit status 1, never a
traceback.
"""

import os
import sys

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


# --- Flags several verbs share ----------------------------------------------


def define_model_dir(help_text="A model_dir written by train."):
  flags.DEFINE_string("model_dir", None, help_text)


def define_records(default=None, help_text="Records directory written by make_records."):
  flags.DEFINE_string("records", default, help_text)


def define_weights():
  flags.DEFINE_string("weights", None, "Weights file inside --model_dir (default: best by eval accuracy, else "
                      "final).")


def define_saved_model():
  flags.DEFINE_string("saved_model", None, "A SavedModel written by export (or train).")


def define_input(help_text="An ndjson file of drawings, or a PNG of one drawing."):
  flags.DEFINE_string("input", None, help_text)


PROGRESS_MODES = ("auto", "bar", "lines")  # quickdraw_tf.progress draws them


def define_progress():
  flags.DEFINE_enum("progress", "auto", list(PROGRESS_MODES), "How to show progress. bar: a live bar on stderr "
                    "(steps, loss, accuracy, examples/s, time left); lines: train prints one line per epoch, other "
                    "verbs only their results; auto: bar when stderr (for train, stdout too) is a terminal.")


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
  try:
    return main(argv) or 0
  except Error as e:
    print(f"{verb_name(main)}: error: {e}", file=sys.stderr)
    return 1


def run(define_flags, main):
  """The program: defines the verb's flags, parses them, runs `call`."""
  define_flags()
  app.run(lambda argv: call(main, argv))
