"""Plots of benchmark results, drawn with matplotlib (``pip install .[bench]`` installs it).

Figures are made with matplotlib's object API (`matplotlib.figure.Figure`), not
pyplot: no backend is chosen and no global state is touched.
"""

import math

import matplotlib
from matplotlib import figure

# matplotlib's tab10, then 3 more; past 13 lines a panel the colours come round with the next (line, marker).
COLOURS = (*matplotlib.colormaps["tab10"].colors, "black", "navy", "maroon")
LINE_STYLES = (("-", "o"), ("--", "s"), (":", "^"))
PANEL_SIZE = (8.0, 5.0)  # inches, legend included


def curve(result, x_axis="seconds"):
  """[(x, eval top-1)] of a bench.accuracy result: x in training wall seconds, or epochs."""
  return result["curve_epochs"] if x_axis == "epochs" else result["curve"]


def accuracy_curves(panels, path, x_axis="seconds"):
  """Writes a PNG: one panel per data set, eval top-1 after each epoch of each run, its test top-1 as a ringed dot.

  Args:
    panels: list of (title, results); a result is a dict with ``label``,
      ``curve`` [(wall seconds, eval top-1)], ``curve_epochs`` [(epochs, eval
      top-1)] and ``test`` {"top1_accuracy": float} (bench.accuracy's).
    path: the PNG to write.
    x_axis: "seconds" or "epochs".
  """
  x_max = max(curve(r, x_axis)[-1][0] for _, results in panels for r in results) * 1.03
  fig = figure.Figure(figsize=(PANEL_SIZE[0] * len(panels), PANEL_SIZE[1]), layout="constrained")
  for axes, (title, results) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels):
    for i, result in enumerate(results):
      colour, test = COLOURS[i % len(COLOURS)], result["test"]["top1_accuracy"]
      line, marker = LINE_STYLES[(i // len(COLOURS)) % len(LINE_STYLES)]
      xs, ys = zip(*curve(result, x_axis))
      axes.plot(xs, ys, linestyle=line, marker=marker, color=colour, markersize=3, linewidth=1.5,
                label=f"{result['label']}: {test:.3f}")
      axes.plot(xs[-1], test, "o", color=colour, markersize=9, markeredgecolor="black")
    top = max([r["test"]["top1_accuracy"] for r in results] + [y for r in results for _, y in curve(r, x_axis)])
    axes.set(title=title, xlim=(0, x_max), ylim=(0, min(1.0, math.ceil(top * 10 + 0.5) / 10)),
             xlabel="training epochs" if x_axis == "epochs" else "training time, wall seconds (machine shared)",
             ylabel="top-1 accuracy\n(line: eval after each epoch; ringed dot: test)")
    axes.grid(color="0.9")
    axes.legend(loc="upper left", bbox_to_anchor=(1.02, 1), fontsize=8, frameon=False, title="test top-1")
  fig.savefig(path, dpi=100)
