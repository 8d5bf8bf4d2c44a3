"""Progress bars: a widget in a live notebook, text everywhere else.

Every training loop in rlteach shows a ``tqdm`` bar. In JupyterLab, Colab or Binder with
``ipywidgets`` installed it is drawn as a notebook widget; in a terminal, in a notebook whose
kernel lacks ``ipywidgets``, and when a chapter is executed to store the outputs the book shows
(``RLTEACH_TEXT_PROGRESS=1``, set by ``scripts/execute_notebooks.py`` and by the tests), it is
tqdm's text bar. The book is a static site that works offline, so its stored outputs hold the
finished text bar rather than a widget that would need JavaScript from the network to draw.

Choosing here, rather than with ``tqdm.auto``, also keeps tqdm's ``IProgress not found``
warning (and the path of the machine that printed it) out of the stored outputs.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from tqdm import std

TEXT_PROGRESS_VARIABLE = "RLTEACH_TEXT_PROGRESS"


def _in_notebook_kernel() -> bool:
    """True inside a Jupyter kernel (ipykernel's shell), false in a terminal or plain IPython."""
    ipython = sys.modules.get("IPython")
    if ipython is None:
        return False
    shell = ipython.get_ipython()
    return shell is not None and type(shell).__name__ == "ZMQInteractiveShell"


def widgets_wanted() -> bool:
    """Whether a progress bar should be a notebook widget here and now."""
    if os.environ.get(TEXT_PROGRESS_VARIABLE, "0").strip().lower() not in ("", "0", "false", "no"):
        return False
    return _in_notebook_kernel() and importlib.util.find_spec("ipywidgets") is not None


def progress_bar(*args, **kwargs) -> std.tqdm:
    """A ``tqdm`` bar (same arguments as ``tqdm.tqdm``), a widget where :func:`widgets_wanted`."""
    if widgets_wanted():
        from tqdm.notebook import tqdm as notebook_tqdm

        return notebook_tqdm(*args, **kwargs)
    return std.tqdm(*args, **kwargs)
