"""bench.accuracy's targets table (bench.targets) and its --variants grammar (bench.variants), from made-up results."""

from absl import app
import pytest

from bench import targets
from bench import variants


def _result(model, top1, epochs=4.0, cpu_s=100.0, budget=3600.0, curve=(0.3, 0.5, 0.4), label=None, records=None):
  return {"model": model, "label": label or model, "epochs": epochs, "fit_cpu_s": cpu_s,
          "key": {"budget": budget, "records": records},
          "test": {"top1_accuracy": top1, "examples": 400},
          "curve_epochs": [[i + 1.0, acc] for i, acc in enumerate(curve)], "best_eval_top1": max(curve)}


def test_best_model_answers_a_target_and_a_shortfall_is_marked():
  runs = {"vec": [_result("rnn", 0.70, curve=(0.3, 0.6)), _result("alexnet", 0.74)],
          "bmp": [_result("alexnet", 0.91, curve=(0.5, 0.9)), _result("resnet18", 0.87, cpu_s=3650.0, curve=(0.5, 0.8))]}
  rows = {(row[0], row[1]): row for row in targets.target_rows(runs, "vec17", "bmp22")}
  assert rows["bmp22", "best model >= 0.90"][2:6] == ["`alexnet`", "0.9000", "0.9100 +- 0.0143", "met"]
  resnet = rows["bmp22", "resnet18 >= 0.88"]
  assert resnet[5] == "**not met**"
  assert resnet[6] == "cap, 4.0 epochs; best eval at the last of 2 evaluations"
  assert rows["vec17", "best model >= 0.72"][2:6] == ["`rnn`", "0.6000", "0.7000 +- 0.0229", "**not met**"]
  assert rows["vec17", "best model >= 0.75"][6] == "patience, 4.0 epochs; best eval at the last of 2 evaluations"
  assert rows["vec17", "best model >= 0.75"][7] == "-"  # no original result given
  assert ("vec17", "fusion ahead of sketchanet and bilstm") not in rows  # fusion did not run


def test_the_best_eval_answers_never_the_best_test_figure():
  runs = {"vec": [_result("alexnet", 0.80, curve=(0.5, 0.60)), _result("resnet18", 0.70, curve=(0.5, 0.61))],
          "bmp": []}
  row = targets.target_rows(runs, "vec17", "bmp22")[0]
  assert row[1:6] == ["best model >= 0.72", "`resnet18`", "0.6100", "0.7000 +- 0.0229", "**not met**"]


def test_the_originals_best_by_eval_stands_beside_a_best_model_target_and_the_same_model_beside_a_models():
  originals = {("resnet18", "vec17"): _result("resnet18", 0.64, curve=(0.5, 0.62)),
               ("fusion", "vec17"): _result("fusion", 0.66, curve=(0.5, 0.61)),  # better test, worse eval
               ("sketchanet", "bmp22"): _result("sketchanet", 0.85, curve=(0.5, 0.86))}
  runs = {"vec": [_result("resnet18", 0.66), _result("fusion", 0.60, curve=(0.3, 0.7)), _result("sketchanet", 0.5),
                  _result("bilstm", 0.4)], "bmp": [_result("resnet18", 0.9), _result("sketchanet", 0.86)]}
  rows = targets.target_rows(runs, "vec17", "bmp22", lambda model, data: originals.get((model, data)))
  by_target = {(row[0], row[1]): row for row in rows}
  assert by_target["vec17", "best model >= 0.72"][2] == "`fusion`"
  assert by_target["vec17", "best model >= 0.72"][7] == "`resnet18` 0.6400 +- 0.0240"
  assert by_target["bmp22", "best model >= 0.90"][7] == "`sketchanet` 0.8500 +- 0.0179"
  assert by_target["bmp22", "resnet18 >= 0.88"][7] == "-"  # the original resnet18 ran on vec17 only
  assert by_target["vec17", "fusion ahead of sketchanet and bilstm"][7] == "`fusion` 0.6600 +- 0.0237"


def test_fusion_row_compares_with_the_better_branch_on_vec17_only():
  vec = [_result("fusion", 0.60), _result("sketchanet", 0.62), _result("bilstm", 0.40)]
  row = targets.target_rows({"vec": vec, "bmp": []}, "vec17", "bmp22")[-1]
  assert row[1] == "fusion ahead of sketchanet and bilstm"
  assert row[4] == "0.6000 +- 0.0245 (sketchanet 0.6200, bilstm 0.4000)"
  assert row[5].startswith("**not met**: -0.0200")
  assert targets.target_rows({"vec": vec, "bmp": []}, "vec4", "bmp4") == []  # --quick: other categories


def test_a_variant_may_set_several_train_flags_and_each_must_be_one():
  assert variants.parse("alexnet@vec17:--augment --steps_per_epoch=500") == (
      "alexnet", "vec17", "--augment --steps_per_epoch=500", {}, ["--augment", "--steps_per_epoch=500"])
  with pytest.raises(app.UsageError, match="each --name or --name=value"):
    variants.parse("alexnet:--augment steps_per_epoch=500")
  with pytest.raises(app.UsageError, match="each --name or --name=value"):
    variants.parse("alexnet:--augment --")  # "--" would end train's flags


def test_a_perfect_or_empty_test_figure_gives_a_verdict_or_a_clear_error():
  vec = [_result("fusion", 1.0), _result("sketchanet", 0.5), _result("bilstm", 0.5)]
  row = targets.target_rows({"vec": vec, "bmp": []}, "vec17", "bmp22")[-1]
  assert row[4].startswith("1.0000 +- 0.0000") and row[5] == "met: +0.5000, no spread (test top-1 of 0 or 1)"
  empty = _result("alexnet", 0.5)
  empty["test"]["examples"] = 0
  with pytest.raises(ValueError, match="alexnet: its result has no test examples"):
    targets.target_rows({"vec": [empty], "bmp": []}, "vec17", "bmp22")


def test_a_variant_answers_a_target_under_its_label_on_its_own_data_only():
  runs = {"vec": [_result("alexnet", 0.64)], "bmp": [_result("resnet18", 0.90)],
          "variants": [(None, _result("alexnet", 0.73, label="alexnet --augment", records="bench_vec17",
                                      curve=(0.5, 0.7))),
                       (None, _result("resnet18", 0.95, label="resnet18 --augment", records="bench_vec17",
                                      curve=(0.5, 0.9)))]}
  rows = {(row[0], row[1]): row for row in targets.target_rows(runs, "vec17", "bmp22")}
  assert rows["vec17", "best model >= 0.75"][2:6] == ["`resnet18 --augment`", "0.9000", "0.9500 +- 0.0109", "met"]
  assert rows["bmp22", "resnet18 >= 0.88"][2] == "`resnet18`"  # the vec17 variant does not answer for bmp22
