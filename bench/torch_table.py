"""bench.torch_accuracy's side-by-side table: ours (bench.accuracy --converge) against the original code, per row.

Results are result dicts as bench.accuracy and bench.torch_accuracy write
them (test metrics, epochs, CPU seconds, learning curve, the key they ran
under), read from <results_dir>/bench_accuracy_converged/<data>/<model>.json
and <results_dir>/bench_torch_accuracy/<data>/<model>.json.
"""

import json
import os
import sys

from bench import converge
from bench import report
from bench import targets

OURS, ORIGINAL = "bench_accuracy_converged", "bench_torch_accuracy"
# Where a row has no result yet, in the order bench.torch_accuracy trains them.
ROWS = ("sketchanet@vec17", "alexnet@vec17", "resnet18@vec17", "fusion@vec17", "bilstm@vec17", "rnn@vec17",
        "resnet18@bmp22", "alexnet@bmp22", "sketchanet@bmp22")
COLUMNS = ["model", "data", "ours: test top-1", "original: test top-1", "ours - original", "ours / original",
           "verdict", "epochs (ours / original)", "training CPU s (ours / original)",
           "evaluation every, steps (ours / original)", "original ended by"]


def read(results_dir, run, model, data_name):
  """The result dict of one run and row, or None where there is none."""
  path = os.path.join(results_dir, run, data_name, f"{model}.json")
  if not os.path.exists(path):
    return None
  with open(path, encoding="utf-8") as f:
    return json.load(f)


def eval_every(result):
  """Steps between a result's evaluations: its --steps_per_epoch, or one pass over its training split."""
  for flag in result["key"].get("train_flags", []):
    if flag.startswith("--steps_per_epoch="):
      return int(flag.partition("=")[2])
  return result.get("eval_period") or converge.one_pass(result["key"]["train"]["train"], result["batch_size"])


def verdict(ours, original):
  """(difference text, verdict): ours against the original, in standard errors of the difference."""
  difference = ours["test"]["top1_accuracy"] - original["test"]["top1_accuracy"]
  error = (targets.standard_error(ours) ** 2 + targets.standard_error(original) ** 2) ** 0.5
  if not error:
    return f"{difference:+.4f}", "met" if difference >= 0 else "**not met**"
  met = difference >= -error
  return f"{difference:+.4f} ({difference / error:+.1f} SE)", "met" if met else "**not met**"


def row(model, data_name, ours, original):
  """One table row; '-' and pending where a side has no result."""
  cells = [f"`{model}`", data_name]
  for r in (ours, original):
    cells.append(f"{r['test']['top1_accuracy']:.4f} +- {targets.standard_error(r):.4f}" if r else "pending")
  if not (ours and original):
    return cells + ["-", "-", "pending", "-", "-", "-", "-"]
  difference, met = verdict(ours, original)
  ratio = ours["test"]["top1_accuracy"] / original["test"]["top1_accuracy"]
  cpu = f"{ours['fit_cpu_s']:.0f} / {original['fit_cpu_s']:.0f}"
  return cells + [difference, f"{ratio:.2f}", met, f"{ours['epochs']:.1f} / {original['epochs']:.1f}", cpu,
                  f"{eval_every(ours)} / {eval_every(original)}", targets.how_stopped(original)]


def rows(results_dir):
  """Every row of `ROWS`: (model, data, ours or None, original or None)."""
  out = []
  for name in ROWS:
    model, _, data_name = name.partition("@")
    out.append((model, data_name, read(results_dir, OURS, model, data_name),
                read(results_dir, ORIGINAL, model, data_name)))
  return out


def procedure_text(originals):
  """What each side is and how it trained: the section's first paragraph, from the original results there are."""
  text = (
      "Ours: `python -m bench.accuracy --converge` (the converged section above, each model's default run). "
      "Original: the reference report's PyTorch models (`bench/torch_models.py`) trained by `bench/torch_train.py` "
      "with the report's procedure: Adam at 1e-3, batch 64, PyTorch's weight decay (1e-3 for the CNNs, 6e-4 for "
      "the BiLSTM and CNN+RNN), ReduceLROnPlateau (factor 0.3, patience 2) on each evaluation period's mean "
      "training loss, PyTorch's initialisation, the best weights by eval top-1; `rnn` with Google's "
      "train_model.py settings (batch 8, Adam 1e-4, gradients clipped to norm 9, constant rate); `bilstm` and "
      "`fusion`'s RNN on stroke-5 offsets scaled by their standard deviation and padded to the longest drawing "
      "with its output at the last padded step, as the report's loader and model. Same records, same splits, "
      "same drawings read through quickdraw_tf's input pipeline (so the same images at the same side: 64 px, "
      "resnet18 28 px, where the report resizes to 225 px), same stopping rule (eval top-1 not improved for "
      f"{converge.PATIENCE} evaluations, or {converge.CAP:g} CPU seconds of the training process, evaluations "
      "included).")
  if not originals:
    return text + " No original run has finished yet."
  versions = ", ".join(sorted({r["torch"] for r in originals}))
  threads = ", ".join(str(t) for t in sorted({r["threads"] for r in originals}))
  return (text + f" PyTorch {versions} with {threads} thread(s): more threads spin-wait on a shared machine, "
          "burning CPU seconds that the cap counts.")


def body(results_dir):
  """The section's text: what each side is, the table, the rows still pending."""
  found = rows(results_dir)
  pending = [f"{m}@{d}" for m, d, ours, original in found if not (ours and original)]
  goal = ("Test top-1 +- its binomial standard error over the test drawings; ours - original in standard errors "
          "of the difference (the two errors in quadrature). Goal: ours >= original within one standard error "
          "(verdict met when ours - original >= -1 SE).")
  text = [procedure_text([r for *_, r in found if r]), "", goal, "", report.table(COLUMNS, [row(*r) for r in found])]
  if pending:
    text += ["", f"Pending ({len(pending)}): " + ", ".join(f"`{p}`" for p in pending) + ". `python -m "
             "bench.torch_accuracy --reuse` trains them in that order, keeping every committed result."]
  return "\n".join(text)


def render(results_dir):
  """Writes the ``torch_accuracy`` section of BENCHMARKS.md from the results there are."""
  kept = [a for a in sys.argv[1:] if a not in ("--reuse", "--render") and not a.startswith("--rows")]
  command = " ".join(["python -m bench.torch_accuracy --reuse"] + kept)  # What trains every row; --render redraws.
  report.write_section("torch_accuracy", "Converged accuracy beside the original code, same drawings (CPU)",
                       command, body(results_dir))
