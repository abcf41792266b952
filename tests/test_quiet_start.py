"""Verbs start quietly: no TensorFlow C++ log line unless the user asks (`quickdraw_tf.cli.start_quietly`)."""

import os
import re
import subprocess
import sys

import pytest

from quickdraw_tf import cli

# TensorFlow's C++ log ("I0000 00:00:1796459379.226942    5753 port.cc:153] oneDNN custom operations are on...", the
# cuInit E-line, cudart_stub's "Could not find cuda drivers"), absl's notice before it, and the AVX notice's 2nd line.
# Our own absl lines name a .py file.
CPP_LOG = re.compile(r"^(?:[IWEF]\d{4} \d\d:\d\d:\S+ +\d+ \S+\.(?:cc|h):\d+\]"
                     r"|.*absl::InitializeLog|.*rebuild TensorFlow with).*", re.MULTILINE)


def environment(**settings):
  """This process's environment without the user's log level and oneDNN choice, plus ``settings``."""
  env = {k: v for k, v in os.environ.items() if k not in (cli.TF_LOG_LEVEL, "TF_ENABLE_ONEDNN_OPTS")}
  return {**env, **settings}


def program(verb, *args, env=None):
  """``python -m quickdraw_tf.<verb> args`` as the user runs it; (exit status, stdout + stderr)."""
  result = subprocess.run([sys.executable, "-m", f"quickdraw_tf.{verb}", *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=600, env=env or environment())
  return result.returncode, result.stdout + result.stderr


def test_make_records_train_evaluate_export_predict_print_no_tensorflow_log(synthetic_files, tmp_path):
  records, run = tmp_path / "records", tmp_path / "run"
  drawings = synthetic_files(["cat", "fish"])
  for verb, *args in [
      ("make_records", *(f"--input={path}" for path in drawings), f"--output_dir={records}", "--workers=1"),
      ("train", "--model=rnn", f"--records={records}", f"--model_dir={run}", "--epochs=1", "--steps_per_epoch=1",
       "--eval_steps=1", "--batch_size=4", "--export=false"),
      ("evaluate", f"--model_dir={run}", "--split=test"),
      ("export", f"--model_dir={run}"),
      ("predict", f"--saved_model={run / 'saved_model'}", f"--input={drawings[0]}")]:
    status, output = program(verb, *args)
    assert status == 0, output[-3000:]
    assert not CPP_LOG.findall(output), (verb, output[-3000:])


@pytest.mark.parametrize("verb, args", [
    ("generate", ["--model_dir=missing", "--output=out"]), ("visualize", ["--model_dir=missing"]),
    ("demo", ["--saved_model=missing"]), ("models", [])])
def test_the_other_verbs_print_no_tensorflow_log(verb, args, tmp_path):
  status, output = program(verb, *(arg.replace("missing", str(tmp_path / "missing")) for arg in args))
  assert status == (0 if verb == "models" else 1), output[-3000:]
  assert f"{verb}: error: " in output or verb == "models"  # Our own words still show.
  assert not CPP_LOG.findall(output), output[-3000:]


@pytest.mark.parametrize("args, env", [(["--verbosity=0"], {}), ([], {cli.TF_LOG_LEVEL: "0"})])
def test_the_user_who_asks_sees_tensorflows_log(args, env, tmp_path):
  status, output = program("export", f"--model_dir={tmp_path}", *args, env=environment(**env))
  assert status == 1 and "export: error: " in output
  assert CPP_LOG.findall(output)  # At least oneDNN's notice, written while TensorFlow is imported.


def test_importing_the_package_leaves_the_log_level_and_tensorflow_alone():
  probe = "import os, sys, quickdraw_tf.cli; print(os.environ.get('TF_CPP_MIN_LOG_LEVEL'), 'tensorflow' in sys.modules)"
  result = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True, env=environment())
  assert result.stdout.split() == ["None", "False"]


@pytest.mark.parametrize("argv, env, level", [
    (["p"], {}, 3), (["p", "--model=rnn", "--verbosity=0"], {}, 0), (["p", "-v", "1"], {}, 0),
    (["p", "--verbosity=-1"], {}, 1), (["p", "--verbosity=-2"], {}, 2), (["p", "--verbosity=-9"], {}, 3),
    (["p", "--verbosity=0"], {"TF_CPP_MIN_LOG_LEVEL": "2"}, 2), (["p"], {"TF_CPP_MIN_LOG_LEVEL": "1"}, 1),
    (["p"], {"TF_CPP_MIN_LOG_LEVEL": "x"}, 0), (["p", "--verbosity=x"], {}, 3)])
def test_the_log_level_is_the_users_then_verbositys_then_quiet(argv, env, level):
  assert cli.tensorflow_log_level(argv, env) == level


def test_a_verbosity_in_a_flagfile_counts(tmp_path):
  flagfile = tmp_path / "flags"
  flagfile.write_text("--model=rnn\n--verbosity=-1\n")
  assert cli.tensorflow_log_level(["p", f"--flagfile={flagfile}"], {}) == 1


def test_only_log_lines_below_the_level_are_dropped():
  info = "I0000 00:00:1796459379.226942    5753 port.cc:153] oneDNN custom operations are on.\n"
  error = "E0000 00:00:1796459383.160091    5753 cuda_platform.cc:52] failed call to cuInit\n"
  notice = "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
  assert [cli.is_below(line, 3) for line in (info, error, notice)] == [True, True, True]
  assert [cli.is_below(line, 1) for line in (info, error, notice)] == [True, False, True]
  assert [cli.is_below(line, 0) for line in (info, error, notice)] == [False, False, False]
  for ours in ("WARNING:absl:vgg19: no --vgg19_weights file given", "Traceback (most recent call last):",
               "F0000 00:00:1.0 1 x.cc:1] Check failed", "I1205 08:40:17.468550 140236793736064 train.py:471] done"):
    assert not cli.is_below(ours, 3)


def test_what_c_writes_to_stderr_meanwhile_comes_back_less_the_hidden_log_lines(capfd):
  hidden = "I0000 00:00:1796459379.226942    5753 cudart_stub.cc:31] Could not find cuda drivers on your machine\n"
  with cli._stderr_without_log_lines_below(1):  # pylint: disable=protected-access
    os.write(2, f"{hidden}a line of ours\nE0000 00:00:1.5 7 cuda_platform.cc:52] an error\n".encode())
  assert capfd.readouterr().err == "a line of ours\nE0000 00:00:1.5 7 cuda_platform.cc:52] an error\n"


def test_gpus_are_named_in_one_line():
  assert cli.describe_gpus([]) == ""
  assert cli.describe_gpus([("GPU:0", {"device_name": "NVIDIA H100 80GB HBM3", "compute_capability": (9, 0)})]) == (
      "1 GPU: GPU:0 NVIDIA H100 80GB HBM3 (compute capability 9.0)")
  assert cli.describe_gpus([("GPU:0", {}), ("GPU:1", {"device_name": "X"})]) == "2 GPUs: GPU:0, GPU:1 X"
