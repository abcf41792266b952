"""AlexNet (Krizhevsky et al. 2012) for one-channel sketches.

5 convolutions, 3 overlapping 3x3/2 max-pools, local response normalisation
after conv1 and conv2, FC 4096-4096 with dropout 0.5. 225 px input by default
(the report resizes the 28x28 bitmaps to 225).
"""

import keras
from keras import layers
import tensorflow as tf

from quickdraw_tf.models import common

IMAGE_SIZE = 225


class LocalResponseNormalization(layers.Layer):
  """AlexNet's LRN (n=5, k=2, alpha=1e-4, beta=0.75), computed in float32."""

  def call(self, x):
    y = tf.nn.local_response_normalization(tf.cast(x, tf.float32), depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75)
    return tf.cast(y, x.dtype)


def build(num_classes, image_size=IMAGE_SIZE, **unused):
  """keras.Model: {image [b, s, s, 1]} -> logits float32 [b, classes]."""
  image = common.image_input(image_size)
  x, size = image, image_size
  for name, filters, kernel, stride, lrn, pool in (("conv1", 96, 11, 4, True, True), ("conv2", 256, 5, 1, True, True),
                                                    ("conv3", 384, 3, 1, False, False),
                                                    ("conv4", 384, 3, 1, False, False),
                                                    ("conv5", 256, 3, 1, False, True)):
    padding = common.padding_that_fits(size, kernel, stride) if name == "conv1" else "same"
    x = layers.Conv2D(filters, kernel, stride, padding=padding, activation="relu", name=name)(x)
    size = common.output_size(size, kernel, stride, padding)
    if lrn:
      x = LocalResponseNormalization(name=f"{name}_lrn")(x)
    if pool:
      padding = common.padding_that_fits(size, 3, 2)
      x = layers.MaxPooling2D(3, 2, padding=padding, name=f"{name}_pool")(x)
      size = common.output_size(size, 3, 2, padding)
  x = layers.Flatten(name="flatten")(x)
  for name in ("fc6", "fc7"):
    x = layers.Dense(4096, activation="relu", name=name)(x)
    x = layers.Dropout(0.5, name=f"{name}_dropout")(x)
  return keras.Model({"image": image}, common.logits(x, num_classes), name="alexnet")
