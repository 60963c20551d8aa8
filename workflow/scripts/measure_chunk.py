"""Pixels -> per-cell measurements of one chunk (no scoring thresholds)."""

import numpy as np
from _common import read_json, start

log = start(snakemake)  # noqa: F821

from cxcr4score import pipeline  # noqa: E402
from cxcr4score.slide_info import SlideInfo  # noqa: E402
from cxcr4score.tables import write_table  # noqa: E402

info = SlideInfo.from_json(read_json(snakemake.input.info))  # noqa: F821
config = snakemake.config  # noqa: F821 (the effective config, coerced in common.smk)
cells, hist = pipeline.measure_chunk(info, snakemake.wildcards.chunk, config=config)  # noqa: F821
log.info("%s chunk %s (%d chunks in the slide): %d cells", info.slide_id, snakemake.wildcards.chunk,  # noqa: F821
         len(info.chunks), len(cells))
write_table(cells, snakemake.output.table)  # noqa: F821
np.save(snakemake.output.hist, hist)  # noqa: F821
