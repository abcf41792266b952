"""CNN+RNN fusion (report section 3.4, figure 9).

A Sketch-a-Net branch on the image (-> 512) and the sketch-rnn BiLSTM branch
on stroke-5 ink (-> 512), concatenated (1024) -> dense 512 -> logits.

This is the report's prose and figure 9 (1024 -> 512 -> classes), with a ReLU
after the dense 512. Its code (LogCreative/quickdraw-classifier,
models/cnnrnn.py) differs: its MergerMLP is 1024 -> 512 -> 256 -> 256 ->
classes with no activation between them (one linear map of rank <= 256), its
CNN branch keeps Sketch-a-Net's always-on functional dropout, and its RNN
branch is the BiLSTM's ``out[-1]`` over padding (see `bilstm`). We follow the
prose and keep the branches as `sketchanet` and `bilstm` build them; no batch
norm in either; ``init="torch"`` draws PyTorch's initialisation.
"""

import keras
from keras import layers

from quickdraw_tf.models import bilstm
from quickdraw_tf.models import common
from quickdraw_tf.models import sketchanet

IMAGE_SIZE = sketchanet.IMAGE_SIZE


def build(num_classes, image_size=IMAGE_SIZE):
  """keras.Model: {image [b, s, s, 1], ink [b, t, 5], ink_length [b]} -> logits float32 [b, classes]."""
  image = common.image_input(image_size)
  ink, ink_length = common.ink_inputs(5)
  features = layers.Concatenate(name="fuse")([sketchanet.trunk(image, image_size), bilstm.encoder(ink, ink_length)])
  features = layers.Dense(512, activation="relu", name="fc_fusion")(features)
  return keras.Model({"image": image, "ink": ink, "ink_length": ink_length}, common.logits(features, num_classes),
                     name="fusion")
