"""train's Adam, with PyTorch's coupled weight decay (an L2 term in the gradient) as an option.

Two kinds of weight decay mean different penalties under the same figure:
  * ``weight_decay`` (Keras' own, decoupled as in AdamW): each step subtracts
    ``learning_rate * weight_decay * w`` from each weight, outside Adam's
    scaling.
  * ``l2_decay`` (PyTorch's ``Adam(weight_decay=...)``, which the reference
    report's code uses): each step adds ``l2_decay * w`` to each gradient
    before Adam's moments see it, so it is scaled as the loss' gradient is
    (an L2 penalty ``l2_decay / 2 * |w|^2`` in the loss). Every trainable
    variable is decayed, biases and batch normalisation's scale and offset
    too: the report's code gives PyTorch all of ``network.parameters()``.

Order within a step, as PyTorch's ``clip_grad_norm_`` then ``step()``: the
gradients are clipped (``clip_norm``), then the L2 term is added, then Adam
updates.
"""

import keras
import tensorflow as tf


@keras.saving.register_keras_serializable(package="quickdraw_tf")
class CoupledL2Adam(keras.optimizers.Adam):
  """`keras.optimizers.Adam` that adds ``l2_decay * w`` to each variable's gradient before the update.

  Under a tf.distribute strategy Keras sums the replicas' gradients after
  this optimizer's clipping; each replica adds ``1 / num_replicas`` of the
  term, so the sum holds it once.

  Args:
    l2_decay: the coupled decay (>= 0; 0: plain Adam).
    *args, **kwargs: `keras.optimizers.Adam`'s.
  """

  def __init__(self, *args, l2_decay=0.0, **kwargs):
    super().__init__(*args, **kwargs)
    if l2_decay < 0:
      raise ValueError(f"l2_decay={l2_decay!r} must be >= 0")
    self.l2_decay = float(l2_decay)

  def _backend_update_step(self, grads, trainable_variables, learning_rate):
    # Keras' step: filter, unscale, clip, decoupled decay, then this (before its replica all-reduce and Adam's update).
    # The one place that sees clipped gradients beside their variables.
    if self.l2_decay:
      grads = [None if grad is None else _with_l2(grad, variable, self.l2_decay / _replicas_summed())
               for grad, variable in zip(grads, trainable_variables)]
    super()._backend_update_step(grads, trainable_variables, learning_rate)

  def get_config(self):
    return {**super().get_config(), "l2_decay": self.l2_decay}


def _replicas_summed():
  """How many replicas' gradients Keras sums after `CoupledL2Adam._backend_update_step` (1 outside a replica)."""
  context = tf.distribute.get_replica_context()
  # In a cross-replica context Keras does not all-reduce (TFOptimizer._all_reduce_sum_gradients).
  return context.num_replicas_in_sync if context is not None else 1


def _with_l2(grad, variable, share):
  """``grad + share * variable`` as a dense tensor of ``grad``'s dtype (a sparse gradient becomes dense, as
  PyTorch's coupled decay makes it)."""
  value = variable.value if isinstance(variable, keras.Variable) else variable
  grad = tf.convert_to_tensor(grad)
  return grad + tf.cast(share, grad.dtype) * tf.cast(value, grad.dtype)


def adam(learning_rate, weight_decay=0.0, l2_decay=0.0, clip_norm=0.0):
  """train's optimizer.

  Args:
    learning_rate: Adam's learning rate (a float or a schedule).
    weight_decay: Keras' decoupled decay (0: none).
    l2_decay: PyTorch's coupled decay (0: none); see the module docstring.
    clip_norm: clip the gradients to this global norm before the L2 term (0: no clipping).

  Returns:
    a `keras.optimizers.Adam`; a `CoupledL2Adam` where ``l2_decay`` is set (without it, the very optimizer
    train built before the option existed).
  """
  common = dict(weight_decay=weight_decay or None, global_clipnorm=clip_norm or None)
  if l2_decay:
    return CoupledL2Adam(learning_rate, l2_decay=l2_decay, **common)
  return keras.optimizers.Adam(learning_rate, **common)
