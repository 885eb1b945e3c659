"""Server-side charts: a new matplotlib Figure per chart (never pyplot's global state, which is
not safe in a threaded web server).

matplotlib is imported on the first chart, not at module import: it costs about a second, and
every `manage.py` command and web worker would pay it at admin autodiscovery.
"""

from __future__ import annotations

import base64
import io
from typing import Any


def new_figure(**kwargs: Any) -> Any:
    """A `matplotlib.figure.Figure` with the Agg backend."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib.figure import Figure

    return Figure(**kwargs)


def png_data_uri(fig: Any) -> str:
    """The figure as an inline PNG, so a page with charts is one self-contained response."""
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()
