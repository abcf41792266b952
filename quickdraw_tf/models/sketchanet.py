"""Sketch-a-Net (Yu et al. 2015), single scale.

conv1 15x15/3 64 -> pool 3/2 -> conv2 5x5 128 -> pool -> conv3-5 3x3 256 ->
pool -> fc6 (7x7 conv 512) -> dropout -> fc7 (1x1 conv 512) -> dropout ->
classifier. 225 px input by default; smaller inputs switch a layer to 'same'
padding where 'valid' would leave nothing, and fc6 spans what is left.

Against the reference report's code (LogCreative/quickdraw-classifier,
models/sketchnet.py), layer by layer the same at 225 px (conv1 and conv2
unpadded, conv3-5 padding 1, pools 3/2 unpadded, fc6 7x7 -> 1x1, fc7 1x1, no
batch norm). What differs, and why:
  * Dropout: the report calls the functional ``F.dropout(x)`` after fc6 and
    fc7, which stays active at evaluation too (its ``training`` defaults to
    True); ours drops out in training only. A defect, not copied.
  * Initialisation: PyTorch's uniform +-1/sqrt(fan_in) weights and biases
    there; Keras' Glorot-uniform and zero biases here unless ``init="torch"``
    (`quickdraw_tf.models.build`).
  * Input: the report resizes its 28 px images to 225 px; bench/accuracy.py
    trains at 64 px to fit its CPU budget.
"""

import keras
from keras import layers

from quickdraw_tf.models import common

IMAGE_SIZE = 225


def trunk(image, size):
  """image ``[b, size, size, 1]`` -> features float ``[b, 512]`` (fc7)."""
  x = image
  for name, filters, kernel, stride in (("conv1", 64, 15, 3), ("pool1", 0, 3, 2), ("conv2", 128, 5, 1),
                                        ("pool2", 0, 3, 2), ("conv3", 256, 3, 1), ("conv4", 256, 3, 1),
                                        ("conv5", 256, 3, 1), ("pool5", 0, 3, 2)):
    padding = "same" if name in ("conv3", "conv4", "conv5") else common.padding_that_fits(size, kernel, stride)
    if filters:
      x = layers.Conv2D(filters, kernel, stride, padding=padding, activation="relu", name=name)(x)
    else:
      x = layers.MaxPooling2D(kernel, stride, padding=padding, name=name)(x)
    size = common.output_size(size, kernel, stride, padding)
  x = layers.Conv2D(512, min(7, size), activation="relu", name="fc6")(x)
  x = layers.Dropout(0.5, name="fc6_dropout")(x)
  x = layers.Conv2D(512, 1, activation="relu", name="fc7")(x)
  x = layers.Dropout(0.5, name="fc7_dropout")(x)
  return layers.Flatten(name="fc7_flat")(x)


def build(num_classes, image_size=IMAGE_SIZE):
  """keras.Model: {image [b, s, s, 1]} -> logits float32 [b, classes]."""
  image = common.image_input(image_size)
  return keras.Model({"image": image}, common.logits(trunk(image, image_size), num_classes), name="sketchanet")
