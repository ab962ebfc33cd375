"""Code shared by producers and consumers: no Keras, no TensorFlow, no PIL."""
