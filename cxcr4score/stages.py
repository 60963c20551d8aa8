"""What a workflow job does for a slide at each stage, bad input included, and the files it writes.

The per-stage rules (``slide_info``, ``measure_chunk``, ``merge_slide``, ``cells_geojson``,
``qc_slide``) call these for one slide or chunk per job; the small-image rules call them for
several slides in one job, so that a cohort of small images pays the start-up of a job once per
batch rather than four times per image. Both paths run the same functions on the same pixels and give the same bytes.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

from . import pipeline, qc, reading_order, roi
from .measure import empty_histogram
from .errors import InputError
from .slide_info import SlideInfo, describe_slide
from .tables import PART_ROWS, parquet_parts, read_parts, table_attrs, write_bytes, write_json, write_table


def describe(slide, *, config, problems, on_bad_slide):
    """The slide's :class:`SlideInfo`, or a failed one that says why (``on_bad_slide: skip``).

    Parameters
    ----------
    slide : dict
        The slide's sheet row (``slide_id``, ``patient_id``, ``path``, ``mpp``, ``roi``).
    config : dict
    problems : list of str
        What ``validate_inputs`` found wrong with the slide (empty when it opened).
    on_bad_slide : {"stop", "skip"}

    Raises
    ------
    InputError
        With ``on_bad_slide: stop``, when the slide opened in ``validate_inputs`` but is
        corrupt further in.
    """
    identity = dict(slide_id=slide["slide_id"], patient_id=slide["patient_id"], path=slide["path"],
                    roi_path=slide["roi"])
    if problems:
        return SlideInfo.failed(**identity, message="; ".join(problems))
    try:
        return describe_slide(slide["path"], slide_id=slide["slide_id"], patient_id=slide["patient_id"],
                              sheet_mpp=slide["mpp"], roi_path=slide["roi"], config=config)
    except InputError as err:
        # validate_inputs decodes one tile: a slide can pass it and still be corrupt further in.
        if on_bad_slide == "stop":
            raise InputError([f"slide {slide['slide_id']} cannot be used (on_bad_slide: stop):\n  {err}"]) from None
        return SlideInfo.failed(**identity, message=str(err))


def measure_chunk(info, chunk, *, config):
    """The chunk's measurements and pixel histogram; an unreadable chunk gives none and records why.

    The problem goes in ``cells.attrs[pipeline.CHUNK_ERROR]``; :func:`merge_files` acts on it by
    ``on_bad_slide``, so that switching stop / skip reruns no pixel work.
    """
    try:
        return pipeline.measure_chunk(info, chunk, config=config)
    except InputError as err:  # a corrupt tile that neither validate_inputs nor slide_info read
        cells, hist = pipeline.empty_measurements(), empty_histogram()
        cells.attrs[pipeline.CHUNK_ERROR] = f"chunk {chunk}: {err}"
        return cells, hist


def chunk_problem(cells):
    """What made a chunk unreadable (see :func:`measure_chunk`), or ``None``."""
    return cells.attrs.get(pipeline.CHUNK_ERROR)


def merge_files(info, table_paths, hist_paths, *, config, on_bad_slide, cells_path, blocks_path, summary_path):
    """Apply thresholds to a slide's measured chunks and write its cells table, block counts and
    summary (:func:`cxcr4score.pipeline.merge_slide_parts`).

    The chunk tables are read a row group at a time, only those the merge has reached, and the
    cells table is written ``PART_ROWS`` cells at a time, so that memory does not grow with the
    slide's cell count. A chunk that could not be measured stops the run
    (``on_bad_slide: stop``) or fails the slide as a whole (``skip``).

    Parameters
    ----------
    info : SlideInfo
    table_paths, hist_paths : sequence of path
        The chunks' measurement tables and histograms (:func:`write_measurements`), in chunk order.
    config : dict
    on_bad_slide : {"stop", "skip"}
    cells_path, blocks_path, summary_path : path
        Where the cells table (Parquet), block counts (Parquet) and summary (JSON) go.

    Returns
    -------
    info : SlideInfo
        ``info``, or a failed one when a chunk could not be read.
    n_cells : int

    Raises
    ------
    InputError
        With ``on_bad_slide: stop``, naming the slide and the chunks that could not be read; and
        naming a chunk table that cannot be read or is not in reading order (damaged, or
        written by cxcr4score < 0.8.0), whatever ``on_bad_slide``.
    """
    errors = [problem for problem in (_read(table_attrs, path).get(pipeline.CHUNK_ERROR) for path in table_paths)
              if problem]
    if errors and on_bad_slide == "stop":
        raise InputError([f"slide {info.slide_id}, {'; '.join(errors)}\n  (the slide is damaged where only this "
                          "chunk reads it; remove it from the sheet or re-export it, or set on_bad_slide: skip)"])
    if errors:
        info = SlideInfo.failed(slide_id=info.slide_id, patient_id=info.patient_id, path=info.path,
                                roi_path=info.roi, message=f"cannot be read where {'; '.join(errors)}")
        table_paths, hist_paths = [], []
    try:
        with parquet_parts(cells_path) as write_cells:
            blocks, summary = pipeline.merge_slide_parts(info, [_SortedFile(p) for p in table_paths],
                                                         map(np.load, hist_paths), config=config,
                                                         write_cells=write_cells)
    except reading_order.NotInReadingOrder as err:
        raise InputError([f"slide {info.slide_id}: {err}: the measurements are damaged or were written by "
                          "cxcr4score < 0.8.0; measure again (snakemake --forcerun measure_chunk)"]) from None
    write_table(blocks, blocks_path)
    write_json(summary, summary_path)
    return info, summary["n_cells_detected"]


class _SortedFile:
    """A measurement table on disk (sorted, :func:`write_measurements`) as a source for
    :func:`cxcr4score.reading_order.merge_sorted`: read part by part, only when needed."""

    def __init__(self, path):
        self.path = self.name = str(path)
        missing = sorted(set(pipeline.empty_measurements().columns) - set(_read(lambda p: pq.read_schema(p).names, path)))
        if missing:
            raise InputError([f"{path}: these measurements lack {', '.join(missing)} (written by an older "
                              "cxcr4score); measure again (snakemake --forcerun measure_chunk)"])
        first = _read(lambda p: next(read_parts(p, columns=["y"], rows=1)), path)
        self.first_y = float(first["y"].iat[0]) if len(first) else None

    def parts(self, columns=None):
        """The table's rows in order, ``PART_ROWS`` at a time."""
        return read_parts(self.path, columns=None if columns is None else list(columns))


def _read(read, path):
    """``read(path)``, an unreadable measurement table an error that names it."""
    try:
        return read(path)
    except (OSError, ValueError, pa.ArrowException) as err:  # pyarrow: no file name in its message
        raise InputError([f"{path}: cannot read these measurements ({err}); measure again "
                          "(snakemake --forcerun measure_chunk)"]) from None


def geojson_from_table(cells_path, geojson_path, *, slide_id, compress_above):
    """Write a slide's cells for QuPath (:func:`cxcr4score.roi.write_cells_geojson`) from its
    cells table, read part by part.

    Returns
    -------
    Path
        The file that holds the cells.
    """
    return roi.write_cells_geojson(read_parts(cells_path), geojson_path, slide_id=slide_id,
                                   compress_above=compress_above)


def qc_from_table(info, summary_path, cells_path, png_path, *, config):
    """Write a slide's QC picture (:func:`cxcr4score.pipeline.qc_slide`) from its summary and
    cells table: every cell's position and class, and the outlines of those in the picture's
    crop only."""
    summary = json.loads(Path(summary_path).read_text())
    cells = pd.read_parquet(cells_path, columns=["x", "y", "scored", "class"])
    outlines = read_parts(cells_path, columns=list(pipeline.OUTLINE_COLUMNS))
    qc.write_png(pipeline.qc_slide(info, summary, cells, config=config, outline_parts=outlines), png_path)


def write_measurements(cells, hist, *, table_path, hist_path):
    """Write a chunk's (or a slide's) measurements and pixel histogram; the table in parts of
    ``PART_ROWS`` cells, as the merge reads it."""
    write_table(cells, table_path, part_rows=PART_ROWS)
    buffer = io.BytesIO()
    np.save(buffer, hist)
    write_bytes(buffer.getvalue(), hist_path)


def measure_slide(info, *, config):
    """Every chunk of a slide measured in turn: one table in reading order (chunk problems
    joined) and one histogram.

    The small-image rules keep a slide's measurements in one file; :func:`merge_files` reads
    them as it reads the chunks of a large slide.
    """
    parts = [measure_chunk(info, chunk, config=config) for chunk in info.chunks]
    tables = [cells for cells, _ in parts]
    table = reading_order.sort_cells(pd.concat(tables, ignore_index=True)) if tables else pipeline.empty_measurements()
    problems = [problem for problem in map(chunk_problem, tables) if problem]
    table.attrs = {pipeline.CHUNK_ERROR: "; ".join(problems)} if problems else {}
    hist = np.sum([h for _, h in parts], axis=0) if parts else empty_histogram()
    return table, hist
