"""VGG19 transfer learning (visualisation report): ImageNet backbone, new head.

Train the head with the backbone frozen (``set_trainable(model, "head")``),
then fine-tune its last block (``"finetune"``). ImageNet weights come from a
local file (``weights_path``: Keras' ``vgg19_weights_tf_dim_ordering_tf_
kernels_notop.h5``); without one the backbone starts from random weights.
"""

from absl import logging
import keras
from keras import layers
from keras import ops

from quickdraw_tf.models import common

IMAGE_SIZE = 64  # VGG19 needs at least 32 px.
BACKBONE = "vgg19"


def build(num_classes, image_size=IMAGE_SIZE, weights_path=None, **unused):
  """keras.Model: {image [b, s, s, 1]} -> logits float32 [b, classes]."""
  image = common.image_input(image_size)
  # ImageNet filters expect dark strokes on a light photo-like background,
  # 0-255 BGR with the ImageNet means removed.
  rgb = ops.repeat((1.0 - image) * 255.0, 3, axis=-1)
  x = keras.applications.vgg19.preprocess_input(rgb)
  backbone = keras.applications.VGG19(include_top=False, weights=None, input_shape=(image_size, image_size, 3))
  backbone.name = BACKBONE
  if weights_path:
    backbone.load_weights(weights_path)
  else:
    logging.warning("vgg19: no --vgg19_weights file given (there is no network here to fetch ImageNet weights); "
                    "the backbone starts from random initialisation")
  x = backbone(x)
  x = layers.GlobalAveragePooling2D(name="pool")(x)
  x = layers.Dense(256, activation="relu", name="fc_head")(x)
  x = layers.Dropout(0.5, name="fc_head_dropout")(x)
  return keras.Model({"image": image}, common.logits(x, num_classes), name="vgg19")


def set_trainable(model, stage):
  """Freezes the backbone ("head") or unfreezes only its last block ("finetune")."""
  if stage not in ("head", "finetune"):
    raise ValueError(f"stage must be 'head' or 'finetune', got {stage!r}")
  backbone = model.get_layer(BACKBONE)
  backbone.trainable = stage == "finetune"
  if stage == "finetune":
    for layer in backbone.layers:
      layer.trainable = layer.name.startswith("block5")
