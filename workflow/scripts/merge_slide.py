"""Apply thresholds: the per-cell table, block class counts per variant, the slide summary."""

import numpy as np
import pandas as pd
from _common import fail, read_json, rule_config, start

log = start(snakemake)  # noqa: F821

from cxcr4score import pipeline, roi  # noqa: E402
from cxcr4score.slide_info import SlideInfo  # noqa: E402
from cxcr4score.tables import write_json, write_table  # noqa: E402

info = SlideInfo.from_json(read_json(snakemake.input.info))  # noqa: F821
config = rule_config(snakemake.params.class_config)  # noqa: F821
tables = [pd.read_parquet(p) for p in snakemake.input.tables]  # noqa: F821
hists = [np.load(p) for p in snakemake.input.hists]  # noqa: F821
errors = [t.attrs[pipeline.CHUNK_ERROR] for t in tables if pipeline.CHUNK_ERROR in t.attrs]
if errors and snakemake.params.on_bad_slide == "stop":  # noqa: F821
    fail(f"slide {info.slide_id}, {'; '.join(errors)}\n  (the slide is damaged where only this chunk reads it; "
         "remove it from the sheet or re-export it, or set on_bad_slide: skip)")
if errors:  # on_bad_slide: skip, and a chunk could not be read: the slide fails as a whole
    info = SlideInfo.failed(slide_id=info.slide_id, patient_id=info.patient_id, path=info.path, roi_path=info.roi,
                            message=f"cannot be read where {'; '.join(errors)}")
    tables, hists = [], []
    log.error("%s: %s", info.slide_id, info.qc_message)
measurements = pd.concat(tables, ignore_index=True) if tables else pipeline.empty_measurements()
cells, blocks, summary = pipeline.merge_slide(info, measurements, hists, config=config)
log.info("%s: %d cells", info.slide_id, len(cells))
write_table(cells, snakemake.output.cells)  # noqa: F821
# The cells for QuPath, gzipped in output.geojson_gz (its name is output.geojson's + ".gz"); the
# plain file holds them too, or for a slide of more than geojson_compress_above cells a note.
qupath_file = roi.write_cells_geojson(cells, snakemake.output.geojson, slide_id=info.slide_id,  # noqa: F821
                                      compress_above=snakemake.params.geojson_compress_above)  # noqa: F821
log.info("%s: cells for QuPath in %s", info.slide_id, qupath_file)
write_table(blocks, snakemake.output.blocks)  # noqa: F821
write_json(summary, snakemake.output.summary)  # noqa: F821
