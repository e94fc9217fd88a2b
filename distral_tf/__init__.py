"""distral_tf: Distral (Teh et al., NIPS 2017) in TensorFlow/Keras."""

__version__ = "0.1.0"
