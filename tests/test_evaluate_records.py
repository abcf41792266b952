"""evaluate refuses records that make_records did not finish, with train's message, from both entry points."""

import os
import shutil

import pytest

from quickdraw_tf.pipelines import records
from quickdraw_tf.training import run_dir
from tests import verbs


@pytest.fixture(scope="module")
def incomplete_records(tiny_run, tmp_path_factory):
  """A copy of the tiny run's records without dataset_info.json: what a killed make_records leaves."""
  tiny_run("rnn")
  path = tmp_path_factory.mktemp("incomplete") / "records"
  shutil.copytree(tiny_run.records, path)
  os.remove(path / records.COMPLETE_MARKER)
  return str(path)


@pytest.mark.parametrize("model_arg", ["--saved_model", "--model_dir"])
def test_evaluate_refuses_incomplete_records_as_train_does(tiny_run, incomplete_records, model_arg, tmp_path):
  model_dir = tiny_run("rnn")
  model = os.path.join(model_dir, run_dir.SAVED_MODEL) if model_arg == "--saved_model" else model_dir
  trained = verbs.run("train", "--model=rnn", f"--records={incomplete_records}", f"--model_dir={tmp_path / 'run'}",
                      "--epochs=1", "--steps_per_epoch=1", "--batch_size=8")
  result = verbs.run("evaluate", f"{model_arg}={model}", f"--records={incomplete_records}",
                     f"--output_dir={tmp_path / 'eval'}")
  assert trained.returncode == 1 and f"no complete records in {incomplete_records!r}" in trained.stderr
  assert result.returncode == 1, result.stdout
  # The same words and the same command to run, after the verb's name.
  assert result.stderr.split("evaluate: ")[-1] == trained.stderr.split("train: ")[-1]
  assert "Traceback" not in result.stderr and not (tmp_path / "eval").exists()
