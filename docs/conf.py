# Configuration file for the Sphinx documentation builder (MyST markdown, as Stable-Baselines3 >= 2.8).
# https://www.sphinx-doc.org/en/master/usage/configuration.html

import os
import sys

# Source code directory, relative to this file, for autodoc
sys.path.insert(0, os.path.abspath(".."))

# Read version from file
version_file = os.path.join(os.path.dirname(__file__), "..", "sb3_acktr", "version.txt")
with open(version_file) as file_handler:
    __version__ = file_handler.read().strip()

# -- Project information -----------------------------------------------------

project = "sb3-acktr"
copyright = "2026, sb3-acktr contributors"
author = "sb3-acktr contributors"
version = __version__
release = __version__

# -- General configuration ---------------------------------------------------

extensions = [
    "myst_parser",
    "sphinx.ext.autodoc",
    "sphinx.ext.autosummary",
    "sphinx.ext.mathjax",
    "sphinx.ext.viewcode",
    "sphinx_copybutton",
]

myst_enable_extensions = ["dollarmath", "colon_fence", "deflist"]
myst_heading_anchors = 3

source_suffix = {".md": "markdown"}
master_doc = "index"
exclude_patterns = ["_build", "Thumbs.db", ".DS_Store"]
pygments_style = "sphinx"

# Parameters are documented in the docstrings (":param x:"), in SB3's style
autodoc_typehints = "description"
autodoc_member_order = "bysource"
autoclass_content = "class"
# The autosummary tables list the policies; their pages are written by hand (no generated stubs)
autosummary_generate = False

# -- Options for HTML output -------------------------------------------------

html_theme = "sphinx_rtd_theme"
html_static_path = ["_static"]
htmlhelp_basename = "sb3acktrdoc"
html_css_files = ["css/custom.css"]
