"""quickdraw_tf: Quick, Draw! drawings to TFRecords, and sketch classifiers in TF2/Keras 3."""

import os
import sys

__version__ = "0.2.0"

# TensorFlow turns its oneDNN kernels on by default only on CPUs with AVX512-VNNI, AVX512-BF16 or AMX.
# On others (an AMD EPYC with AVX2 here) they train our CNNs 1.2-3.1x faster per CPU second, the LSTMs
# 0.95-1.02x (BENCHMARKS.md, "oneDNN on CPUs where TensorFlow leaves it off"). TensorFlow reads this
# when first imported: a value the user set wins, and importing TensorFlow before this package leaves
# TensorFlow's own default.
os.environ.setdefault("TF_ENABLE_ONEDNN_OPTS", "1")

# Where the shared QuickDraw drawings live; tests and benchmarks read them from here.
DEFAULT_DATA_DIR = os.environ.get(
    "QUICKDRAW_DATA",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "quickdraw"))
# Where make_records writes by default, relative to the working directory.
DEFAULT_RECORDS_ROOT = "tfrecords"


def _started_as_verb():
  """True while Python imports this package to run ``python -m quickdraw_tf.<verb>``.

  Python sets ``sys.argv[0]`` to "-m" while it finds the module it was asked to run; ``sys.orig_argv`` ends in the
  module's name (or "-m<name>") and the module's arguments.
  """
  return sys.argv[:1] == ["-m"] and sys.orig_argv[-len(sys.argv)].removeprefix("-m").startswith(__name__ + ".")


if _started_as_verb():  # A program starting, not a library import: TensorFlow is imported without its C++ log.
  from quickdraw_tf import cli  # pylint: disable=g-import-not-at-top
  cli.start_quietly(sys.argv)
