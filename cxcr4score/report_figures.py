"""The report's figures: the cohort's calls against the cutoff, and each slide's DAB distribution,
class proportions and staining pattern.

Figures are drawn on :class:`matplotlib.figure.Figure` objects with the Agg canvas, not through
``pyplot``: no global figure state, no GUI backend chosen from the environment, and nothing kept
alive between slides of a long cohort.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from .qc import CLASS_COLOURS

#: Colour of each call, as in the report's tables.
CALL_COLOURS = {
    "eligible": "#2e7d32",
    "not_eligible": "#616161",
    "indeterminate": "#e69500",
    "inadequate": "#c62828",
}
#: Staining pattern columns of ``slides.csv`` (share of positive cells, %) and their labels.
PATTERN_COLUMNS = {
    "pct_positive_membranous": "membranous",
    "pct_positive_cytoplasmic": "cytoplasmic",
    "pct_positive_nuclear": "nuclear",
    "pct_positive_other": "other",
}
_CLASS_NAMES = ("0", "1+", "2+", "3+")
_COMPARTMENT_COLOURS = {"membrane": "#8d4004", "cytoplasm": "#d4a017", "nucleus": "#3b4cc0", "cell": "#555555"}
_DPI = 100


def _png(figure):
    buffer = io.BytesIO()
    FigureCanvasAgg(figure)
    # Fixed metadata: the same results give the same bytes (reruns are compared byte for byte).
    figure.savefig(buffer, format="png", dpi=_DPI, metadata={"Software": None})
    return buffer.getvalue()


def _class_colour(k):
    return tuple(c / 255 for c in CLASS_COLOURS[k])


def cohort_figure(patients, *, metric, cutoff):
    """Each patient's metric with its 95% interval against the cutoff, as PNG bytes.

    Parameters
    ----------
    patients : pandas.DataFrame
        Rows of ``eligibility.csv`` in the order to draw them (top to bottom): ``patient_id``,
        ``call``, ``metric``'s column and its ``_ci_low`` / ``_ci_high`` columns.
    metric : str
        ``pct_positive`` or ``h_score``.
    cutoff : float

    Returns
    -------
    bytes

    Notes
    -----
    The axis is symmetric-logarithmic, linear below half the cutoff: a 1% cutoff and values of
    0-100% would otherwise put every borderline patient in the first pixel.
    """
    n = len(patients)
    figure = Figure(figsize=(8, 1.2 + 0.32 * max(n, 1)))
    ax = figure.add_subplot()
    rows = np.arange(n)[::-1]
    value = patients[metric].to_numpy(float)
    low = patients[f"{metric}_ci_low"].to_numpy(float)
    high = patients[f"{metric}_ci_high"].to_numpy(float)
    colours = [CALL_COLOURS.get(call, "black") for call in patients["call"]]
    ax.hlines(rows, low, high, colors=colours, linewidth=2)
    ax.scatter(value, rows, c=colours, zorder=3, s=25)
    ax.axvline(cutoff, color="black", linestyle="--", linewidth=1)
    top = np.nanmax(np.concatenate([high, value, [cutoff]]))
    ax.set_xscale("symlog", linthresh=cutoff / 2 if cutoff > 0 else 1.0)
    ax.set_xlim(0, max(top * 1.2, cutoff * 2, 1.0))
    ax.set_yticks(rows, [str(p) for p in patients["patient_id"]], parse_math=False)  # ids are free text: '$' is no math
    ax.set_ylim(-0.7, n - 0.3)
    for row, v in zip(rows, value):
        if not np.isfinite(v):
            ax.text(cutoff, row, "  no scored cells", va="center", fontsize=8)
    ax.set_xlabel(f"{metric} with 95% interval (dashed: cutoff {cutoff:g}; symmetric log scale)")
    handles = [ax.scatter([], [], color=c, label=call) for call, c in CALL_COLOURS.items()]
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, 1.0), ncol=4, fontsize=8,
              frameon=False, borderaxespad=-2.2)
    ax.grid(axis="x", color="#dddddd")
    figure.tight_layout()
    return _png(figure)


def slide_figure(dab, slide, *, thresholds, compartments):
    """DAB distribution, class proportions and staining pattern of one slide, as PNG bytes.

    Parameters
    ----------
    dab : pandas.DataFrame
        The slide's scored cells, with a ``dab_{compartment}`` column (mean OD) per compartment.
    slide : mapping
        The slide's row of ``slides.csv`` (``pct_0`` .. ``pct_3``, ``n_cells``, the pattern
        columns of :data:`PATTERN_COLUMNS` where measured, ``n_positive``).
    thresholds : sequence of 3 float
        The 1+ / 2+ / 3+ OD thresholds, drawn on the distribution.
    compartments : sequence of str
        The compartments the class is read from.

    Returns
    -------
    bytes
    """
    figure = Figure(figsize=(13, 3.2))
    hist_ax, class_ax, pattern_ax = figure.subplots(1, 3, width_ratios=(2.2, 1, 1))
    _dab_histogram(hist_ax, dab, thresholds, compartments)
    _class_bars(class_ax, slide)
    _pattern_bars(pattern_ax, slide)
    # Fixed margins, not tight_layout: the panels and their labels are the same on every slide,
    # and tight_layout draws the figure once more to measure them (a third of a report's time).
    figure.subplots_adjust(left=0.06, right=0.99, bottom=0.2, top=0.9, wspace=0.28)
    return _png(figure)


def _dab_histogram(ax, dab, thresholds, compartments):
    values = [dab[f"dab_{c}"].to_numpy(float) for c in compartments]
    finite = np.concatenate([v[np.isfinite(v)] for v in values] + [np.zeros(1)])
    right = max(float(np.percentile(finite, 99.5)) * 1.1, thresholds[-1] * 1.3)
    bins = np.linspace(min(0.0, float(finite.min())), right, 60)
    for name, v in zip(compartments, values):
        ax.hist(np.clip(v[np.isfinite(v)], bins[0], bins[-1]), bins=bins, histtype="step", linewidth=1.5,
                color=_COMPARTMENT_COLOURS.get(name, "black"), label=f"{name} ({np.isfinite(v).sum():,} cells)")
    for k, t in enumerate(thresholds, start=1):
        ax.axvline(t, color=_class_colour(k), linewidth=1.5)
        ax.text(t, 1.0, f" {_CLASS_NAMES[k]}", color=_class_colour(k), transform=ax.get_xaxis_transform(),
                va="top", fontsize=8)
    ax.set_xlabel("mean DAB optical density per scored cell")
    ax.set_ylabel("cells")
    ax.legend(fontsize=8, frameon=False, loc="center right")


def _class_bars(ax, slide):
    shares = [float(slide.get(f"pct_{k}", np.nan)) for k in range(4)]
    bars = ax.bar(_CLASS_NAMES, np.nan_to_num(shares), color=[_class_colour(k) for k in range(4)])
    ax.bar_label(bars, labels=[f"{s:.1f}" if np.isfinite(s) else "" for s in shares], fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_ylabel("% of scored cells")
    n_cells = slide.get("n_cells")
    ax.set_title(f"class of {int(n_cells):,} scored cells" if pd.notna(n_cells) else "class of the scored cells",
                 fontsize=9)


def _pattern_bars(ax, slide):
    n_positive = slide.get("n_positive", np.nan)
    shares = [float(slide.get(column, np.nan)) for column in PATTERN_COLUMNS]
    ax.set_title("staining pattern of positive cells", fontsize=9)
    if not np.isfinite(shares).any() or pd.isna(n_positive) or not n_positive:
        ax.text(0.5, 0.5, "no positive cells" if n_positive == 0 else "not measured", ha="center", va="center",
                transform=ax.transAxes)
        ax.set_axis_off()
        return
    bars = ax.bar(list(PATTERN_COLUMNS.values()), np.nan_to_num(shares), color="#8d6e63")
    ax.bar_label(bars, labels=[f"{s:.0f}" for s in np.nan_to_num(shares)], fontsize=8)
    ax.set_ylim(0, 110)
    ax.set_ylabel(f"% of {int(n_positive):,} positive cells")
    ax.tick_params(axis="x", labelsize=8, labelrotation=20)
