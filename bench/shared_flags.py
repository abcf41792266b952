"""Flags that several bench scripts take, defined once.

absl refuses a second definition of a name in one process, and the tests
import several scripts into one; one name also means one thing. Each script
gives its own default with `default_models` in its ``main``.
"""

from absl import flags

flags.DEFINE_list("models", None, "Models to run (comma-separated); default: the script's own list, which its main() "
                  "sets.")

flags.DEFINE_bool("quick", False, "A smoke run, small and short, that checks the wiring rather than the figures "
                  "(the script's comment beside its flags says what it shortens and what it writes).")


def default_models(names):
  """Makes ``names`` (list of str) ``--models``' value unless the command line gave one."""
  flags.FLAGS.set_default("models", list(names))
