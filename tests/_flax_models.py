"""A flax linen module for the tests (imported only where flax is installed)."""

import flax.linen as nn
import jax.numpy as jnp


class TwoLayer(nn.Module):
    """One hidden tanh layer of ``features`` units and ``n_outputs`` outputs."""

    features: int
    n_outputs: int = 3

    @nn.compact
    def __call__(self, X):
        return nn.Dense(self.n_outputs)(jnp.tanh(nn.Dense(self.features)(X)))
