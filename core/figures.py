"""Figures as PNG files: matplotlib on its file-only backend, one way to save."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from accelnas.core import files


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
    """Lay out ``fig``, replace ``path`` by it whole (``.png`` added to a name without a suffix), close it.

    Returns the path written.
    """
    path = Path(path)
    if not path.suffix:
        path = path.with_name(path.name + ".png")
    fig.tight_layout()
    try:
        with files.replacing(path) as tmp:
            fig.savefig(tmp, dpi=dpi, format=path.suffix.lstrip(".").lower())
    finally:
        pyplot().close(fig)
    return path
