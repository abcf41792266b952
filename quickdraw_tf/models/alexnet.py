"""AlexNet for one-channel sketches, in two variants.

``variant="report"`` (default): the batch-normalised AlexNet of the reference
report's published code (LogCreative/quickdraw-classifier, models/AlexNet.py),
which produced its table's 0.8462: conv 64 (11x11/4, zero padding 2) - 192
(5x5) - 384 - 256 - 256 (3x3), 'same' padding after conv1, each followed by
batch norm and ReLU; 3x3/2 max-pools after conv1, conv2 and conv5; two fully
connected layers of 4096 without bias, each with batch norm and ReLU; the
classifier. No LRN, no dropout. Batch norm as PyTorch's (momentum 0.9 in
Keras terms, epsilon 1e-5): the report trained in PyTorch.

``variant="2012"``: the network of Krizhevsky et al. 2012 (which the report's
prose describes): conv 96 (11x11/4) - 256 (5x5) - 384 - 384 - 256 (3x3) with
ReLU, local response normalisation after conv1 and conv2, the same pools,
FC 4096-4096 with ReLU and dropout 0.5.

225 px input by default: the report resizes its 28 px bitmaps to 225, where
pool5 leaves 6x6x256. PyTorch's pools drop what does not fit (floor), as
'valid' does; below about 70 px a 'valid' pool would leave nothing, so such a
pool pads ('same') instead and the FC layers take what is left (1x1 at 28 px).
bench/accuracy.py trains at 64 px (pool5 1x1x256) to fit its CPU budget.
Against the report's code otherwise: its convolutions have biases before
batch norm (cancelled by it; none here) and PyTorch's initialisation
(``init="torch"`` here).
"""

import keras
from keras import layers
import tensorflow as tf

from quickdraw_tf.models import common

IMAGE_SIZE = 225
VARIANTS = ("report", "2012")
# (name, filters, kernel size, stride, max-pool after) of each variant.
CONVS = {
    "report": (("conv1", 64, 11, 4, True), ("conv2", 192, 5, 1, True), ("conv3", 384, 3, 1, False),
               ("conv4", 256, 3, 1, False), ("conv5", 256, 3, 1, True)),
    "2012": (("conv1", 96, 11, 4, True), ("conv2", 256, 5, 1, True), ("conv3", 384, 3, 1, False),
             ("conv4", 384, 3, 1, False), ("conv5", 256, 3, 1, True)),
}


class LocalResponseNormalization(layers.Layer):
  """AlexNet's LRN (n=5, k=2, alpha=1e-4, beta=0.75), computed in float32."""

  def call(self, x):
    y = tf.nn.local_response_normalization(tf.cast(x, tf.float32), depth_radius=2, bias=2.0, alpha=1e-4, beta=0.75)
    return tf.cast(y, x.dtype)


def _conv(x, size, variant, name, filters, kernel, stride):
  """One convolution with its normalisation and ReLU; returns ``(x, size)``."""
  if name == "conv1" and variant == "report":
    x = layers.ZeroPadding2D(2, name="conv1_padding")(x)  # PyTorch's padding=2.
    size += 4
    padding = "valid"
  else:
    padding = common.padding_that_fits(size, kernel, stride) if name == "conv1" else "same"
  if variant == "report":
    x = layers.Conv2D(filters, kernel, stride, padding=padding, name=name)(x)
    x = layers.ReLU(name=f"{name}_relu")(common.torch_batch_norm(f"{name}_bn")(x))
  else:
    x = layers.Conv2D(filters, kernel, stride, padding=padding, activation="relu", name=name)(x)
    if name in ("conv1", "conv2"):
      x = LocalResponseNormalization(name=f"{name}_lrn")(x)
  return x, common.output_size(size, kernel, stride, padding)


def _fully_connected(x, variant, name):
  if variant == "report":
    x = layers.Dense(4096, use_bias=False, name=name)(x)
    return layers.ReLU(name=f"{name}_relu")(common.torch_batch_norm(f"{name}_bn")(x))
  x = layers.Dense(4096, activation="relu", name=name)(x)
  return layers.Dropout(0.5, name=f"{name}_dropout")(x)


def build(num_classes, image_size=IMAGE_SIZE, variant="report"):
  """keras.Model: {image [b, s, s, 1]} -> logits float32 [b, classes].

  Args:
    variant: "report" (batch norm, the report's code) or "2012" (LRN and
      dropout, Krizhevsky et al.).
  """
  if variant not in VARIANTS:
    raise ValueError(f"alexnet variant must be one of {', '.join(VARIANTS)}, got {variant!r}")
  image = common.image_input(image_size)
  x, size = image, image_size
  for name, filters, kernel, stride, pool in CONVS[variant]:
    x, size = _conv(x, size, variant, name, filters, kernel, stride)
    if pool:
      padding = common.padding_that_fits(size, 3, 2)
      x = layers.MaxPooling2D(3, 2, padding=padding, name=f"{name}_pool")(x)
      size = common.output_size(size, 3, 2, padding)
  x = layers.Flatten(name="flatten")(x)
  for name in ("fc6", "fc7"):
    x = _fully_connected(x, variant, name)
  return keras.Model({"image": image}, common.logits(x, num_classes), name="alexnet")
