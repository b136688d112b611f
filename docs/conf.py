"""Sphinx configuration of the course's website: `make docs` builds it into docs/_build/html.

The pages come from the stored, executed notebooks (never re-executed): site_notebooks.py copies them into
docs/notebooks/ with each slider panel shown as its stored picture. Nothing on the built site loads from
another host: MathJax comes from the sphinx-mathjax-offline package, the badge is a local file, and no
ipywidgets script is added.
"""

import re
import sys
import tomllib
from pathlib import Path

DOCS = Path(__file__).resolve().parent
ROOT = DOCS.parent
sys.path[:0] = [str(ROOT), str(DOCS)]  # `helpers` for the API page; site_notebooks beside this file

import site_notebooks  # noqa: E402

REPOSITORY = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["urls"]["Repository"]

project = "Taming gradients"
author = "the taming-gradients authors"
copyright = "2026, the taming-gradients authors (MIT licence)"

extensions = [
    "myst_nb",
    "sphinx.ext.autodoc",
    "sphinx.ext.viewcode",
    "sphinx-mathjax-offline",  # MathJax 3 from the package, copied into _static/mathjax: no CDN
]
exclude_patterns = ["_build", "**/.ipynb_checkpoints"]
default_role = "code"  # the docstrings' `value` means code, as in Markdown

# The stored notebooks are the pages: never execute them here.
nb_execution_mode = "off"
nb_ipywidgets_js = {}  # no require.js / widget manager from a CDN: panels are shown as pictures
nb_merge_streams = True
myst_enable_extensions = ["dollarmath", "amsmath", "colon_fence"]

autodoc_member_order = "bysource"
# Each object once, in the module that defines it (helpers.train re-exports some of helpers.optimizer).
autodoc_default_options = {"ignore-module-all": True}

html_theme = "sphinx_book_theme"
html_title = "Taming gradients"
html_static_path = ["_static"]
html_css_files = ["course.css"]
html_context = {"default_mode": "light"}  # the figures were drawn for a white page
html_theme_options = {
    "repository_url": REPOSITORY,
    "repository_branch": "main",
    "path_to_docs": "",  # pages notebooks/NN_name mirror the repository's notebooks/NN_name.ipynb (Colab link)
    "use_repository_button": True,
    "use_download_button": False,  # the page's .ipynb here is the site's copy, not the notebook to run
    "launch_buttons": {"colab_url": "https://colab.research.google.com"},
    "home_page_in_toc": True,
    "show_navbar_depth": 1,
    "navbar_persistent": [],  # one search field, in the sidebar
}


def readme_for_site(text: str) -> str:
    """The README's links, from the repository's layout to the site's (the notebooks keep their paths)."""
    text = text.replace("](docs/", "](")  # glossary.md, CONTRIBUTING.md, images/
    return re.sub(r"\]\(benchmarks/README\.md\)", "](benchmarks.md)", text)


def _include_read(app, relative_path, parent_docname, content):
    if Path(relative_path).name == "README.md" and parent_docname == "index":
        content[0] = readme_for_site(content[0])


def setup(app):
    # builder-inited comes before Sphinx looks for pages, so the notebook copies are found.
    app.connect("builder-inited", lambda app: site_notebooks.stage(ROOT / "notebooks", DOCS / "notebooks", REPOSITORY))
    app.connect("include-read", _include_read)
