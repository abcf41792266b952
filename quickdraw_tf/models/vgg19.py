"""VGG19 transfer learning (visualisation report): ImageNet backbone, new head.

Train the head with the backbone frozen (``set_trainable(model, "head")``),
then fine-tune its last block (``"finetune"``). ImageNet weights come from a
local file (``weights_path``: Keras' ``vgg19_weights_tf_dim_ordering_tf_
kernels_notop.h5``); without one the backbone starts from random weights.

Against the visualisation report (Keras, cats vs dogs), what differs and why:
  * Head: the report flattens the block5 features into dense layers (a
    single sigmoid unit for its two classes); ours pools them globally (the
    flattened 2x2x512 of a 64 px input, or 7x7x512 of a 224 px one, would tie
    the head to the image size) into dense 256 + ReLU, dropout 0.5 and
    softmax logits.
  * Optimiser: the report's RMSprop at 1e-5; ours configs/vgg19.cfg (Adam
    1e-3 as the other image models) because without ImageNet weights (no
    network here) the whole network trains from scratch.
  * It unfreezes the four convolutions of block 5, as ``"finetune"`` does.
  * No batch norm (VGG19 has none).
"""

import os

from absl import logging
import keras
from keras import layers
from keras import ops

from quickdraw_tf.models import common

IMAGE_SIZE = 64  # VGG19 needs at least 32 px.
FINETUNE_LEARNING_RATE_SCALE = 0.01  # of the head stage's rate, see `stages`
BACKBONE = "vgg19"


def build(num_classes, image_size=IMAGE_SIZE, weights_path=None):
  """keras.Model: {image [b, s, s, 1]} -> logits float32 [b, classes].

  Raises:
    FileNotFoundError: ``weights_path`` given but not a file.
  """
  image = common.image_input(image_size)
  # ImageNet filters expect dark strokes on a light photo-like background,
  # 0-255 BGR with the ImageNet means removed.
  rgb = ops.repeat((1.0 - image) * 255.0, 3, axis=-1)
  x = keras.applications.vgg19.preprocess_input(rgb)
  backbone = keras.applications.VGG19(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
  backbone.name = BACKBONE
  if weights_path:
    if not os.path.isfile(weights_path):
      raise FileNotFoundError(f"no VGG19 weights file at {weights_path!r} (--vgg19_weights): give Keras' "
                              "vgg19_weights_tf_dim_ordering_tf_kernels_notop.h5, or no flag for random weights")
    backbone.load_weights(weights_path)
  else:
    logging.warning("vgg19: no --vgg19_weights file given (there is no network here to fetch ImageNet weights); "
                    "the backbone starts from random initialisation")
  x = backbone(x)
  x = layers.GlobalAveragePooling2D(name="pool")(x)
  x = layers.Dense(256, activation="relu", name="fc_head")(x)
  x = layers.Dropout(0.5, name="fc_head_dropout")(x)
  return keras.Model({"image": image}, common.logits(x, num_classes), name="vgg19")


def stages(options, epochs, head_epochs):
  """train's stages: [(last epoch, learning-rate scale, prepare(model))].

  With ImageNet weights (``options["weights_path"]``): the head alone on the
  frozen backbone for ``head_epochs``, then block 5 too at a hundredth of the
  rate (keras-io's "Transfer learning & fine-tuning": Adam at 1e-3 for the new
  head, 1e-5 once the base is unfrozen, so that large updates do not wreck the
  pretrained features). Without them: everything, at the full rate.
  """
  if options.get("weights_path"):
    return [(min(head_epochs, epochs), 1.0, lambda model: set_trainable(model, "head")),
            (epochs, FINETUNE_LEARNING_RATE_SCALE, lambda model: set_trainable(model, "finetune"))]
  return [(epochs, 1.0, lambda model: set_trainable(model, "all"))]


def set_trainable(model, stage):
  """Which layers train.

  Args:
    model: built by `build`.
    stage: "head" (backbone frozen), "finetune" (the backbone's last block
      and the head) or "all" (everything: from scratch, without ImageNet
      weights a frozen random backbone would only be random features).
  """
  if stage not in ("head", "finetune", "all"):
    raise ValueError(f"stage must be 'head', 'finetune' or 'all', got {stage!r}")
  backbone = model.get_layer(BACKBONE)
  backbone.trainable = stage != "head"  # Reaches every layer inside.
  if stage == "finetune":
    for layer in backbone.layers:
      layer.trainable = layer.name.startswith("block5")
