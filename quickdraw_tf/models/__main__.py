"""python -m quickdraw_tf.models: the model names, their sizes and inputs."""

import sys

from quickdraw_tf import models
from quickdraw_tf import progress


def main(num_classes=17):
  """Prints a table on stdout: each model of `models.MODELS` built for ``num_classes``, its parameters and inputs."""
  progress.write(f"{'model':<11} {'parameters':>12}  inputs ({num_classes} classes)  description")
  for name, spec in models.MODELS.items():
    model = models.build(name, num_classes)
    if spec.trainer:  # A subclassed generative model: no symbolic inputs.
      inputs = f"strokes (None, {model.hparams.max_seq_len}, 5) float32, length (None,) int32"
    else:
      inputs = ", ".join(f"{key} {tuple(x.shape)} {x.dtype}" for key, x in sorted(model.input.items()))
    progress.write(f"{name:<11} {model.count_params():>12,}  {inputs}  {spec.description}")


if __name__ == "__main__":
  main(int(sys.argv[1]) if len(sys.argv) > 1 else 17)
