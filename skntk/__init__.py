"""skntk: train a neural network by SGD while its NTK moves, then in the NTK regime.

The estimator is :class:`HybridNTKClassifier`; :mod:`skntk.ntk` holds the empirical
neural tangent kernel engine.
"""

from ._classifier import HybridNTKClassifier

__all__ = ["HybridNTKClassifier", "__version__"]
__version__ = "0.1.0"
