"""The network: AlexNet as a Flax module (models), its LRN (lrn) and pooling (pooling), and `build`, the
module a config describes."""
