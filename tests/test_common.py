"""scikit-learn's estimator checks on the default and on non-default configurations.

Between them the configurations cover every switch criterion, every NTK phase, both
kernel solvers, both parameterisations, a non-ReLU activation and a user model (each
configuration adds about a minute to the suite)."""

from sklearn.utils.estimator_checks import parametrize_with_checks

from skntk import HybridNTKClassifier, HybridNTKRegressor
from skntk.models import FunctionModel

from ._models import apply_tanh, init_two_layer


@parametrize_with_checks([
    HybridNTKClassifier(),
    HybridNTKClassifier(switch="param_norm", ntk_phase="frozen_jacobian", max_sgd_epochs=20),
    HybridNTKClassifier(switch="kernel_distance", ntk_phase=None, ntk_monitor_size=32),
    HybridNTKClassifier(switch="fixed_epoch", switch_epoch=5, ntk_phase="kernel",
                        validation_fraction=None),
    HybridNTKClassifier(switch=None, max_sgd_epochs=10, ntk_phase="kernel",
                        kernel_solver="matrix_free", ntk_epochs=float("inf"), kernel_ridge=1.0,
                        hidden_layer_sizes=(16,)),
    HybridNTKClassifier(parameterization="ntk", learning_rate=1.0, switch="ntk_norm",
                        hidden_layer_sizes=(32,)),
    HybridNTKClassifier(activation="tanh", hidden_layer_sizes=(32, 32)),
    HybridNTKRegressor(),
    HybridNTKRegressor(switch="kernel_distance", ntk_phase="frozen_jacobian", max_sgd_epochs=20,
                       ntk_monitor_size=32),
    HybridNTKRegressor(switch="fixed_epoch", switch_epoch=5, ntk_phase="kernel",
                       kernel_ridge=1e-3, validation_fraction=None),
    HybridNTKRegressor(switch=None, max_sgd_epochs=10, ntk_phase="kernel",
                       kernel_solver="matrix_free", ntk_epochs=float("inf"), kernel_ridge=1.0,
                       hidden_layer_sizes=(16,)),
    HybridNTKClassifier(model=FunctionModel(init_two_layer, apply_tanh)),
    HybridNTKRegressor(model=FunctionModel(init_two_layer, apply_tanh), ntk_phase="kernel"),
])
def test_sklearn_compatible_estimator(estimator, check):
    check(estimator)
