"""Figures as PNG files: matplotlib on its file-only backend, one way to save."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed); imported on first use."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def image_formats() -> list[str]:
    """File suffixes (without the dot) a figure can be saved as: png, pdf, svg, ..."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    return sorted(FigureCanvasAgg.get_supported_filetypes())


def check_image_path(path: str | Path) -> None:
    """Raise ``ValueError`` when ``path``'s suffix is not a format figures can be saved as."""
    suffix = Path(path).suffix.lower().lstrip(".")
    if suffix and suffix not in (formats := image_formats()):
        raise ValueError(f"cannot write a .{suffix} figure (formats: {', '.join(formats)})")


def save_figure(fig: Any, path: str | Path, *, dpi: int = 120) -> Path:
    """Lay out ``fig``, write it to ``path`` (parents created), close it; returns the path."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.tight_layout()
    fig.savefig(path, dpi=dpi)
    pyplot().close(fig)
    return path
