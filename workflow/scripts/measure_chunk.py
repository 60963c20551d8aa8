"""Pixels -> per-cell measurements of one chunk (no scoring thresholds)."""

import io

import numpy as np
from _common import read_json, rule_config, start, warn

log = start(snakemake)  # noqa: F821

from cxcr4score import measure, pipeline  # noqa: E402
from cxcr4score.errors import InputError  # noqa: E402
from cxcr4score.slide_info import SlideInfo  # noqa: E402
from cxcr4score.tables import write_bytes, write_table  # noqa: E402

info = SlideInfo.from_json(read_json(snakemake.input.info))  # noqa: F821
config = rule_config(snakemake.params.pixel_config)  # noqa: F821
try:
    cells, hist = pipeline.measure_chunk(info, snakemake.wildcards.chunk, config=config)  # noqa: F821
except InputError as err:  # a corrupt tile that neither validate_inputs nor slide_info read
    problem = f"chunk {snakemake.wildcards.chunk}: {err}"  # noqa: F821
    # The chunk records the problem and merge_slide acts on it by on_bad_slide (its param, not
    # this rule's: switching stop / skip must not rerun the chunks that worked).
    warn(f"slide {info.slide_id}, {problem}\n  (merge_slide will stop the run, or fail the slide with "
         "on_bad_slide: skip)")
    cells, hist = pipeline.empty_measurements(), measure.empty_histogram()
    cells.attrs[pipeline.CHUNK_ERROR] = problem
log.info("%s chunk %s (%d chunks in the slide): %d cells", info.slide_id, snakemake.wildcards.chunk,  # noqa: F821
         len(info.chunks), len(cells))
write_table(cells, snakemake.output.table)  # noqa: F821
buffer = io.BytesIO()
np.save(buffer, hist)
write_bytes(buffer.getvalue(), snakemake.output.hist)  # noqa: F821
