"""skntk: train a neural network by SGD while its NTK moves, then in the NTK regime.

The estimators are :class:`HybridNTKClassifier` and :class:`HybridNTKRegressor`;
:mod:`skntk.ntk` holds the empirical neural tangent kernel engine and
:mod:`skntk.models` the networks the estimators' ``model`` parameter takes.
"""

from ._classifier import HybridNTKClassifier
from ._regressor import HybridNTKRegressor
from ._runtime import configure_program_cache_from_environment, enable_compilation_cache

__all__ = ["HybridNTKClassifier", "HybridNTKRegressor", "enable_compilation_cache", "__version__"]
__version__ = "0.1.0"

configure_program_cache_from_environment()  # SKNTK_COMPILATION_CACHE: a directory, or 0 for none
