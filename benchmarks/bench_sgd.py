"""SGD epoch of skntk against scikit-learn's MLPClassifier, and the frozen-Jacobian
iteration against one SGD epoch.

Run: ``python benchmarks/bench_sgd.py``. Both libraries train the same network
(ReLU hidden layers, softmax cross-entropy), with plain SGD (no momentum, no L2,
constant learning rate), the same batch size and learning rate. Times are wall
seconds per epoch; skntk's JIT compilation is reported separately.
"""

import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np
from sklearn.datasets import load_digits, make_classification
from sklearn.exceptions import ConvergenceWarning
from sklearn.neural_network import MLPClassifier
from sklearn.preprocessing import StandardScaler

from _timing import best_time, first_call_time
from skntk._mlp import init_mlp_params, params_to_jax
from skntk._phases import frozen_jacobian_step
from skntk._sgd import epoch_order, sgd_epoch

LEARNING_RATE = 0.05
BATCH_SIZE = 64


def sklearn_epoch_seconds(X, y, layers, n_epochs):
    clf = MLPClassifier(hidden_layer_sizes=layers, solver="sgd", momentum=0.0, alpha=0.0,
                        learning_rate="constant", learning_rate_init=LEARNING_RATE,
                        batch_size=BATCH_SIZE, max_iter=n_epochs, tol=0.0,
                        n_iter_no_change=n_epochs + 1, shuffle=True, random_state=0)
    start = time.perf_counter()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConvergenceWarning)
        clf.fit(X, y)
    return (time.perf_counter() - start) / clf.n_iter_


def skntk_timings(X, y, layers, n_epochs):
    """(compile s, s per SGD epoch, s per frozen-Jacobian iteration)."""
    n_classes = len(np.unique(y))
    params = params_to_jax(init_mlp_params((X.shape[1], *layers, n_classes),
                                           np.random.RandomState(0)))
    Xj = jnp.asarray(X, dtype=jnp.float32)
    Yj = jnp.asarray(np.eye(n_classes, dtype=np.float32)[y])
    n = X.shape[0]
    batch = min(BATCH_SIZE, n)
    rng = np.random.RandomState(0)

    def epoch(p):
        return sgd_epoch(p, Xj, Yj, epoch_order(rng, n, n, batch), n, LEARNING_RATE, batch)

    compile_s = first_call_time(lambda: epoch(params))

    def epochs():
        p = params
        for _ in range(n_epochs):
            p = epoch(p)
        return p

    epoch_s = best_time(epochs, repeat=3) / n_epochs
    first_call_time(lambda: frozen_jacobian_step(params, params, Xj, Yj, 0.5))
    fj_s = best_time(lambda: frozen_jacobian_step(params, params, Xj, Yj, 0.5), repeat=20)
    return compile_s, epoch_s, fj_s


def datasets():
    X, y = load_digits(return_X_y=True)
    yield "digits 1797x64", StandardScaler().fit_transform(X), y, (128, 128), 20
    X, y = make_classification(n_samples=20000, n_features=100, n_informative=30,
                               n_classes=10, random_state=0)
    yield "generated 20000x100", StandardScaler().fit_transform(X), y, (256, 256), 3


def main():
    print(f"plain SGD, batch {BATCH_SIZE}, learning rate {LEARNING_RATE}; "
          f"JAX {jax.__version__} on {jax.default_backend()}")
    header = (f"{'data':<21} {'layers':<11} {'sklearn s/ep':>12} {'skntk s/ep':>11} "
              f"{'ratio':>6} {'compile s':>9} {'FJ s/it':>9} {'FJ/epoch':>8}")
    print(header)
    print("-" * len(header))
    for name, X, y, layers, n_epochs in datasets():
        sk = sklearn_epoch_seconds(X, y, layers, n_epochs)
        compile_s, ours, fj = skntk_timings(X, y, layers, n_epochs)
        print(f"{name:<21} {str(layers):<11} {sk:>12.4f} {ours:>11.4f} {ours / sk:>6.2f} "
              f"{compile_s:>9.2f} {fj:>9.4f} {fj / ours:>8.2f}")
    print("ratio = skntk / sklearn seconds per SGD epoch (lower is better); "
          "FJ/epoch = one frozen-Jacobian iteration / one skntk SGD epoch")


if __name__ == "__main__":
    main()
