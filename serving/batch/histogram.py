"""The score histogram as inline SVG, for a batch's HTML summary and its MLflow run: no plotting
library needed where batches run."""

from __future__ import annotations

import numpy as np


def histogram_svg(counts: np.ndarray, width: int = 480, height: int = 200) -> str:
    """The score histogram as inline SVG: the summary needs no plotting library."""
    top = max(int(counts.max()), 1) if len(counts) else 1
    bar = width / max(len(counts), 1)
    rects = "".join(
        f'<rect x="{i * bar:.1f}" y="{height - h:.1f}" width="{bar - 1:.1f}" height="{h:.1f}">'
        f"<title>{i / len(counts):.3f}-{(i + 1) / len(counts):.3f}: {c:,}</title></rect>"
        for i, c in enumerate(counts.tolist())
        for h in [height * c / top]
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height + 20}" '
        f'role="img" aria-label="histogram of probabilities"><g fill="#d98c1f">{rects}</g>'
        f'<text x="0" y="{height + 15}" font-size="12">0</text>'
        f'<text x="{width - 10}" y="{height + 15}" font-size="12">1</text></svg>'
        f"<p>probability (0 to 1) against persons; the tallest bar is {top:,}</p>"
    )
