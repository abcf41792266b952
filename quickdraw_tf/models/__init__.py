"""The model zoo: `--model` names -> builders and what each one reads.

Every classifier takes one dict (``ink`` and ``ink_length`` and/or ``image``,
see `quickdraw_tf.pipelines.data`) and returns float32 logits ``[batch, num_classes]``.
Generative models (``trainer`` set) read and train their own way.
"""

import dataclasses
import inspect
from typing import Callable
from typing import Optional

from quickdraw_tf import cli
from quickdraw_tf.models import alexnet
from quickdraw_tf.models import bilstm
from quickdraw_tf.models import common
from quickdraw_tf.models import fusion
from quickdraw_tf.models import resnet18
from quickdraw_tf.models import rnn
from quickdraw_tf.models import sketch_rnn
from quickdraw_tf.models import sketchanet
from quickdraw_tf.models import vgg19


@dataclasses.dataclass(frozen=True)
class Stage:
  """A stretch of training: until which epoch, at which share of the learning rate, with what trainable."""
  last_epoch: int
  learning_rate_scale: float = 1.0
  prepare: Callable = lambda model: None  # Sets what trains (keras.Model -> None).


@dataclasses.dataclass(frozen=True)
class ModelSpec:
  """A model of the zoo: its builder and what it reads."""
  name: str
  build: Callable
  description: str
  ink_channels: int = 0  # 3: the tutorial's ink; 5: stroke-5; 0: reads no ink
  image_size: int = 0  # default image side; 0: reads no image
  trainer: str = ""  # a module whose train() trains it in place of train's classifier loop
  # (model_options, epochs, head_epochs) -> [Stage]; None: one stage of all epochs.
  stages: Optional[Callable] = None

  @property
  def uses_ink(self):
    return self.ink_channels > 0

  @property
  def uses_image(self):
    return self.image_size > 0


MODELS = {spec.name: spec for spec in (
    ModelSpec("rnn", rnn.build, "Google's tutorial: conv1d x3 -> BiLSTM x3 -> sum", ink_channels=3),
    ModelSpec("bilstm", bilstm.build, "sketch-rnn encoder: BiLSTM 256x2 on stroke-5", ink_channels=5),
    ModelSpec("sketchanet", sketchanet.build, "Sketch-a-Net (Yu et al. 2015)", image_size=sketchanet.IMAGE_SIZE),
    ModelSpec("alexnet", alexnet.build, "AlexNet, the report's batch-norm variant", image_size=alexnet.IMAGE_SIZE),
    ModelSpec("resnet18", resnet18.build, "ResNet-18, basic blocks", image_size=resnet18.IMAGE_SIZE),
    ModelSpec("fusion", fusion.build, "Sketch-a-Net + BiLSTM -> 1024 -> 512", ink_channels=5,
              image_size=fusion.IMAGE_SIZE),
    ModelSpec("vgg19", vgg19.build, "VGG19 backbone, new head (transfer)", image_size=vgg19.IMAGE_SIZE,
              stages=lambda options, epochs, head_epochs: [Stage(*s) for s in vgg19.stages(options, epochs,
                                                                                            head_epochs)]),
    ModelSpec("sketch_rnn", sketch_rnn.build, "Sketch-RNN VAE: BiLSTM 256 -> z 128 -> LSTM 512 -> 20 normals + pen",
              ink_channels=5, trainer="quickdraw_tf.training.sketch_rnn_train"),
    ModelSpec("sketch_rnn_uncond", sketch_rnn.build_unconditional, "Sketch-RNN decoder alone, unconditional",
              ink_channels=5, trainer="quickdraw_tf.training.sketch_rnn_train"),
)}


def get(name):
  """The spec of a model name; ValueError listing the valid names otherwise."""
  cli.check_choice(name, MODELS, "model")
  return MODELS[name]


def check_options(name, options):
  """ValueError naming the valid options unless every key of ``options`` is one of model ``name``'s."""
  spec = get(name)
  if spec.trainer:  # A generative model checks its own (many) options when built.
    return
  valid = ["init", *(p for p in inspect.signature(spec.build).parameters if p not in ("num_classes", "image_size"))]
  unknown = sorted(set(options) - set(valid))
  if unknown:
    raise ValueError(f"unknown option(s) {', '.join(unknown)} for model {name!r}; valid: {', '.join(valid)}")


def build(name, num_classes, image_size=None, init="keras", **kwargs):
  """Builds a model by name (under the current strategy scope and dtype policy).

  Args:
    name: a key of `MODELS`.
    num_classes: size of the logits.
    image_size: image side for image models (default: the spec's).
    init: "keras" (Keras' initialisers) or "torch" (the weights redrawn as
      PyTorch initialises them, `common.torch_initialize`).
    **kwargs: model options (e.g. ``activation`` for rnn, ``variant`` for
      alexnet, ``weights_path`` for vgg19).

  Returns:
    keras.Model.
  """
  spec = get(name)
  check_options(name, {"init": init, **kwargs})
  if init not in common.INITS:
    raise ValueError(f"init must be one of {', '.join(common.INITS)}, got {init!r}")
  if init == "torch" and kwargs.get("weights_path"):
    raise ValueError("init=torch would redraw the pretrained weights of weights_path: give one or the other")
  if spec.uses_image:
    kwargs["image_size"] = image_size or spec.image_size
  model = spec.build(num_classes, **kwargs)
  if init == "torch":
    common.torch_initialize(model)
  return model
