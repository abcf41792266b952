"""``python -m quickdraw_tf.<verb> ARGS`` run inside the test process.

The same flags, the same `cli.call` (errors as one line, exit status) as the
program, without paying for a new Python and TensorFlow on every call: most of
the suite's time went there. What only a process of its own shows (a kill, a
SavedModel served without the package, multi-worker training, make_records'
forked workers, ``--help``) still runs in one (`subprocess_run`).
"""

import collections
import contextlib
import importlib
import io
import os
import subprocess
import sys

from absl import app
from absl import flags
import keras

from quickdraw_tf import cli

Result = collections.namedtuple("Result", "returncode stdout stderr")
QUIET = {"TF_CPP_MIN_LOG_LEVEL": "2"}


def run(verb, *args):
  """Runs the verb's main on ``args`` (strings); returns its `Result`, stdout and stderr as text."""
  module = importlib.import_module(f"quickdraw_tf.{verb}")
  aside = _set_aside_flags()
  defined_before = set(flags.FLAGS)
  stdout, stderr = io.StringIO(), io.StringIO()
  try:
    with contextlib.redirect_stdout(stdout), contextlib.redirect_stderr(stderr):
      module.define_flags()
      try:
        returncode = cli.call(module.main, flags.FLAGS([verb, *map(str, args)]))
      except (flags.Error, app.UsageError) as e:  # What app.run prints before exiting with status 1.
        print(f"{verb}: usage error: {e}", file=sys.stderr)
        returncode = 1
  finally:
    for name in set(flags.FLAGS) - defined_before:  # The next verb defines its own.
      delattr(flags.FLAGS, name)
    _restore_flags(aside)
    keras.backend.clear_session()
  return Result(returncode, stdout.getvalue(), stderr.getvalue())


def _set_aside_flags():
  """Removes the flags other modules of this process defined (a benchmark's, say); returns them for `_restore_flags`.

  A program has only its own flags and absl's; here another test may have
  imported a module that defines some at import, with names a verb also uses.
  """
  aside = {}
  for module, module_flags in flags.FLAGS.flags_by_module_dict().items():
    if not module.startswith(("absl.", "tensorflow.")):
      aside.update((flag.name, (module, flag)) for flag in module_flags)
  for name in aside:
    delattr(flags.FLAGS, name)
  return aside


def _restore_flags(aside):
  for name, (module, flag) in aside.items():
    flags.FLAGS[name] = flag
    flags.FLAGS.register_flag_by_module(module, flag)


def subprocess_run(verb, *args, env=None, **kwargs):
  """``python -m quickdraw_tf.<verb> args`` in a new process; a `subprocess.CompletedProcess`."""
  return subprocess.run([sys.executable, "-m", f"quickdraw_tf.{verb}", *map(str, args)], capture_output=True,
                        text=True, timeout=600, env={**os.environ, **QUIET, **(env or {})}, **kwargs)
