"""What a workflow job does for a slide at each stage, bad input included, and the files it writes.

The per-stage rules (``slide_info``, ``measure_chunk``, ``merge_slide``) call these for one slide
or chunk per job; the small-image rules call them for several slides in one job, so that a
cohort of small images pays the start-up of a job once per batch rather than four times per
image. Both paths run the same functions on the same pixels and give the same bytes.
"""

from __future__ import annotations

import io

import numpy as np
import pandas as pd

from . import pipeline
from .measure import empty_histogram
from .errors import InputError
from .slide_info import SlideInfo, describe_slide
from .tables import write_bytes, write_json, write_table


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

    The problem goes in ``cells.attrs[pipeline.CHUNK_ERROR]``; :func:`merge` acts on it by
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


def merge(info, tables, hists, *, config, on_bad_slide):
    """Apply thresholds to a slide's chunks (:func:`cxcr4score.pipeline.merge_slide`).

    A chunk that could not be read stops the run (``on_bad_slide: stop``) or fails the slide
    as a whole (``skip``).

    Returns
    -------
    info : SlideInfo
        ``info``, or a failed one when a chunk could not be read.
    cells, blocks : pandas.DataFrame
    summary : dict

    Raises
    ------
    InputError
        With ``on_bad_slide: stop``, naming the slide and the chunks that could not be read.
    """
    errors = [problem for problem in map(chunk_problem, tables) if problem]
    if errors and on_bad_slide == "stop":
        raise InputError([f"slide {info.slide_id}, {'; '.join(errors)}\n  (the slide is damaged where only this "
                          "chunk reads it; remove it from the sheet or re-export it, or set on_bad_slide: skip)"])
    if errors:
        info = SlideInfo.failed(slide_id=info.slide_id, patient_id=info.patient_id, path=info.path,
                                roi_path=info.roi, message=f"cannot be read where {'; '.join(errors)}")
        tables, hists = [], []
    measurements = pd.concat(tables, ignore_index=True) if tables else pipeline.empty_measurements()
    cells, blocks, summary = pipeline.merge_slide(info, measurements, hists, config=config)
    return info, cells, blocks, summary


def write_measurements(cells, hist, *, table_path, hist_path):
    """Write a chunk's (or a slide's) measurements and pixel histogram."""
    write_table(cells, table_path)
    buffer = io.BytesIO()
    np.save(buffer, hist)
    write_bytes(buffer.getvalue(), hist_path)


def read_measurements(table_paths, hist_paths):
    """The measurement tables and histograms written by :func:`write_measurements`."""
    return [pd.read_parquet(p) for p in table_paths], [np.load(p) for p in hist_paths]


def measure_slide(info, *, config):
    """Every chunk of a slide measured in turn: one table (chunk problems joined) and one histogram.

    The small-image rules keep a slide's measurements in one file; :func:`merge` reads them as
    it reads the chunks of a large slide.
    """
    parts = [measure_chunk(info, chunk, config=config) for chunk in info.chunks]
    tables = [cells for cells, _ in parts]
    table = pd.concat(tables, ignore_index=True) if tables else pipeline.empty_measurements()
    problems = [problem for problem in map(chunk_problem, tables) if problem]
    table.attrs = {pipeline.CHUNK_ERROR: "; ".join(problems)} if problems else {}
    hist = np.sum([h for _, h in parts], axis=0) if parts else empty_histogram()
    return table, hist


def write_slide_results(cells, blocks, summary, *, cells_path, blocks_path, summary_path):
    """Write a merged slide: the cells table, the block counts and the summary.

    The QuPath cells and the QC picture are drawn from the cells table as written
    (:func:`cxcr4score.roi.write_cells_geojson`, :func:`cxcr4score.pipeline.qc_slide`).
    """
    write_table(cells, cells_path)
    write_table(blocks, blocks_path)
    write_json(summary, summary_path)
