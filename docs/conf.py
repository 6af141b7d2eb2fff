"""Sphinx configuration of the skntk documentation.

Build with ``python -m sphinx -W -b html docs docs/_build/html`` from the
repository root; the gallery examples in ``examples/`` are executed.
"""

import os
import re

# The examples run JAX and LAPACK (the eigendecomposition of the "kernel" phase) in one
# process. On a machine with few, busy cores, LAPACK's worker threads can slow an
# eigendecomposition tenfold; one thread keeps the build time stable. Set before numpy
# is imported; an explicit OPENBLAS_NUM_THREADS wins.
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")

import skntk  # noqa: E402

project = "skntk"
copyright = "skntk contributors"
version = release = skntk.__version__

extensions = [
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "numpydoc",
    "sphinx_gallery.gen_gallery",
]

templates_path = ["_templates"]
exclude_patterns = ["_build", "generated/backreferences"]

autosummary_generate = True
autodoc_default_options = {"members": False}
numpydoc_show_class_members = False
numpydoc_class_members_toctree = False

sphinx_gallery_conf = {
    "examples_dirs": "../examples",
    "gallery_dirs": "auto_examples",
    "filename_pattern": "/plot_",
    # The examples' helper for saving figures when run as scripts is not an example.
    "ignore_pattern": r"__init__\.py|_save_figures\.py",
    "doc_module": ("skntk",),
    "backreferences_dir": "generated/backreferences",
    "reference_url": {"skntk": None},
    "abort_on_example_error": True,
    "remove_config_comments": True,
}

html_theme = "pydata_sphinx_theme"
html_title = f"skntk {version}"
html_theme_options = {"navigation_with_keys": False}


# Shapes in docstrings name fitted attributes, e.g. "of shape (n_features_in_,)". In
# reStructuredText a word ending in "_" is a link to a target of that name, which does
# not exist; escape the underscore so that the name reads as written.
_SHAPE = re.compile(r"shape \(([^)]*)\)")
_TRAILING_UNDERSCORE = re.compile(r"\b(\w+)_(?=[,)\s]|$)")


def _escape_shape_names(app, what, name, obj, options, lines):
    def escape(match):
        return _TRAILING_UNDERSCORE.sub(r"\1\\_", match.group(0))

    lines[:] = [_SHAPE.sub(escape, line) for line in lines]


def setup(app):
    # Before numpydoc (priority 500) turns the docstring into reStructuredText.
    app.connect("autodoc-process-docstring", _escape_shape_names, priority=400)
