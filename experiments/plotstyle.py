"""The look every figure of the project shares (matplotlib rc parameters)."""

from __future__ import annotations

import matplotlib

STYLE = {
    "figure.dpi": 110, "savefig.dpi": 150, "font.size": 9, "axes.titlesize": 10,
    "axes.labelsize": 9, "legend.fontsize": 8, "axes.grid": True, "grid.alpha": 0.3,
    "axes.spines.top": False, "axes.spines.right": False, "lines.linewidth": 1.4,
    "axes.prop_cycle": matplotlib.cycler(color=["#1f77b4", "#d62728", "#2ca02c", "#ff7f0e",
                                                "#9467bd", "#8c564b", "#17becf", "#7f7f7f"]),
    "svg.hashsalt": "wanmig",     # stable ids: the same data gives the same SVG
}
