"""The host input pipeline: dataset preparation (prepare.py, the only module that may use TensorFlow),
prepared-dataset lookup and decoding (sources.py), the loaders (pipeline.py: grain decides the order) and
their decoding worker processes (decode_pool.py), the embedded synthetic dataset (synthetic.py) and dataset statistics for normalisation and PCA lighting (stats.py)."""
