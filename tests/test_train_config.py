"""The training config: published defaults that reach a normal install, strict keys and options, recorded runs."""

import dataclasses
import json
import os
import shutil
import subprocess
import sys

from absl import flags
import pytest

from quickdraw_tf import cli
from quickdraw_tf import make_records
from quickdraw_tf import models
from quickdraw_tf.drawings import augment
from quickdraw_tf.training import train_config
from tests import verbs

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
TRAIN_ARGS = ("--epochs=1", "--steps_per_epoch=1", "--eval_steps=1", "--export=false")


@pytest.fixture(scope="module")
def records_dir(synthetic_files, tmp_path_factory):
  out = str(tmp_path_factory.mktemp("records"))
  make_records.convert(synthetic_files(["cat", "fish"]), out, workers=1, progress=False, num_shards=1, eval_fraction=0.2, test_fraction=0.2)
  return out


def _training(model_dir):
  with open(os.path.join(model_dir, "config.json"), encoding="utf-8") as f:
    return json.load(f)


def _train_flags(*args):
  """A FlagValues with train's flags (as train defines them), parsed from ``args``."""
  scratch = flags.FlagValues()
  for name in ("model", "records", "model_dir"):
    flags.DEFINE_string(name, None, "", flag_values=scratch)
  flags.DEFINE_enum("progress", "auto", list(cli.PROGRESS_MODES), "", flag_values=scratch)
  train_config.define_flags(scratch)
  scratch(["train", *args])
  return scratch


def test_flags_help_and_train_config_agree_field_by_field():
  scratch = _train_flags()
  fields = {field.name: field for field in dataclasses.fields(train_config.TrainConfig)}
  flagged = dict(train_config.flag_fields())
  # Every field is a flag of its own, or one of the few that flags make in another way (`from_flags`).
  assert set(fields) == {f.name for f in flagged.values()} | {
      "model", "records", "model_dir", "augment", "model_options", "progress", "verbose"}
  help_text = " ".join(scratch.get_help().split())  # What --helpfull prints for them.
  for name, field in flagged.items():
    flag, meta = scratch[name], field.metadata
    assert flag.default == field.default and flag.help.endswith(meta["help"]), name  # An enum's starts <a|b>:
    kind = {bool: "bool", int: "int", float: "float"}.get(field.type, "string")
    assert " ".join(meta["help"].split()) in help_text, name
    assert (f"--[no]{name}" if kind == "bool" else f"--{name}") in help_text, name
    assert flag.flag_type() == ("string enum" if meta["choices"] else kind), name
    if meta["choices"]:
      assert flag.parser.enum_values == list(meta["choices"]), name
    if kind in ("int", "float"):
      assert (flag.parser.lower_bound, flag.parser.upper_bound) == (meta["lower"], meta["upper"]), name
  for field in dataclasses.fields(augment.Ranges):
    assert scratch[f"augment_{field.name}"].default == field.default
  # The defaults as flags give are the TrainConfig's own defaults.
  assert train_config.from_flags(_train_flags("--model=rnn", "--records=r", "--model_dir=m")) == (
      train_config.TrainConfig("rnn", "r", "m", progress="auto"))


def test_every_config_file_sets_training_settings_in_range():
  for name in models.MODELS:
    scratch = _train_flags(f"--model={name}")
    train_config.apply_defaults(name, scratch)
    set_by_file = [n for n in train_config.config_flag_names() if scratch[n].present]
    assert set_by_file, name
    config = train_config.from_flags(scratch)  # Made, so within every bound and choice.
    for flag_name, field in train_config.flag_fields():
      if flag_name in set_by_file:
        assert getattr(config, field.name) == scratch[flag_name].value, (name, flag_name)
    # config.json records every setting but where the run reads and writes and how it reports.
    assert set(config.record()) == {f.name for f in dataclasses.fields(config)} - set(train_config.NOT_RECORDED)


def test_continuing_with_other_settings_keeps_the_earlier_ones(records_dir, tmp_path):
  model_dir = tmp_path / "run"
  args = ("--model=rnn", f"--records={records_dir}", f"--model_dir={model_dir}", "--steps_per_epoch=1",
          "--eval_steps=1", "--export=false")
  assert verbs.run("train", *args, "--epochs=1").returncode == 0
  assert "training_history" not in _training(model_dir)
  result = verbs.run("train", *args, "--epochs=2", "--batch_size=4")
  assert result.returncode == 0, result.stderr[-3000:]
  assert "continues with other settings (batch_size 8 -> 4; epochs 1 -> 2)" in result.stdout
  config = _training(model_dir)
  assert config["training"]["batch_size"] == 4 and config["training"]["epochs"] == 2
  [earlier] = config["training_history"]
  assert earlier["epochs_done"] == 1 and earlier["training"]["batch_size"] == 8  # configs/rnn.cfg's batch size.
  assert earlier["training"]["epochs"] == 1
  result = verbs.run("train", *args, "--epochs=2", "--batch_size=4")  # The same settings again: nothing new.
  assert result.returncode == 0 and "continues with other settings" not in result.stdout
  assert _training(model_dir)["training_history"] == [earlier]


def test_a_run_records_its_config_file_and_flags(records_dir, tmp_path):
  # configs/bilstm.cfg: weight decay 6e-4, lr 1e-3 (table 1 of the report); the command line wins over it.
  result = verbs.run("train", "--model=bilstm", f"--records={records_dir}", f"--model_dir={tmp_path / 'run'}",
                     "--learning_rate=0.002", "--seed=3", "--augment", *TRAIN_ARGS)
  assert result.returncode == 0, result.stderr[-3000:]
  config = _training(tmp_path / "run")
  training = config["training"]
  assert training["weight_decay"] == 0.0006 and training["learning_rate"] == 0.002 and training["seed"] == 3
  assert training["batch_size"] == 64 and training["augment"]["rotation"] > 0  # configs/bilstm.cfg; --augment.
  assert config["version"] and "records_dir" not in training


def test_unknown_options_and_config_keys_fail_with_the_valid_names(records_dir, tmp_path, monkeypatch):
  result = verbs.run("train", "--model=rnn", f"--records={records_dir}", f"--model_dir={tmp_path / 'a'}",
                     "--model_option=activaton=relu", *TRAIN_ARGS)
  assert result.returncode == 1 and "unknown option(s) activaton for model 'rnn'; valid: init, activation" in (
      result.stderr)
  assert not os.path.exists(tmp_path / "a")
  # A known option with a bad value: found when the model is built, before the run directory is written.
  result = verbs.run("train", "--model=rnn", f"--records={records_dir}", f"--model_dir={tmp_path / 'a'}",
                     "--model_option=init=pytorch", *TRAIN_ARGS)
  assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-3000:]
  assert "train: error: --model_option: init must be one of keras, torch, got 'pytorch'" in result.stderr
  assert not os.path.exists(tmp_path / "a" / "config.json")
  cfg = tmp_path / "rnn.cfg"
  monkeypatch.setattr(train_config, "config_path", lambda model: cfg)
  for text, message in (("# a comment\n--learning_rat=0.1\n", f"{cfg}:2: unknown flag --learning_rat; valid: "),
                        ("--batch_size=-3\n", f"{cfg}:1: "), ("learning_rate 0.1\n", f"{cfg}:1: not a --flag=value")):
    cfg.write_text(text)
    result = verbs.run("train", "--model=rnn", f"--records={records_dir}", f"--model_dir={tmp_path / 'b'}",
                       *TRAIN_ARGS)
    assert result.returncode == 1 and message in result.stderr, (text, result.stderr)
    assert "Traceback" not in result.stderr and not os.path.exists(tmp_path / "b")
    if "learning_rat=" in text:  # The valid names are train's flags.
      valid = result.stderr.split("valid: ", 1)[1].split(", ")
      assert {"learning_rate", "clip_norm", "batch_size"} <= set(valid) and "verbosity" not in valid
  cfg.unlink()
  result = verbs.run("train", "--model=rnn", f"--records={records_dir}", f"--model_dir={tmp_path / 'c'}", *TRAIN_ARGS)
  assert result.returncode == 1 and "cannot read the training config of model 'rnn'" in result.stderr


def test_a_normal_install_trains_with_the_published_defaults(records_dir, tmp_path):
  """pip install . (not editable) of a copy, run from outside the source tree with this environment's packages."""
  source = tmp_path / "source"
  shutil.copytree(REPO, source, symlinks=True, ignore=shutil.ignore_patterns(
      ".git", "build", "dist", "*.egg-info", "__pycache__", "tfrecords", "runs", ".pytest_cache"))
  site = tmp_path / "site"
  # Built offline by this environment's setuptools (the tests extra asks for one that needs no `wheel` package) into
  # a folder of its own, which goes ahead of this environment's quickdraw_tf (an editable one, say) on the path.
  result = subprocess.run([sys.executable, "-m", "pip", "install", "-q", "--no-deps", "--no-build-isolation",
                           "--no-index", f"--target={site}", str(source)],
                          check=False, capture_output=True, text=True, timeout=600, cwd=tmp_path)
  assert result.returncode == 0, result.stderr[-3000:]
  shutil.rmtree(source)  # Nothing can come from the source tree now.
  env = {**os.environ, **verbs.QUIET, "PYTHONPATH": str(site)}
  where = subprocess.run([sys.executable, "-c", "import quickdraw_tf; print(quickdraw_tf.__file__)"],
                         capture_output=True, text=True, check=True, cwd=tmp_path, env=env)
  assert where.stdout.startswith(str(site / "quickdraw_tf")), where.stdout
  model_dir = tmp_path / "run"
  result = subprocess.run([sys.executable, "-m", "quickdraw_tf.train", "--model=rnn", f"--records={records_dir}",
                           f"--model_dir={model_dir}", *TRAIN_ARGS], check=False, capture_output=True, text=True,
                          timeout=600, cwd=tmp_path, env=env)
  assert result.returncode == 0, result.stderr[-3000:]
  training = _training(model_dir)["training"]
  # Google's tutorial, configs/rnn.cfg: Adam at 1e-4, gradients clipped to norm 9, batches of 8.
  assert (training["learning_rate"], training["clip_norm"], training["batch_size"]) == (1e-4, 9.0, 8)


def test_a_config_out_of_range_names_the_setting():
  with pytest.raises(train_config.ConfigError, match=r"lr_factor=0\.0, budget_clock='gpu' out of range"):
    train_config.TrainConfig("rnn", "r", "m", lr_factor=0.0, budget_clock="gpu")
  config = train_config.TrainConfig("rnn", "r", "m", model_options={"dropout": 0.1})
  with pytest.raises(TypeError):
    config.model_options["dropout"] = 0.5  # Frozen, options included.
  assert config.record()["model_options"] == {"dropout": 0.1} and "model_dir" not in config.record()


def test_vgg19_fine_tunes_its_last_block_at_a_lower_rate():
  spec = models.get("vgg19")
  assert [(s.last_epoch, s.learning_rate_scale) for s in spec.stages({"weights_path": "w.h5"}, 5, 2)] == [
      (2, 1.0), (5, 0.01)]
  assert [(s.last_epoch, s.learning_rate_scale) for s in spec.stages({}, 5, 2)] == [(5, 1.0)]
  assert models.get("rnn").stages is None
