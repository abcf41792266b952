"""The README's test command in a new venv, on a clean copy of the repository: what a new user gets.

A new venv has pip and setuptools and nothing else (no `wheel`, no Playwright,
no TensorFlow): an install step the README lacks fails here, where an
environment that was used before would hide it. It takes minutes (TensorFlow is
installed, from pip's cache where it has one), so it runs where
QUICKDRAW_FRESH_VENV=1 (.ci/run sets it) and skips otherwise.
"""

import os
import re
import shutil
import subprocess
import sys

import pytest

import quickdraw_tf

GATE = "QUICKDRAW_FRESH_VENV"
REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
# What the README's pytest runs there: the tests of what a plain install might lack (the browser tests' skip without
# Playwright, a wheel built without `wheel`, a quiet start), not the whole suite again.
TESTS = ("tests/test_demo.py", "tests/test_train_config.py::test_a_normal_install_trains_with_the_published_defaults",
         "tests/test_quiet_start.py", "tests/test_onednn_default.py")


def readme_test_command():
  """The README's test command: its line that installs and runs pytest (str)."""
  with open(os.path.join(REPO, "README.md"), encoding="utf-8") as f:
    commands = [line.strip() for line in f if line.startswith("python -m pip install") and "python -m pytest" in line]
  assert len(commands) == 1, "README.md should have one line 'python -m pip install ... && python -m pytest ...'"
  return commands[0]


def clean_copy(destination):
  """Copies what a clone of the working tree holds (tracked and not ignored files, links as links)."""
  listed = subprocess.run(["git", "-C", REPO, "ls-files", "-z", "--cached", "--others", "--exclude-standard"],
                          capture_output=True, text=True, check=True).stdout
  for name in sorted(set(filter(None, listed.split("\0")))):
    source, target = os.path.join(REPO, name), os.path.join(destination, name)
    if not os.path.lexists(source):  # Deleted, not yet committed.
      continue
    os.makedirs(os.path.dirname(target), exist_ok=True)
    if os.path.islink(source):
      os.symlink(os.readlink(source), target)
    else:
      shutil.copy2(source, target)


def shell(command, venv, cwd, timeout=1800):
  """``bash -c command`` with the venv's ``python`` first on the PATH; (exit status, stdout + stderr)."""
  env = {k: v for k, v in os.environ.items() if k not in (GATE, "PYTHONPATH", "PYTHONHOME", "TF_CPP_MIN_LOG_LEVEL")}
  env.update(PATH=f"{venv}/bin:{env.get('PATH', '')}", VIRTUAL_ENV=str(venv),
             QUICKDRAW_DATA=os.path.abspath(quickdraw_tf.DEFAULT_DATA_DIR))
  result = subprocess.run(["bash", "-c", command], check=False, cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)
  return result.returncode, result.stdout + result.stderr


@pytest.mark.timeout(3600)
def test_the_readmes_test_command_passes_in_a_new_venv(tmp_path):
  if os.environ.get(GATE) != "1":
    pytest.skip(f"minutes long: set {GATE}=1 to run it (.ci/run does)")
  if not shutil.which("git") or not os.path.exists(os.path.join(REPO, ".git")):
    pytest.skip("needs git and a git checkout, to copy what a clone holds")
  install, run_tests = readme_test_command().rsplit(" && ", 1)
  assert run_tests.startswith("python -m pytest"), run_tests
  clone, venv = tmp_path / "clone", tmp_path / "venv"
  clean_copy(clone)
  subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
  status, output = shell("python -m pip list --format=freeze", venv, clone)
  assert status == 0 and not re.search(r"^(wheel|playwright|tensorflow)==", output, re.MULTILINE), output

  status, output = shell(install, venv, clone)
  assert status == 0, output[-5000:]
  # TensorFlow's dependency astunparse brings `wheel`; taken out, the build test below shows no build needs it.
  status, output = shell("python -m pip uninstall -q -y wheel", venv, clone)
  assert status == 0, output[-3000:]
  status, output = shell(" ".join([run_tests, *TESTS]), venv, clone)
  assert status == 0, output[-8000:]
  browser_skip = r"^SKIPPED .*test_demo\.py.*(no Playwright|QuickDraw data not found)"
  assert re.search(browser_skip, output, re.MULTILINE), output[-8000:]
  assert not re.search(r"\d+ (failed|errors?)\b", output), output[-8000:]
