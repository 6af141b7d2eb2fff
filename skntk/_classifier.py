"""HybridNTKClassifier: SGD while the NTK moves, then training in the NTK regime."""

import warnings

import numpy as np
from sklearn.base import ClassifierMixin
from sklearn.model_selection import train_test_split
from sklearn.utils._param_validation import StrOptions
from sklearn.utils.class_weight import compute_class_weight
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import validate_data

from ._base import BaseHybridNTK, available_with_reason
from ._losses import CROSS_ENTROPY
from ._training import COMPUTE_DTYPE
from ._weights import check_sample_weight
from ._validation import (check_float32_range, label_repr, log_softmax,
                          refuse_missing_labels, refuse_mixed_labels, refuse_multi_column_y,
                          softmax, usable_logits)
from .ntk import DEFAULT_MAX_KERNEL_BYTES


class HybridNTKClassifier(ClassifierMixin, BaseHybridNTK):
    """MLP classifier trained by SGD until its NTK settles, then in the NTK regime.

    Training has two phases (see the user guide):

    1. **SGD phase.** Mini-batch SGD on the mean cross-entropy, one shuffled pass per
       epoch. After each epoch the ``switch`` criterion is evaluated.
    2. **NTK phase.** From the parameters ``theta*`` at the switch, training continues
       around ``theta*``: on the linearised network (``"linearized"``, the default,
       solved by L-BFGS), with the Jacobian frozen at ``theta*``
       (``"frozen_jacobian"``), or in closed form as kernel regression or kernel
       gradient flow (``"kernel"``).

    With the defaults, the switch waits until the linearised network explains SGD's
    recent progress (``switch="linearization_error"``) and the NTK phase stops by itself
    (``ntk_epochs="auto"``); benchmarks/bench_hybrid.py and the user guide ("When does
    the hybrid pay off") give the evidence for each default.

    Computation runs in float32 on JAX's default device, whatever the input dtype
    (integers, booleans, float64); JAX's global configuration is never changed. See
    the Notes for how faulty inputs and numerical failures are reported.

    Parameters
    ----------
    hidden_layer_sizes : int or tuple of int, default=(128, 128)
        Width of each hidden layer (an int: one layer); ``()`` gives a linear softmax
        model.
    activation : {"relu", "tanh", "erf", "gelu", "identity"}, default="relu"
        Activation ``phi`` of the hidden layers, ``h_l = phi(h_{l-1} W_l + b_l)``, in
        every phase and kernel (the layer-wise kernel back-propagates ``phi'``).
        ``"erf"`` is the error function and ``"gelu"`` the exact ``z Phi(z)``
        (Hendrycks and Gimpel 2016); ``"relu"``, ``"tanh"`` and ``"identity"`` as in
        ``MLPClassifier``.
    learning_rate : float or "auto", default=0.05
        Step size of the SGD phase (in the coordinates of ``parameterization``).
        ``"auto"``: ``min(0.05, 2 m / lambda_max(Theta_m))``, the step ``1 / L`` of
        the mean cross-entropy at initialisation on the ``m`` monitor samples (see
        ``ntk_learning_rate``), capped at 0.05; the value used is ``learning_rate_``.
    batch_size : int, default=64
        Mini-batch size of the SGD phase, clipped to the number of training samples.
        Every sample is used once per epoch; the last batch may be smaller.
    max_sgd_epochs : int, default=50
        Budget of SGD epochs. 0 starts the NTK phase at initialisation (no switch
        criterion is evaluated and no warning is given).
    switch : {"linearization_error", "kernel_velocity", "ntk_norm", "kernel_distance", \
            "param_norm", "fixed_epoch"} or None, default="linearization_error"
        Criterion that ends the SGD phase, evaluated after every epoch ``e``:

        - ``"linearization_error"``: every ``k`` epochs,
          ``eps(e-k, e) / eps(0, e) < switch_threshold``, with
          ``eps(a, b) = ||F_b - F_a - J_a (theta_b - theta_a)||_F / ||F_b - F_a||_F``
          the relative error of the first-order Taylor expansion of the network at
          ``theta_a`` (the linearised network of Lee et al. 2019, section 2.2) in predicting
          the change of its outputs ``F`` (``m x C``) on the monitor subset from epoch
          ``a`` to ``b``. It holds when the linearised network explains the last ``k``
          epochs of SGD far better than it explains the path from initialisation: the
          network has learned its features and moves lazily. Scale-free; 1 at the first
          check; ``inf`` while ``eps(0, e) < 0.05`` (the network has not left its
          linearisation at initialisation, e.g. with a tiny learning rate). One forward
          pass and two Jacobian-vector products on the monitor subset per check; see the
          documentation's "Method" page;
        - ``"kernel_velocity"``: every ``k`` epochs, the relative kernel velocity
          ``v_e / d_e < switch_threshold`` with ``v_e = 1 - cos(K_e, K_{e-k})`` and
          ``d_e = 1 - cos(K_e, K_0)`` (cosines of the monitor kernels in the Frobenius
          inner product), and ``v_e`` at most half the largest ``v`` of the earlier
          checks: the kernel has moved, has passed its fastest change and now moves
          little compared with how far it has come. Scale-free; it cannot hold while
          the network has not started learning: a kernel drifting at constant speed
          never slows down, and one whose cosine distance from ``K_0`` is below 1e-4
          has not moved (the statistic is ``inf``). After Fort et al. 2020, who track these distances;
        - ``"fixed_epoch"``: ``e >= switch_epoch``;
        - ``"param_norm"``: ``||theta_e - theta_{e-k}||_2 < switch_threshold``;
        - ``"ntk_norm"``: ``|D_e - D_{e-k}| < switch_threshold`` with
          ``D_e = ||K_e - K_0||_F`` the Frobenius distance of the empirical NTK on a
          fixed monitor subset from its value at initialisation;
        - ``"kernel_distance"``: ``1 - <K_e, K_{e-k}>_F / (||K_e||_F ||K_{e-k}||_F)
          < switch_threshold`` (Fort et al. 2020);
        - ``None``: no switch; SGD runs all ``max_sgd_epochs``.

        ``k`` is ``switch_window``; the statistics need ``e >= k``. The statistic of
        every epoch is recorded in ``history_["switch_statistic"]``.
    switch_window : int, default=3
        ``k``, in epochs.
    switch_threshold : float or "auto", default="auto"
        Threshold of the switch statistic. 0 never triggers: a scouting run that only
        records the statistic in ``history_["switch_statistic"]`` (no warning is
        given). ``"auto"``: 0.15 for ``"linearization_error"``, 0.01 for
        ``"kernel_velocity"``, 1e-3 for
        ``"kernel_distance"``, and for the criteria whose statistic has the scale of
        what it measures a share of the movement since initialisation, so that they
        cannot hold before the network moves: ``0.1 * D_e`` for ``"ntk_norm"`` and
        ``0.1 * ||theta_e - theta_0||_2`` for ``"param_norm"``. The threshold of each
        epoch is in ``history_["switch_threshold"]``.
    switch_epoch : int, default=10
        Epoch of the ``"fixed_epoch"`` criterion.
    ntk_monitor_size : int, default=128
        Training samples (drawn once, from ``random_state``) on which the switch
        criteria compute their statistics (the kernel criteria the NTK) and
        ``ntk_learning_rate="auto"`` the NTK's top eigenvalue;
        clipped to the training set. The cost of a kernel check grows with its
        square: 128 keeps ``"kernel_velocity"`` at about 0.3 of an SGD epoch per epoch
        or less on the benchmark tasks (256: up to 0.5 on digits), with the same
        switch epochs.
    ntk_phase : {"linearized", "frozen_jacobian", "kernel"} or None, \
            default="linearized"
        How training continues after the switch; ``None`` stops after SGD.
    ntk_epochs : int, numpy.inf or "auto", default="auto"
        Full-batch epochs of the NTK phase. ``"auto"`` stops by itself: when an epoch
        lowers the training loss by less than ``ntk_tol`` times its value at the
        switch, once that loss has halved (before that, two such epochs in a row;
        the last state is kept unless it is below the switch state on validation), or,
        with validation data, when the
        validation accuracy has not improved for ``ntk_patience`` epochs (the latest
        state whose accuracy is within one standard error, ``sqrt(p (1 - p) / n_val)``,
        of the best and not below the switch state's is kept, the switch point
        included; the one-standard-error rule of Hastie et al., The Elements of
        Statistical Learning, section 7.10, run towards the later state), and after
        at most 100 epochs;
        ``ntk_stop_reason_`` says which. Without validation data
        (``validation_fraction=None``) only convergence and the cap stop it, and the
        linearised network can overfit: keep a validation fraction, or pass a whole
        number of epochs. For ``"kernel"``, the flow time is
        ``t = ntk_learning_rate * ntk_epochs``; ``numpy.inf`` (and ``"auto"``) give
        kernel regression.
    ntk_learning_rate : float or "auto", default="auto"
        Step size ``eta`` of the gradient-descent NTK phases (``"frozen_jacobian"``,
        ``"linearized"`` with ``ntk_solver="gd"``, and the flow time of ``"kernel"``);
        unused by the default L-BFGS solver, whose line search sets every step.
        ``"auto"``:
        ``eta = 2 m / lambda_max(Theta_m)``, with ``Theta_m`` the per-logit NTK on
        the ``m`` monitor samples, whose top eigenvalue is found by Lanczos
        iterations on NTK-vector products (no kernel matrix is formed). Since the
        softmax Hessian is at most ``I / 2`` (Boehning 1992), this is the step
        ``1 / L`` for the smoothness ``L`` of the linearised cross-entropy, which
        never raises its loss; half of it for the squared error of ``"kernel"``. The
        value used is ``ntk_learning_rate_`` (NaN where no step is taken).
    ntk_solver : {"auto", "lbfgs", "gd"}, default="auto"
        Solver of the NTK phase; ``"auto"`` is ``"lbfgs"`` for ``"linearized"`` and
        ``"gd"`` for ``"frozen_jacobian"``. For ``"linearized"``, ``"lbfgs"``
        minimises its convex cross-entropy by L-BFGS with an exact line search, one
        Jacobian-vector and one vector-Jacobian product per epoch; ``"gd"`` takes
        gradient steps of size ``ntk_learning_rate``. ``"frozen_jacobian"`` always uses ``"gd"`` (its update
        is not the gradient of a loss; ``"lbfgs"`` with it raises a ``ValueError``).
    ntk_tol : float, default=3e-2
        Convergence tolerance of ``ntk_epochs="auto"``, relative to the training loss
        at the switch. In benchmarks/bench_hybrid.py 3e-2 ended with the test accuracy
        of 1e-2 on every task (seeds 0 to 2) after 3 to 7 NTK epochs instead of 6 to
        13.
    ntk_patience : int, default=5
        Epochs without a better validation accuracy before ``ntk_epochs="auto"``
        stops.
    ntk_ridge : float, default=1e-3
        ``lambda`` of the penalty ``(lambda / 2) ||theta - theta*||_2^2`` added to the
        mean cross-entropy of the ``"linearized"`` phase (an L2 penalty like
        ``MLPClassifier``'s ``alpha``, around ``theta*``). It keeps the convex problem
        from driving the logits of separable training data to infinity; in
        benchmarks/bench_hybrid.py (seeds 0 to 2) 1e-3 ended 0.44 points below plain
        SGD on digits where 1e-4 ended 0.67 and 1e-5 0.89 below, with no loss on the
        other tasks (user guide, "When does the hybrid pay off").
    kernel_ridge : float, default=0.0
        Ridge ``rho`` added to the kernel of the ``"kernel"`` phase.
    kernel_offset : {"zero", "network"}, default="zero"
        Function the ``"kernel"`` phase's regression starts from: zero (kernel
        regression of the one-hot targets with the NTK at ``theta*``) or the network
        at ``theta*`` (``f_0`` in the flow formula of the user guide). The network's
        logits are trained for the cross-entropy and their scale does not match the
        one-hot targets of the squared loss, so the zero function does better
        (benchmarks/bench_hybrid.py ``--kernel``).
    kernel_solver : {"auto", "dense", "matrix_free"}, default="auto"
        How the ``"kernel"`` phase is solved. ``"dense"`` forms the N x N training
        kernel and takes one eigendecomposition (exact, O(N^3) time, about 20 N^2
        bytes). ``"matrix_free"`` never forms it: conjugate gradients at
        ``ntk_epochs=inf`` and a Lanczos approximation at finite flow time, through
        kernel-block products (O(N (d + sum of widths)) memory); use a ridge > 0 at
        ``ntk_epochs=inf`` so that it converges. ``"auto"``: dense unless its kernels
        exceed ``max_kernel_bytes``.
    kernel_tol : float, default=1e-5
        Relative tolerance of the matrix-free solver (CG residual; change of the
        Lanczos coefficients between steps). About 1e-6 is the floor in float32.
    kernel_max_iter : int, default=500
        Most iterations (kernel-block products) of the matrix-free solver.
    max_kernel_bytes : int, default=2 GiB
        Memory budget, in bytes, of the kernel matrices held at the same time, with
        their working memory. Every kernel the estimator builds is counted with
        everything that is alive beside it at its peak:

        - the ``ntk_monitor_size`` x ``ntk_monitor_size`` monitor kernel of the
          ``"ntk_norm"`` and ``"kernel_distance"`` criteria, with the monitor kernels
          the criterion keeps between epochs: ``K_0`` for ``"ntk_norm"``, the last
          ``switch_window`` kernels for ``"kernel_distance"``. They are released at
          the switch, so the kernels of the NTK phase are counted without them;
        - for ``ntk_phase="kernel"``: the N x N training kernel, counted eight times
          (at its eigendecomposition its float64 copy, the symmetrised copy, the
          eigensolver's copy and the eigenvectors are alive together); the
          validation cross kernel, beside the N x N eigenvectors kept for the NTK
          epochs, counted five times (its float32 result and two float64 copies).
          Prediction forms no cross kernel: it applies ``K_bar(x, X_fit_)`` to
          ``dual_coef_`` block by block, in memory independent of N.

        All are checked at the start of :meth:`fit`, before training; one over the
        budget raises a ``ValueError`` that gives its size and what lowers it.
    validation_fraction : float or None, default=0.1
        Share of the training data held out (stratified) to record validation loss
        and accuracy; ``None`` or 0 trains on everything. Ignored when ``X_val`` is
        passed to :meth:`fit`. ``ceil(validation_fraction * n_samples)`` samples are
        held out. When that split cannot put every class in both the training and
        the validation part (a class with a single sample, fewer held-out or
        remaining samples than classes, or a rare class that stratification leaves
        out of one part), all data is used for training, ``val_loss`` and
        ``val_accuracy`` are NaN and a ``UserWarning`` says why.
    devices : int, list of jax.Device or None, default=None
        Devices of data-parallel training: ``None`` uses every local device of JAX's
        default backend (``jax.local_devices()``), an int ``n`` the first ``n`` of
        them, a list those devices. With more than one device, the arrays are placed
        on all of them and each SGD mini-batch and each full-batch NTK step is split
        over them (a ``jax.sharding.Mesh`` with one ``"batch"`` axis); results equal
        one device's to float tolerance. See the user guide for GPUs and several hosts.
        Every form survives :func:`sklearn.base.clone`, :func:`copy.deepcopy` and
        pickling, so that cross-validation and grid searches work with any of them:
        ``None`` and ints as they are, a list as a new list of the same devices (a
        device is a handle to hardware: it is shared, never copied). A pickle stores
        each device by its platform and id, and unpickling finds that device again; a
        device the unpickling process does not have is kept as a placeholder, with a
        ``UserWarning``: the estimator predicts as usual (prediction does not use
        ``devices``), and :meth:`fit` raises until ``devices`` is set again.
    random_state : int, RandomState instance or None, default=None
        Draws the initial weights, the validation split, the monitor subset and the
        SGD shuffling. Pass an int for reproducible results.
    verbose : int, default=0
        1 prints one line per epoch and a line at the switch.
    kernel_diagnostics : bool, default=False
        After every SGD epoch, compute the monitor kernel ``K_e`` (the NTK on the
        ``ntk_monitor_size`` monitor samples, ``monitor_indices_``) and record in
        ``history_``: ``kernel_distance_from_init`` ``1 - cos(K_e, K_0)`` (Fort et al.,
        NeurIPS 2020), ``kernel_velocity`` ``1 - cos(K_e, K_{e-k})`` with ``k =
        switch_window``, ``kernel_alignment`` (centred kernel-target alignment with
        the monitor labels, Cortes et al., JMLR 2012; :func:`skntk.ntk.centered_kernel_alignment`),
        ``kernel_effective_rank`` (Roy and Vetterli, 2007; :func:`skntk.ntk.effective_rank`)
        and ``kernel_top_eigenvalues``, shape (n_epochs, 5). NaN in the NTK phase, whose
        kernel is frozen at ``theta*``. Costs one monitor kernel and one ``m x m``
        eigendecomposition per epoch (about 1 ms on a CPU for ``m = 128``).
    callbacks : callable, list of callables or None, default=None
        Called after every epoch of either phase with an ``EpochInfo`` named tuple:
        ``epoch`` (1-based, continuing through the NTK phase), ``phase`` (``"sgd"``
        or ``"ntk"``), ``params`` (list of read-only numpy ``(W, b)``, or a user
        model's pytree: the network after the epoch; in the NTK phase the network
        reported as ``coefs_`` or ``params_``) and
        ``history`` (a read-only mapping, the epoch's row of ``history_``). A
        callback that returns a true value ends the current phase after this epoch:
        in the SGD phase the switch happens there (no warning about the criterion),
        in the NTK phase it stops with the state the callback saw
        (``ntk_stop_reason_ == "callback"``). Callbacks are kept as they are by
        :func:`sklearn.base.clone` and pickled with the estimator, so a pickled
        estimator needs picklable callbacks (module-level functions, not lambdas).
    warm_start : bool, default=False
        If True and the estimator is fitted, the next :meth:`fit` starts its SGD
        phase from the fitted network (``coefs_``, ``intercepts_``) instead of a
        random draw, as in scikit-learn's ``MLPClassifier``; the data must have the
        same features and classes. For the ``"linearized"`` phase these are the
        weights ``theta* + delta`` of its linear model, used as a network. A refit
        that cannot continue it raises a ``ValueError`` before any training and
        leaves the fitted model as it was.
    parameterization : {"standard", "ntk"}, default="standard"
        Coordinates in which the network is initialised and trained; the network is
        the same MLP in both, and ``coefs_`` and ``intercepts_`` hold its weights
        and biases (the ``"kernel"`` phase predicts with the kernel of the chosen
        parameterisation).

        - ``"standard"``: the weights ``W`` and biases ``b`` themselves, Glorot-normal
          weights and zero biases at initialisation.
        - ``"ntk"``: the NTK parameterisation (Jacot, Gabriel and Hongler 2018; Lee
          et al. 2019, eq. (1); neural-tangents' ``stax.Dense(parameterization="ntk")``):
          layer ``l`` of fan-in ``n_{l-1}`` computes
          ``z_l = (sigma_w / sqrt(n_{l-1})) h_{l-1} omega_l + sigma_b beta_l`` with
          ``omega_l, beta_l ~ N(0, 1)`` at initialisation, and every phase trains
          ``(omega, beta)``. With ``sigma_w = sqrt(2)`` (the ReLU gain of He et al.
          2015) and ``sigma_b = 0.1`` (the bias scale of Jacot et al.'s
          experiments), ``coefs_`` and ``intercepts_`` hold the effective
          ``W_l = (sigma_w / sqrt(n_{l-1})) omega_l`` and ``b_l = sigma_b beta_l``.
          A gradient step of size ``eta`` on ``(omega, beta)`` is a step on ``(W, b)``
          whose gradient is scaled by ``sigma_w^2 / n_{l-1}`` (weights) and
          ``sigma_b^2`` (biases), and the NTK is ``J D J^T`` with ``J`` the Jacobian
          in ``(W, b)`` and ``D`` that diagonal scaling: the kernel, and its change
          during training, no longer grow with the width, and as the width grows
          the kernel stays closer to its initial value (Jacot et al. 2018; Lee et al.
          2019). ``learning_rate``, ``ntk_learning_rate``, ``ntk_ridge``, the
          ``"param_norm"`` statistic and its threshold are then in
          ``(omega, beta)``. Since the step on the weights of layer ``l`` is
          ``learning_rate * sigma_w^2 / n_{l-1}``, the standard default 0.05
          corresponds to about ``0.05 * n / 2`` for ``n`` inputs per unit (1.6 for
          64, 3.2 for 128): on digits with the default layers, 20 SGD epochs at
          ``learning_rate=2`` reached the training loss of 20 standard epochs at
          0.05 (0.047 against 0.054). The user guide has the derivation.
    solver : {"sgd", "adam"}, default="sgd"
        Optimiser of the SGD phase (``optax``), with ``MLPClassifier``'s names:
        ``"sgd"`` is mini-batch SGD with step ``learning_rate`` (plain, the default,
        or with ``momentum``), ``"adam"`` is Adam (Kingma and Ba 2015) with step
        ``learning_rate`` and ``MLPClassifier``'s betas and epsilon; Adam usually
        wants ``learning_rate`` near ``1e-3`` (``MLPClassifier``'s
        ``learning_rate_init``). The NTK phase does not use it (see the user guide,
        "Optimisers").
    momentum : float in [0, 1), default=0.0
        Momentum of ``solver="sgd"``. The default keeps plain SGD, the optimiser of
        the NTK theory (``MLPClassifier`` defaults to 0.9).
    nesterovs_momentum : bool, default=True
        Nesterov's momentum for ``solver="sgd"`` when ``momentum > 0``.
    alpha : float, default=0.0
        L2 penalty of the SGD phase, as ``MLPClassifier``'s: ``alpha / (2 n_b)
        sum_l ||W_l||^2`` added to the mean loss of a mini-batch of total weight
        ``n_b`` (biases are not penalised). The NTK phases use ``ntk_ridge`` and
        ``kernel_ridge`` instead.
    class_weight : dict, "balanced" or None, default=None
        Weights of the classes, as ``SGDClassifier`` defines them, multiplied into
        ``sample_weight``: a dict ``{label: weight}`` (missing labels weigh 1),
        ``"balanced"`` for ``n_samples / (n_classes * np.bincount(y))`` over the rows
        of positive sample weight, or ``None`` (1 each).
    model : model object or None, default=None
        The network (:mod:`skntk.models`): ``None`` builds the built-in MLP from
        ``hidden_layer_sizes``, ``activation`` and ``parameterization``; otherwise an
        object with ``init(key, n_features, n_outputs) -> params`` (a pytree of float32
        arrays) and ``apply(params, X) -> outputs`` of shape ``(n_samples, n_outputs)``
        (:class:`~skntk.models.FunctionModel`, :class:`~skntk.models.FlaxModel`,
        :class:`~skntk.models.EquinoxModel`, :class:`~skntk.models.MLP`). A model
        other than ``MLP`` runs every phase and kernel by automatic differentiation, in
        its own coordinates: ``parameterization`` must then be ``"standard"``
        (``ValueError`` otherwise), and ``hidden_layer_sizes`` and ``activation`` are
        ignored. See the user guide, "Your own model".

    Attributes
    ----------
    classes_ : ndarray of shape (n_classes,)
        Class labels, in the dtype of ``y``.
    n_features_in_ : int
    feature_names_in_ : ndarray of shape (n_features_in_,)
        Only when ``X`` has string column names.
    coefs_, intercepts_ : list of ndarray
        Final network: ``W`` of shape (fan_in, fan_out) and ``b`` of shape (fan_out,)
        per layer. For ``"kernel"`` this is ``theta*``.
    switch_coefs_, switch_intercepts_ : list of ndarray
        ``theta*``, the parameters at the switch.
    init_coefs_, init_intercepts_ : list of ndarray
        ``theta_0``, the initial parameters drawn from ``random_state`` (float32,
        shapes as ``coefs_``), from which the SGD phase starts.
    params_, switch_params_, init_params_ : pytree of ndarray
        Only with a user ``model`` (not :class:`~skntk.models.MLP`), in place of
        ``coefs_``, ``intercepts_`` and their ``switch_`` and ``init_`` forms (which
        then raise an ``AttributeError``): the model's parameters at the end, at the
        switch and at the start.
    model_ : model object
        Only with a user ``model``: a clone of it, which the predictions use.
    monitor_indices_ : ndarray of shape (m,), int
        Rows of the ``X`` passed to :meth:`fit` that form the monitor subset (sorted;
        ``m = min(ntk_monitor_size, n_train)``, drawn from the training part after the
        validation split): the inputs of the kernel criteria's monitor kernels and of
        the automatic NTK step.
    history_ : dict of ndarray
        One entry per epoch of either phase: ``epoch`` (1-based, continuing through
        the NTK phase), ``phase`` (``"sgd"`` or ``"ntk"``), ``train_loss``,
        ``train_accuracy``, ``val_loss``, ``val_accuracy`` (NaN without validation
        data), ``switch_statistic`` (NaN where undefined), ``switch_threshold`` (the
        threshold it was compared with, NaN where none), ``kernel_iterations`` (Krylov
        iterations of the matrix-free kernel solver behind the row, NaN elsewhere),
        ``elapsed_s`` (seconds since the start of ``fit``) and the kernel diagnostics
        of ``kernel_diagnostics=True`` (NaN without it): ``kernel_distance_from_init``,
        ``kernel_velocity``, ``kernel_alignment``, ``kernel_effective_rank`` and
        ``kernel_top_eigenvalues`` of shape (n_epochs, 5). Losses are mean
        cross-entropy.
    loss_curve_ : list of float
        ``history_["train_loss"]``.
    switch_epoch_ : int
        Epoch (row of ``history_``, 1-based) of the switch point ``theta*`` of the
        final model: the last SGD epoch before its NTK phase. With a single switch,
        the number of SGD epochs run.
    switch_attempts_ : list of dict
        One record per switch, in order. A switch of an automatic criterion with
        ``ntk_epochs="auto"`` and a network phase is judged by the NTK phase's result:
        confirmed when the phase cut the training loss by 90 % or more, or raised the
        validation score by more than two standard errors, and kept one of its own
        states; otherwise SGD resumes from ``theta*`` and the criterion is re-armed
        (no switch before twice the rejected switch's SGD epoch); when the resumed
        SGD's validation score at the next switch is not above the best earlier
        result, the fit ends there. Keys:
        ``switch_epoch`` (row of ``history_``), ``sgd_epochs`` (SGD epochs before
        it), ``trigger`` (``"criterion"``; ``"stalled"``: the statistic stopped
        falling above its threshold for four windows, a trial switch; ``"budget"``:
        ``max_sgd_epochs`` ran out, and after rejected switches the fit ends with
        SGD's state there, no NTK epoch run; ``"callback"``), ``ntk_epochs``,
        ``ntk_best_epoch``, ``ntk_stop_reason``, ``train_loss_switch``,
        ``train_loss_kept``, ``val_score_switch``, ``val_score_kept``,
        ``val_loss_switch``, ``val_loss_kept``, ``confirmed`` (bool; ``None`` when
        not judged), ``sgd_gain`` (validation score at this switch minus the best
        earlier attempt's result; NaN for the first) and ``kept`` (whether the final
        model is this one). The user
        guide's "Method" page gives the rule and its evidence.
    switch_epochs_ : ndarray of shape (n_attempts,), int
        ``switch_epoch`` of each record of ``switch_attempts_``.
    switch_ : str or None
        Switch criterion used (``switch`` at the time of :meth:`fit`).
    ntk_phase_ : str or None
        NTK phase used (``ntk_phase`` at the time of :meth:`fit`). Prediction uses the
        fitted phase, solvers, parameterisation, kernel model and memory budget,
        never the current parameters,
        so :meth:`set_params` changes predictions only through the next :meth:`fit`.
    kernel_solver_ : {"dense", "matrix_free"} or None
        Solver used by the ``"kernel"`` phase (``None`` for the other phases).
    kernel_solver_info_ : dict or None
        Matrix-free solver's record: ``method`` ("cg" or "lanczos"), ``iterations``,
        ``residual_norm`` and ``converged`` per output, ``tol``; ``None`` otherwise.
    dual_coef_ : ndarray of shape (n_train, n_classes), float64
        Only for ``ntk_phase="kernel"`` (absent for the other phases): the dual
        coefficients ``alpha`` of the kernel phase's model, whose logits are
        ``f(x) = offset(x) + K_bar(x, X_fit_) @ dual_coef_``, with ``K_bar = K / C`` the
        empirical NTK at ``theta*`` (:func:`skntk.ntk.empirical_ntk` of
        ``switch_coefs_``, ``switch_intercepts_``, divided by ``C = n_classes``) and
        ``offset`` zero or the network at ``theta*`` (``kernel_offset``). At flow time
        ``t``, ``alpha = g(K_bar + rho I) (Y - offset(X_fit_))`` (the user guide's
        "NTK phases"); at ``t = inf``, ``(K_bar + rho I)^+ (Y - offset(X_fit_))``. From
        either solver (conjugate gradients or Lanczos for ``"matrix_free"``).
        Prediction uses these arrays, as :class:`sklearn.kernel_ridge.KernelRidge` uses
        its ``dual_coef_`` and ``X_fit_``.
    X_fit_ : ndarray of shape (n_train, n_features), float32
        Only for ``ntk_phase="kernel"``: the training inputs of that model, the rows of
        ``X`` left after the validation split, as float32.
    kernel_offset_, kernel_ridge_, kernel_flow_time_ : str, float, float
        Only for ``ntk_phase="kernel"``: the offset (``kernel_offset``), ridge ``rho``
        and flow time ``t`` (``inf`` for kernel regression) of that model.
    kernel_tol_, kernel_max_iter_, max_kernel_bytes_ : float, int, int
        Only for ``ntk_phase="kernel"``: the matrix-free solver's settings and the
        memory budget of the fit, which prediction and :meth:`predict_variance` use.
    kernel_sample_weight_ : ndarray of shape (n_fit,) or None
        Only for ``ntk_phase="kernel"``: the weights of the rows of ``X_fit_`` in the
        weighted kernel regression (``sample_weight`` times ``class_weight``, rows of
        equal features and label merged); ``None`` for weights 1.
    parameterization_ : str
        ``parameterization`` at the time of :meth:`fit` (the ``"kernel"`` phase
        predicts with the kernel of that parameterisation).
    activation_ : str
        ``activation`` at the time of :meth:`fit`, with which prediction runs.
    switch_threshold_ : float
        Threshold of the last check (``switch_threshold`` with ``"auto"`` resolved;
        for the relative automatic thresholds, the value at the last check; NaN for
        ``"fixed_epoch"`` and ``None``).
    switch_reached_ : bool
        Whether the criterion held at the switch of the final model (False for a
        trial switch of a stalled statistic and at the end of the budget).
    learning_rate_ : float
        Step size of the SGD phase (``learning_rate`` with ``"auto"`` resolved).
    ntk_learning_rate_ : float
        Step size used by the NTK phase (``ntk_learning_rate`` with ``"auto"``
        resolved; NaN for L-BFGS and kernel regression, which take no fixed step).
    ntk_solver_ : {"lbfgs", "gd"} or None
        Solver of the ``"linearized"`` and ``"frozen_jacobian"`` phases.
    ntk_stop_reason_ : {"n_epochs", "converged", "validation_score", "max_epochs", "callback"} or None
        Why the NTK phase stopped (``None`` without one).
    ntk_best_epoch_ : int
        Epoch of the NTK phase (1-based; 0: the switch point) whose state the final
        model is (see ``ntk_epochs``).
    n_iter_ : int
        Epochs run in both phases.
    sgd_time_, ntk_time_ : float
        Seconds spent in each phase, wall clock. The first fit in a process, and the
        first fit whose training or validation size falls into a new bucket (see the
        Notes), include JAX's compilation of the jitted functions; later fits reuse it.

    See Also
    --------
    sklearn.neural_network.MLPClassifier : the same network trained by SGD only.

    Notes
    -----
    Numeric parameters may be numpy scalars (for example from a grid of
    ``numpy.logspace`` values): they are used as the Python numbers they equal, so
    results are the same as with Python numbers, also with JAX's 64-bit mode on.

    Faults are reported early and as a whole:

    - ``X``, ``X_val`` and the ``X`` of :meth:`predict` must be dense and finite: a
      scipy sparse matrix raises a ``TypeError`` that names ``.toarray()``, NaN or
      infinity a ``ValueError``. ``fit`` also refuses values beyond the float32 range
      (``|x| > 3.4e38``), which would overflow in the computation; prediction clips
      them to that range instead.
    - ``y`` must hold one label per sample (strings, integers, booleans, any
      comparable objects); multilabel or multi-output ``y`` and continuous ``y`` are
      refused, as is ``y`` with a single class. Missing labels (``None``, NaN,
      ``NaT``, ``pandas.NA``, ``pandas.NaT``) in ``y`` or ``y_val`` raise a
      ``ValueError`` that shows the first one and its position.
    - A non-finite training loss, or non-finite parameters, in either phase stops
      ``fit`` with a ``ValueError`` naming the phase and the epoch and suggesting a
      smaller learning rate; the estimator is then left unfitted (``fit`` clears any
      earlier fitted state first).
    - :meth:`predict_proba` is always finite. Where logits overflow (inputs far
      outside the training range), ``+inf`` counts as the largest and ``-inf`` as the
      smallest float64, and a NaN logit as the smallest: that class gets probability
      0, tied largest logits share the probability equally, and a row without any
      usable logit is uniform. :meth:`predict` returns the class of the largest
      probability (the first of equal ones), so it agrees with :meth:`predict_proba`
      also where two logits differ by less than the probabilities' rounding.
    - Inputs are never modified.
    - ``fit`` and ``predict`` in a process created by ``os.fork()`` after JAX started
      in its parent (the "fork" start method of :mod:`multiprocessing`) raise a
      ``RuntimeError`` at once, where JAX would hang; use the "spawn" or
      "forkserver" start method, or joblib's default "loky" backend (scikit-learn's
      ``n_jobs``).

    Compiled code is shared between fits. JAX compiles each jitted function for
    every new input shape; ``fit`` pads the training set, the validation set, the
    monitor subset and the arrays of the network NTK phases with zero rows up to a
    *bucket size* (the row count rounded up to three leading binary digits: 128, 144,
    160, ..., at most 1/8 more rows), and the padding rows weigh zero in every loss,
    gradient, metric and kernel statistic, so results equal unpadded training to
    float rounding. Fits whose sizes share a bucket (cross-validation folds, nearby
    points of a learning curve, refits) compile nothing, and neither do other values
    of the hyperparameters that are not shapes (everything but
    ``hidden_layer_sizes``, ``batch_size``, ``ntk_monitor_size`` and ``devices``).
    A process keeps the compiled programs of at most 16 distinct fit shapes (layer
    sizes, batch size, buckets, phase) and drops skntk's own beyond that, so memory
    stays bounded. The ``"kernel"`` phase works on the unpadded training set. Worker
    processes (``n_jobs``) and later runs read compiled programs from skntk's
    persistent cache (``SKNTK_COMPILATION_CACHE``; see the user guide).

    References
    ----------
    Jacot, Gabriel and Hongler, "Neural tangent kernel", NeurIPS 2018.
    Lee et al., "Wide neural networks of any depth evolve as linear models under
    gradient descent", NeurIPS 2019.
    Fort et al., "Deep learning versus kernel learning", NeurIPS 2020.

    Examples
    --------
    >>> from sklearn.datasets import load_iris
    >>> from skntk import HybridNTKClassifier
    >>> X, y = load_iris(return_X_y=True)
    >>> clf = HybridNTKClassifier(hidden_layer_sizes=(32,), max_sgd_epochs=20,
    ...                           random_state=0).fit(X, y)
    >>> clf.predict(X[:3])
    array([0, 0, 0])
    """

    _loss = CROSS_ENTROPY
    _target_attributes = ("classes_",)
    _parameter_constraints = {**BaseHybridNTK._parameter_constraints,
                              "class_weight": [dict, StrOptions({"balanced"}), None]}

    def __init__(self, hidden_layer_sizes=(128, 128), activation="relu", learning_rate=0.05,
                 batch_size=64,
                 max_sgd_epochs=50, switch="linearization_error", switch_window=3,
                 switch_threshold="auto", switch_epoch=10, ntk_monitor_size=128,
                 ntk_phase="linearized", ntk_epochs="auto", ntk_learning_rate="auto",
                 ntk_solver="auto", ntk_tol=3e-2, ntk_patience=5, ntk_ridge=1e-3,
                 kernel_ridge=0.0,
                 kernel_solver="auto", kernel_offset="zero", kernel_tol=1e-5, kernel_max_iter=500,
                 max_kernel_bytes=DEFAULT_MAX_KERNEL_BYTES, validation_fraction=0.1,
                 devices=None, random_state=None, verbose=0, kernel_diagnostics=False,
                 callbacks=None, warm_start=False, parameterization="standard", solver="sgd",
                 momentum=0.0, nesterovs_momentum=True, alpha=0.0, class_weight=None,
                 model=None):
        self.hidden_layer_sizes = hidden_layer_sizes
        self.activation = activation
        self.parameterization = parameterization
        self.learning_rate = learning_rate
        self.batch_size = batch_size
        self.max_sgd_epochs = max_sgd_epochs
        self.switch = switch
        self.switch_window = switch_window
        self.switch_threshold = switch_threshold
        self.switch_epoch = switch_epoch
        self.ntk_monitor_size = ntk_monitor_size
        self.ntk_phase = ntk_phase
        self.ntk_epochs = ntk_epochs
        self.ntk_learning_rate = ntk_learning_rate
        self.ntk_solver = ntk_solver
        self.ntk_tol = ntk_tol
        self.ntk_patience = ntk_patience
        self.ntk_ridge = ntk_ridge
        self.kernel_ridge = kernel_ridge
        self.kernel_solver = kernel_solver
        self.kernel_offset = kernel_offset
        self.kernel_tol = kernel_tol
        self.kernel_max_iter = kernel_max_iter
        self.max_kernel_bytes = max_kernel_bytes
        self.validation_fraction = validation_fraction
        self.devices = devices
        self.random_state = random_state
        self.verbose = verbose
        self.kernel_diagnostics = kernel_diagnostics
        self.callbacks = callbacks
        self.warm_start = warm_start
        self.solver = solver
        self.momentum = momentum
        self.nesterovs_momentum = nesterovs_momentum
        self.alpha = alpha
        self.class_weight = class_weight
        self.model = model

    # ------------------------------------------------------------------ fit

    def fit(self, X, y, X_val=None, y_val=None, *, sample_weight=None, coef_init=None,
            intercept_init=None):
        """Train the network: SGD phase, switch, NTK phase.

        Any fitted state of an earlier call is cleared first (``warm_start=True``
        keeps its network as the starting point); if this call fails, the estimator
        is left unfitted.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Training inputs, dense; any real dtype (computation is float32).
            Not modified.
        y : array-like of shape (n_samples,)
            Class labels of any type (strings, integers, booleans); at least two
            distinct labels.
        X_val : array-like of shape (n_val, n_features), default=None
            Validation inputs; when given, ``validation_fraction`` is ignored.
        y_val : array-like of shape (n_val,), default=None
            Validation labels, all among the labels of ``y``.
        sample_weight : array-like of shape (n_samples,), default=None
            Non-negative weights of the rows of ``X`` (``None``: 1 each), multiplied by
            ``class_weight``. Training minimises ``sum_i w_i ell_i / sum_i w_i`` in
            every phase; a zero weight removes its row, integer weights act as
            repeated rows (see the user guide, "Sample weights"). Weights follow
            their rows into the validation split. Not modified.
        coef_init, intercept_init : list of array-like, default=None
            Initial network ``theta_0`` instead of the random draw (pass both, or
            neither): one weight matrix of shape (fan_in, fan_out) and one bias
            vector of shape (fan_out,) per layer, for layer sizes ``(n_features,
            *hidden_layer_sizes, n_classes)``, e.g. the ``coefs_`` and
            ``intercepts_`` of another fitted estimator (copied, cast to float32;
            not modified). ``random_state`` still makes its draw of initial weights,
            so the monitor subset and the SGD order are those of a fit from the
            draw. Takes precedence over ``warm_start``.

        Returns
        -------
        self : HybridNTKClassifier
            The fitted estimator.

        Raises
        ------
        ValueError
            For invalid parameters or data: NaN or infinity in ``X`` or ``X_val``,
            values beyond the float32 range, a single class, multilabel or continuous
            ``y``, missing labels (``None``, NaN, ``NaT``, ``pandas.NA``) in ``y`` or
            ``y_val``, validation labels unknown to ``y``; ``devices`` holding
            something other than this process's jax devices; a kernel over
            ``max_kernel_bytes`` (raised before training); a non-finite loss or
            non-finite parameters during training (the message names the phase and
            the epoch); ``coef_init``/``intercept_init`` of the wrong number of layers,
            shapes or with non-finite values; ``warm_start=True`` with other features
            or classes than the fitted network's.
        TypeError
            If ``X`` or ``X_val`` is a scipy sparse matrix.
        """
        return self._fit_clearing_state(X, y, X_val, y_val, coef_init, intercept_init,
                                        sample_weight)

    def _prepare_targets(self, X, y, X_val, y_val, rng, sample_weight=None):
        """Labels checked, their classes, the weights, the stratified split and one-hot
        targets."""
        refuse_multi_column_y(y)
        refuse_missing_labels(y)
        X, y = validate_data(self, X, y, dtype=[np.float64, np.float32])
        check_float32_range(X, "X")
        refuse_mixed_labels(y)
        check_classification_targets(y)
        sample_weight = check_sample_weight(sample_weight, X)
        kept = None
        if sample_weight is not None and not np.all(sample_weight > 0):
            # Rows of weight zero are removed rows, before the classes are found.
            kept = np.flatnonzero(sample_weight > 0)
            X, y, sample_weight = X[kept], y[kept], sample_weight[kept]
        classes, y_index = np.unique(y, return_inverse=True)
        if len(classes) < 2:
            weighted = " among the rows of positive sample weight" if kept is not None else ""
            raise ValueError(
                f"HybridNTKClassifier needs samples of at least 2 classes; got 1 class "
                f"({label_repr(classes[0])}){weighted}. Pass data with two or more "
                f"distinct labels in `y`.")
        if self.class_weight is not None:
            # As SGDClassifier: "balanced" from the label counts of the rows trained on.
            per_class = compute_class_weight(self.class_weight, classes=classes, y=y)
            sample_weight = (np.ones(len(y)) if sample_weight is None
                             else sample_weight) * per_class[y_index]
        X, y_index, rows, weights = self._canonical(X, y_index, sample_weight, kept)
        X, Y, X_val, Y_val, train_rows, weights, val_weights = self._split(
            X, y_index, len(classes), X_val, y_val, classes, rng, weights)
        return (X, Y, X_val, Y_val, rows[train_rows], {"classes_": classes}, weights,
                val_weights)

    def _check_validation_set(self, X_val, y_val, classes):
        """Validated float ``X_val`` and the class indices of ``y_val``."""
        X_checked = self._check_validation_inputs(X_val)
        refuse_missing_labels(y_val, "y_val")
        y_val = np.asarray(y_val)
        if y_val.shape != (X_checked.shape[0],):
            raise ValueError(f"`y_val` must have shape ({X_checked.shape[0]},) to match "
                             f"`X_val`; got {y_val.shape}.")
        refuse_mixed_labels(y_val, "y_val")
        numeric = set("biuf")
        if (classes.dtype.kind in numeric) != (y_val.dtype.kind in numeric) and "O" not in (
                classes.dtype.kind, y_val.dtype.kind):
            raise ValueError(
                f"`y_val` holds labels of dtype {y_val.dtype}, but `y` of dtype "
                f"{classes.dtype}; pass validation labels of the same kind as `y`.")
        unknown = np.setdiff1d(y_val, classes)
        if unknown.size:
            raise ValueError(f"`y_val` holds labels not seen in `y`: {unknown[:5].tolist()}. "
                             f"The classes of `y` are {classes[:10].tolist()}.")
        return X_checked, np.searchsorted(classes, y_val)

    def _split(self, X, y_index, n_classes, X_val, y_val, classes, rng, weights=None):
        """Float32 training and validation arrays with one-hot targets (copies), the
        rows of ``X`` that form the training part, and the weights of both parts
        (``None`` for weights 1)."""
        val_weights = None
        split_seed = rng.randint(np.iinfo(np.int32).max)
        val_index = None
        train_rows = np.arange(X.shape[0])
        if X_val is not None:
            X_val, val_index = self._check_validation_set(X_val, y_val, classes)
        elif self.validation_fraction:
            n_samples = X.shape[0]
            n_val = int(np.ceil(self.validation_fraction * n_samples))
            counts = np.bincount(y_index, minlength=n_classes)
            reason = None
            if counts.min() < 2:
                reason = (f"class {label_repr(classes[np.argmin(counts)])} has a single sample, "
                          f"which cannot be in both parts")
            elif n_val < n_classes:
                reason = f"{n_val} held-out sample(s) cannot represent {n_classes} classes"
            elif n_samples - n_val < n_classes:
                reason = (f"the {n_samples - n_val} remaining training sample(s) cannot "
                          f"represent {n_classes} classes")
            else:
                X_train, X_held, train_index, held_index, split_rows, held_rows = (
                    train_test_split(X, y_index, np.arange(n_samples), test_size=n_val,
                                     stratify=y_index, random_state=split_seed))
                for part, index in (("training", train_index), ("validation", held_index)):
                    missing = np.flatnonzero(np.bincount(index, minlength=n_classes) == 0)
                    if missing.size and reason is None:
                        reason = (f"stratification leaves class {label_repr(classes[missing[0]])} "
                                  f"out of the {part} part")
                if reason is None:
                    X, X_val, y_index, val_index = X_train, X_held, train_index, held_index
                    train_rows = split_rows
                    if weights is not None:
                        weights, val_weights = weights[split_rows], weights[held_rows]
            if reason is not None:
                warnings.warn(
                    f"validation_fraction={self.validation_fraction} cannot hold out a "
                    f"stratified validation set of {n_val} of the {n_samples} samples "
                    f"with every one of the {n_classes} classes in both parts: {reason}. "
                    f"Training on all {n_samples} samples without validation (val_loss "
                    f"and val_accuracy are NaN). Pass `X_val` and `y_val`, a larger "
                    f"`validation_fraction`, or validation_fraction=None to silence this "
                    f"warning.", UserWarning)
        eye = np.eye(n_classes, dtype=COMPUTE_DTYPE)
        X = np.array(X, dtype=COMPUTE_DTYPE)
        if X_val is None:
            return X, eye[y_index], None, None, train_rows, weights, None
        return (X, eye[y_index], np.array(X_val, dtype=COMPUTE_DTYPE), eye[val_index],
                train_rows, weights, val_weights)

    # -------------------------------------------------------------- predict

    def decision_function(self, X):
        """The model's logits: the network's outputs before the softmax.

        For the ``"linearized"`` phase these are the linearised network's outputs
        ``f(x; theta*) + J(x; theta*) (theta - theta*)``; for the ``"kernel"`` phase the
        kernel regression's outputs (see the user guide's "Method" section).

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense inputs with the features seen in :meth:`fit`. Values beyond the
            float32 range are clipped to it. Not modified.

        Returns
        -------
        scores : ndarray of shape (n_samples,) or (n_samples, n_classes), float64
            With two classes, the log-odds of ``classes_[1]`` against ``classes_[0]``
            (``f_1(x) - f_0(x)``, positive where ``classes_[1]`` is predicted), as
            scikit-learn's binary classifiers return; otherwise the logits, columns in
            the order of ``classes_`` (defined up to a constant per row: the softmax
            ignores it). Computed in float32; a diverged model may give ``inf`` or
            NaN, which :meth:`predict_proba` handles by the rule in the Notes.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If ``X`` holds NaN or infinity, or has other features than in :meth:`fit`.
        TypeError
            If ``X`` is a scipy sparse matrix.
        """
        logits = self._outputs(X)
        if len(self.classes_) == 2:
            with np.errstate(invalid="ignore", over="ignore"):
                return logits[:, 1] - logits[:, 0]
        return logits

    def predict_proba(self, X):
        """Class probabilities: the softmax of the model's logits.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense inputs with the features seen in :meth:`fit`. Values beyond the
            float32 range are clipped to it. Not modified.

        Returns
        -------
        proba : ndarray of shape (n_samples, n_classes), float64
            Columns in the order of ``classes_``; finite, in [0, 1], rows sum to 1.
            Overflowing logits follow the rule in the class Notes: ``+inf`` is the
            largest logit (ties share), ``-inf`` and NaN get probability 0, a row
            without a usable logit is uniform.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If ``X`` holds NaN or infinity, or has other features than in :meth:`fit`.
        TypeError
            If ``X`` is a scipy sparse matrix.
        """
        return softmax(usable_logits(self._outputs(X)))

    def predict_log_proba(self, X):
        """Logarithm of the class probabilities of :meth:`predict_proba`.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense inputs with the features seen in :meth:`fit`. Not modified.

        Returns
        -------
        log_proba : ndarray of shape (n_samples, n_classes), float64
            ``log(predict_proba(X))``, columns in the order of ``classes_``, computed
            as the log-softmax of the logits: finite where a probability underflows
            to 0 (``np.log`` would give ``-inf``); ``-inf`` where the rule of the Notes
            gives probability 0 to an overflowing logit.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If ``X`` holds NaN or infinity, or has other features than in :meth:`fit`.
        TypeError
            If ``X`` is a scipy sparse matrix.
        """
        return log_softmax(usable_logits(self._outputs(X)))

    def predict(self, X):
        """Most probable class of each sample.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense inputs with the features seen in :meth:`fit`. Not modified.

        Returns
        -------
        y : ndarray of shape (n_samples,)
            Labels from ``classes_``, in their dtype: the argmax of
            :meth:`predict_proba`.

        Raises
        ------
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If ``X`` holds NaN or infinity, or has other features than in :meth:`fit`.
        TypeError
            If ``X`` is a scipy sparse matrix.
        """
        # The argmax of the probabilities themselves: logits a rounding error apart
        # can have equal probabilities, and predict must agree with predict_proba.
        proba = softmax(usable_logits(self._outputs(X)))
        return self.classes_[np.argmax(proba, axis=1)]

    @available_with_reason(BaseHybridNTK._variance_is_defined)
    def predict_variance(self, X):
        """Posterior variance of the latent logits under the NTK Gaussian process.

        Only for ``ntk_phase="kernel"`` at infinite flow time (``ntk_epochs="auto"``, the
        default, or ``numpy.inf``); otherwise the method is absent (``hasattr`` is False
        and calling it raises an ``AttributeError`` whose cause says what to refit
        with), as for scikit-learn's ``SVC(probability=False).predict_proba``.

        Kernel regression with the NTK ``K_bar = K / C`` at ``theta*`` and the ridge
        ``rho = kernel_ridge`` is the posterior mean of a Gaussian process that has prior
        covariance ``K_bar``, the same for each of the ``C`` latent logits and
        independent between them, prior mean ``offset(x)`` (``kernel_offset``) and
        Gaussian observation noise of variance ``rho`` on the one-hot targets (the
        "NTK-GP" of He, Lakshminarayanan and Teh 2020; Lee et al. 2019, sec. 2.3). This
        method returns that process's posterior variance at each ``x``::

            var(x) = K_bar(x, x) - K_bar(x, X) (K_bar(X, X) + rho I)^+ K_bar(X, x)

        with ``X = X_fit_`` and ``^+`` the pseudo-inverse (which the fit uses too: it
        matters only for ``rho = 0`` and a singular kernel). The posterior mean is
        :meth:`decision_function`'s logits.

        For a classifier this is the variance of every latent logit ``f_c(x)`` before the
        softmax, in squared logit units (the units of the squared one-hot targets); it
        is the same for every class. It says how far ``x`` lies from the training
        inputs in the geometry of the kernel: about 0 at a training input when
        ``rho = 0`` and the kernel is full rank (at most about ``rho`` otherwise), rising
        towards the prior variance ``K_bar(x, x)`` away from the data. It is not a
        calibrated probability, nor the variance of :meth:`predict_proba`, nor the spread
        of networks over random initialisations: the kernel is the empirical NTK of
        one trained network at ``theta*``, a data-dependent prior. For two classes
        the difference ``f_1 - f_0`` that :meth:`decision_function` returns has
        variance ``2 var(x)``.

        Parameters
        ----------
        X : array-like of shape (n_samples, n_features)
            Dense inputs with the features seen in :meth:`fit`. Values beyond the
            float32 range are clipped to it. Not modified.

        Returns
        -------
        variance : ndarray of shape (n_samples,), float64
            ``var(x)`` per sample, ``>= 0`` (negative rounding is clipped to 0).

        Raises
        ------
        AttributeError
            If the estimator was fitted with another ``ntk_phase`` or at a finite flow
            time (or, unfitted, has such parameters).
        sklearn.exceptions.NotFittedError
            If the estimator is not fitted.
        ValueError
            If ``X`` holds NaN or infinity or has other features than in :meth:`fit`, or
            if a kernel exceeds the fitted ``max_kernel_bytes`` (the message gives its
            size and what lowers it).
        TypeError
            If ``X`` is a scipy sparse matrix.

        Warns
        -----
        sklearn.exceptions.ConvergenceWarning
            With ``kernel_solver_ == "matrix_free"``, when conjugate gradients stop at the
            fitted ``kernel_max_iter`` before ``kernel_tol``; the variance is then
            overestimated.

        See Also
        --------
        decision_function : The posterior mean (the kernel regression's logits).
        sklearn.gaussian_process.GaussianProcessClassifier.latent_mean_and_variance :
            The latent variance of a Gaussian-process classifier (Laplace approximation
            of a binary classifier).

        Notes
        -----
        Nothing of the training kernel is kept by :meth:`fit`, so each call computes it
        again with the fitted ``theta*``, ``X_fit_``, ridge, solver and memory budget
        (:meth:`set_params` changes nothing); call it once on all the samples rather
        than row by row. ``K_bar(x, x)`` comes from the per-layer factors of each
        sample, so no kernel between the predicted samples is formed; the cross kernel
        ``K_bar(x, X)`` is formed for blocks of 256 rows.

        - ``kernel_solver_ == "dense"``: the ``N x N`` training kernel, ``O(N^2 F)``, and
          its Cholesky factor for ``rho > 0`` (``O(N^3 / 3)``) or, for ``rho = 0``, its
          eigendecomposition and pseudo-inverse as in :meth:`fit`; about as much memory
          as the fit's kernel. Then a triangular solve (or product) per block,
          ``O(n N^2)`` for ``n`` samples.
        - ``kernel_solver_ == "matrix_free"``: preconditioned conjugate gradients on
          ``(K_bar + rho I) Z = K_bar(X, x)`` for the samples of each block at once, one
          kernel-block product of as many columns as samples per iteration: about
          ``n / C`` times the cost of the fit's iterations, which for large ``N`` is
          slow. A solve stopped early errs towards a larger variance (exactly so in
          exact arithmetic). With ``rho = 0`` it may not converge: refit with
          ``kernel_ridge > 0``.

        The kernels are float32, so a variance below about ``1e-6 K_bar(x, x)`` is
        rounding.

        References
        ----------
        He, Lakshminarayanan and Teh, "Bayesian deep ensembles via the neural tangent
        kernel", NeurIPS 2020.
        Lee et al., "Wide neural networks of any depth evolve as linear models under
        gradient descent", NeurIPS 2019.
        """
        return self._predict_variance(X)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = False
        return tags
