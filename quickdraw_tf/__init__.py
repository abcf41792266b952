"""quickdraw_tf: Quick, Draw! drawings to TFRecords, and sketch classifiers in TF2/Keras 3."""

import os

__version__ = "0.1.0"

# Where the shared QuickDraw drawings live; tests and benchmarks read them from here.
DEFAULT_DATA_DIR = os.environ.get(
    "QUICKDRAW_DATA",
    os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "..", "shared", "data", "quickdraw"))
# Where make_records writes by default, relative to the working directory.
DEFAULT_RECORDS_ROOT = "tfrecords"
