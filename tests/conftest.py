"""Shared fixtures: where the real QuickDraw data is, and small hand-written drawings."""

import os

import pytest

import quickdraw_tf


@pytest.fixture(scope="session")
def data_dir():
  """The shared QuickDraw data (QUICKDRAW_DATA, default ../shared/data/quickdraw)."""
  path = quickdraw_tf.DEFAULT_DATA_DIR
  if not os.path.isdir(os.path.join(path, "strokes")):
    pytest.skip(f"shared QuickDraw data not found at {path} (set QUICKDRAW_DATA)")
  return path


@pytest.fixture(scope="session")
def synthetic_files(tmp_path_factory):
  """A function: (words, drawings a word) -> list of ndjson paths of made-up drawings (`tests.synthetic`).

  For tests of formats, schema, metrics and run directories that need no real drawing, so that they run
  where the shared data is absent.
  """
  from tests import synthetic  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("synthetic")

  def files(words, count=25):
    return [synthetic.write_ndjson(root / f"{word}-{count}.ndjson", word, count) for word in words]

  return files


TINY_WORDS = ("cat", "bicycle", "fish", "snowflake")
TINY_IMAGE_SIZE = {"resnet18": 28, "sketchanet": 64, "alexnet": 64, "fusion": 64, "vgg19": 32}


@pytest.fixture(scope="session")
def tiny_run(data_dir, tmp_path_factory):
  """A function: model name -> the model_dir of that model trained for 2 steps on 4 real words (cached).

  Trained through train's command line (in this process), which also exports
  ``<model_dir>/saved_model``. Shared by the demo and TFLite tests.
  """
  from quickdraw_tf import make_records  # pylint: disable=g-import-not-at-top
  from tests import verbs  # pylint: disable=g-import-not-at-top
  root = tmp_path_factory.mktemp("tiny")
  records = str(root / "records")
  inputs = [os.path.join(data_dir, "strokes", "simplified_lamnguyen", f"{w}.ndjson") for w in TINY_WORDS]
  make_records.convert(inputs, records, workers=1, progress=False, num_shards=1, eval_fraction=0.1,
                       test_fraction=0.1)
  runs = {}

  def run(name):
    if name not in runs:
      model_dir = str(root / name)
      size = [f"--image_size={TINY_IMAGE_SIZE[name]}"] if name in TINY_IMAGE_SIZE else []
      result = verbs.run("train", f"--model={name}", f"--records={records}", f"--model_dir={model_dir}", "--epochs=1",
                         "--steps_per_epoch=2", "--eval_steps=1", "--batch_size=8", *size)
      assert result.returncode == 0, result.stderr[-3000:]
      runs[name] = model_dir
    return runs[name]

  run.records = records
  return run



def pytest_terminal_summary(terminalreporter):
  """Says which TFLite interpreter the TFLite tests ran (LiteRT's where ai-edge-litert is installed)."""
  ran = {value for report in terminalreporter.stats.get("passed", []) for name, value in report.user_properties
         if name == "tflite_interpreter"}
  for name in sorted(ran):
    terminalreporter.write_line(f"TFLite tests ran the {name} interpreter"
                                f"{'' if name == 'LiteRT' else ' (pip install ai-edge-litert for LiteRT)'}")
