"""A slide's cells in reading order (top to bottom, left to right), merged from sorted chunks.

Each chunk's measurement table is sorted when it is measured; the merge of a slide then reads
its chunks part by part and merges them as a k-way merge, so that a slide of millions of cells
is put in order holding a few parts of each chunk that reaches the current row, not the slide.
pandas and NumPy sort whole arrays and ``heapq.merge`` goes row by row in Python; merging
sorted runs part by part with vectorised cuts is written here.
"""

from __future__ import annotations

import numpy as np
import pandas as pd

#: The sort key, most significant first. ``cell_id`` (unique within a slide as measured: tile
#: index and label) makes it total, so the order never depends on which chunk a cell came from.
KEY = ("y", "x", "nucleus_area_um2", "cell_area_um2", "cell_id")


def sort_cells(cells):
    """``cells`` sorted by :data:`KEY`, with a fresh index."""
    order = np.lexsort([cells[c].to_numpy() for c in reversed(KEY)])
    return cells.iloc[order].reset_index(drop=True)


class NotInReadingOrder(ValueError):
    """A table given to :func:`merge_sorted` is not sorted by :data:`KEY` (or has a missing key)."""


class SortedFrame:
    """A table in memory, sorted by :data:`KEY`, as a source for :func:`merge_sorted`."""

    def __init__(self, cells, name="a table in memory"):
        self.cells = cells
        self.name = name
        self.first_y = float(cells["y"].iat[0]) if len(cells) else None

    def parts(self, columns=None):
        """The table as one part (``columns`` only, when given)."""
        return iter([self.cells if columns is None else self.cells[list(columns)]])


def merge_sorted(tables, *, size):
    """Yield the cells of sorted tables in reading order, in parts of ``size`` cells.

    Parameters
    ----------
    tables : sequence
        Each sorted by :data:`KEY`, with ``first_y`` (its first cell's ``y``, None without
        cells), ``parts()`` (an iterator of its rows in order, part by part, read only as it
        is advanced) and ``name`` (for errors): :class:`SortedFrame`, or a table read from disk.
    size : int
        Cells per part given out.

    Yields
    ------
    pandas.DataFrame
        ``size`` cells, the last part the rest; nothing without cells.

    Raises
    ------
    NotInReadingOrder
        If a table is not sorted by :data:`KEY`, holds a cell twice, or a key is NaN.

    Notes
    -----
    A table is opened once the cut reaches its first ``y``; each round takes, from every
    open table's current part, the cells up to the smallest of the parts' last keys (the
    cut), which every cell not yet read follows.
    """
    waiting = sorted((t for t in tables if t.first_y is not None), key=lambda t: t.first_y)
    open_runs, done, pending = [], 0, []
    while waiting or open_runs:
        cut = min((run.last for run in open_runs), default=None)
        while waiting and (cut is None or waiting[0].first_y <= cut[0]):
            run = _Run(waiting.pop(0))
            if run.part is not None:
                open_runs.append(run)
                cut = run.last if cut is None else min(cut, run.last)
        if not open_runs:
            continue
        taken = [run.take(cut) for run in open_runs]
        open_runs = [run for run in open_runs if run.part is not None]
        pending.append(sort_cells(pd.concat(taken, ignore_index=True)))
        done += len(pending[-1])
        while sum(map(len, pending)) >= size:
            joined = pd.concat(pending, ignore_index=True)
            yield joined.iloc[:size].reset_index(drop=True)
            pending = [joined.iloc[size:].reset_index(drop=True)]
    rest = [p for p in pending if len(p)]
    if rest:
        yield pd.concat(rest, ignore_index=True)


class _Run:
    """An open table of :func:`merge_sorted`: its current part and the key of that part's last cell."""

    def __init__(self, table):
        self.parts = table.parts()
        self.name = table.name
        self.last = None
        self._advance()

    def _advance(self):
        self.part = next((p for p in self.parts if len(p)), None)
        if self.part is None:
            return
        keys = [self.part[c].to_numpy() for c in KEY]
        if not all(np.isfinite(k).all() for k in keys):
            raise NotInReadingOrder(f"{self.name}: a cell without {' / '.join(KEY)} (NaN)")
        ordered = _after([k[1:] for k in keys], [k[:-1] for k in keys])
        if self.last is not None:
            ordered = np.concatenate([_after([k[:1] for k in keys], self.last), ordered])
        if not ordered.all():
            raise NotInReadingOrder(f"{self.name}: cells not in reading order ({', '.join(KEY)} ascending, "
                                    "each cell once)")
        self.last = tuple(k[-1] for k in keys)

    def take(self, cut):
        """The cells of the current part up to ``cut`` (a prefix, the part being sorted); the
        next part is read once this one is used up."""
        count = int(np.count_nonzero(~_after([self.part[c].to_numpy() for c in KEY], cut)))
        taken = self.part.iloc[:count]
        self.part = self.part.iloc[count:]
        if not len(self.part):
            self._advance()
        return taken


def _after(a, b):
    """Whether each key of ``a`` comes strictly after that of ``b`` (lexicographic over
    :data:`KEY`); ``a`` and ``b`` are one array (or scalar) per key column, broadcast together."""
    greater, equal = False, True
    for x, y in zip(a, b):
        greater = greater | (equal & (x > y))
        equal = equal & (x == y)
    return np.asarray(greater)
