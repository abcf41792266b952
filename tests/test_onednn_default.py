"""quickdraw_tf turns TensorFlow's oneDNN kernels on unless the user chose (quickdraw_tf/__init__.py)."""

import os
import subprocess
import sys

import pytest

PROBE = "import os, quickdraw_tf; print(os.environ.get('TF_ENABLE_ONEDNN_OPTS'))"


@pytest.mark.parametrize("users, expected", [(None, "1"), ("0", "0"), ("1", "1")])
def test_importing_the_package_sets_onednn_on_unless_the_user_chose(users, expected):
  env = {k: v for k, v in os.environ.items() if k != "TF_ENABLE_ONEDNN_OPTS"}
  if users is not None:
    env["TF_ENABLE_ONEDNN_OPTS"] = users
  out = subprocess.run([sys.executable, "-c", PROBE], env=env, capture_output=True, text=True, check=True)
  assert out.stdout.strip() == expected
