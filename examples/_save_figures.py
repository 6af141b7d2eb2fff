"""Save the open matplotlib figures of an example run as a plain script.

Each gallery example ends by calling :func:`save_open_figures` when it is not run by
sphinx-gallery (which captures the figures itself); see README.txt. This module is
not an example: the documentation's gallery ignores it.
"""

from pathlib import Path

import matplotlib.pyplot as plt


def save_open_figures(script):
    """Save every open figure as ``<script stem>_<n>.png`` in the current directory."""
    for n, number in enumerate(plt.get_fignums(), start=1):
        name = f"{Path(script).stem}_{n}.png"
        plt.figure(number).savefig(name)
        print("saved", name)
