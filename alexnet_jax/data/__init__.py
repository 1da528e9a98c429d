"""The host input pipeline: dataset preparation (prepare.py, the only module that may use TensorFlow),
prepared-dataset lookup and decoding (sources.py), which records make each batch (order.py), the
loaders (pipeline.py) and their decoding worker processes (decode_pool.py), the embedded synthetic
dataset (synthetic.py), dataset statistics for normalisation and PCA lighting (stats.py), and the
augmentation and evaluation views computed on the device (augment.py; preprocess.py configures them)."""
