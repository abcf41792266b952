"""From drawings to model inputs: the TFRecord schema (defined once) and the tf.data pipelines."""
