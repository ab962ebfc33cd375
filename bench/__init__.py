"""zerofeed's throughput and memory benchmark against tf.data and Keras PyDataset: ``python -m bench``.

See ``bench/README.md``. Nothing here is part of the test run.
"""
