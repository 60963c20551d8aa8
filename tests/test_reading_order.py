"""cxcr4score.reading_order: the k-way merge of sorted chunks against one global sort."""

import numpy as np
import pandas as pd
import pytest

from cxcr4score.reading_order import KEY, NotInReadingOrder, SortedFrame, merge_sorted, sort_cells


def _cells(n, seed):
    """Cells with few distinct y and x values, so that the later key columns decide often."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"y": rng.integers(0, 20, n).astype(float), "x": rng.integers(0, 5, n).astype(float),
                         "nucleus_area_um2": rng.integers(0, 3, n) * 10.0, "cell_area_um2": rng.integers(0, 2, n) * 50.0,
                         "cell_id": rng.permutation(n).astype(np.int64), "value": rng.random(n)})


class _InParts:
    """A sorted table given in parts of ``rows`` (as one read from disk), counting what is read."""

    def __init__(self, cells, rows, reads, name="chunk"):
        self.cells, self.rows, self.reads, self.name = cells, rows, reads, name
        self.first_y = float(cells["y"].iat[0]) if len(cells) else None

    def parts(self, columns=None):
        for start in range(0, max(len(self.cells), 1), self.rows):
            self.reads.append(start)
            yield self.cells.iloc[start:start + self.rows]


@pytest.mark.parametrize("seed", range(5))
@pytest.mark.parametrize("size", [1, 7, 1000])
def test_merge_of_sorted_chunks_is_the_global_sort(seed, size):
    """Reference: np.lexsort of all the cells at once. Chunks overlap in y as a row of tiles
    cut into chunks does; one is empty; parts of every size."""
    cells = _cells(400, seed)
    bounds = [0, 90, 90, 250, 400]
    chunks = [sort_cells(cells.iloc[a:b]) for a, b in zip(bounds[:-1], bounds[1:])]
    reads = []
    out = list(merge_sorted([_InParts(c, 13, reads) for c in chunks], size=size))
    assert [len(p) for p in out[:-1]] == [size] * (len(out) - 1) and 0 < len(out[-1]) <= size
    order = np.lexsort([cells[c].to_numpy() for c in reversed(KEY)])
    pd.testing.assert_frame_equal(pd.concat(out, ignore_index=True), cells.iloc[order].reset_index(drop=True))


def test_tables_are_read_only_when_the_merge_reaches_them():
    """Chunks below the current row are not read yet: a chunk whose cells all lie below the
    first chunk's is opened only after the first chunk's cells have gone out."""
    cells = _cells(200, 1)
    top, bottom = sort_cells(cells[cells["y"] < 10]), sort_cells(cells[cells["y"] >= 10])
    top_reads, bottom_reads = [], []
    merged = merge_sorted([_InParts(top, 10, top_reads), _InParts(bottom, 10, bottom_reads)], size=10)
    for _ in range(len(top) // 10 - 1):
        next(merged)
    assert not bottom_reads and top_reads
    assert len(pd.concat([*merged])) == len(cells) - 10 * (len(top) // 10 - 1)


def test_unsorted_table_is_an_error_that_names_it():
    """An unsorted table, one sorted only within its parts, a cell given twice and a missing key
    are each an error naming the table, never cells silently out of order."""
    cells = sort_cells(_cells(50, 2))
    with pytest.raises(NotInReadingOrder, match="backwards: cells not in reading order"):
        list(merge_sorted([SortedFrame(cells.iloc[::-1].reset_index(drop=True), name="backwards")], size=10))
    swapped = pd.concat([cells.iloc[25:], cells.iloc[:25]], ignore_index=True)  # each part sorted, not the table
    with pytest.raises(NotInReadingOrder, match="chunk 3: cells not in reading order"):
        list(merge_sorted([_InParts(swapped, 25, [], name="chunk 3")], size=10))
    twice = pd.concat([cells.iloc[:10], cells.iloc[9:]], ignore_index=True)
    with pytest.raises(NotInReadingOrder, match="each cell once"):
        list(merge_sorted([SortedFrame(twice)], size=10))
    missing = cells.copy()
    missing.loc[49, "y"] = np.nan
    with pytest.raises(NotInReadingOrder, match="NaN"):
        list(merge_sorted([SortedFrame(missing)], size=10))


def test_no_cells_give_no_parts():
    empty = _cells(0, 0)
    assert list(merge_sorted([SortedFrame(empty), _InParts(empty, 5, [])], size=3)) == []
