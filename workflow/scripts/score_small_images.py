"""Thresholds, cells tables and QC pictures of several small images in one job.

The same stages as merge_slide and qc_slide, slide after slide.
"""

import os

import pandas as pd
from _common import fail, read_json, rule_config, staged, start

log = start(snakemake)  # noqa: F821

from cxcr4score import pipeline, qc, roi, stages  # noqa: E402
from cxcr4score.errors import InputError  # noqa: E402
from cxcr4score.slide_info import SlideInfo  # noqa: E402

slide_ids = snakemake.params.slide_ids  # noqa: F821
inputs, output = snakemake.input, snakemake.output  # noqa: F821
class_config = rule_config(snakemake.params.class_config)  # noqa: F821
qc_config = rule_config(snakemake.params.qc_config)  # noqa: F821
with staged(output) as path:  # all outputs appear at the end, or none
    for k, slide_id in enumerate(slide_ids):
        measured = SlideInfo.from_json(read_json(inputs.info[k]))
        tables, hists = stages.read_measurements([inputs.table[k]], [inputs.hist[k]])
        try:
            info, cells, blocks, summary = stages.merge(measured, tables, hists, config=class_config,
                                                        on_bad_slide=snakemake.params.on_bad_slide)  # noqa: F821
        except InputError as err:
            fail(str(err))
        if info.qc_status == "failed":
            log.error("%s: %s", info.slide_id, info.qc_message)
        stages.write_slide_results(cells, blocks, summary, cells_path=path[output.cells[k]],
                                   blocks_path=path[output.blocks[k]], summary_path=path[output.summary[k]])
        # As cells_geojson and qc_slide do it: from the cells table as written, read once.
        written = pd.read_parquet(path[output.cells[k]])
        qupath_file = roi.write_cells_geojson(written, path[output.geojson[k]], slide_id=slide_id,
                                              compress_above=snakemake.params.geojson_compress_above)  # noqa: F821
        log.info("%s (%d of %d): %d cells; cells for QuPath in %s", slide_id, k + 1, len(slide_ids), len(cells),
                 os.path.basename(qupath_file))
        # As qc_slide draws it, from the slide's measured info.
        picture = pipeline.qc_slide(measured, written, config=qc_config)
        qc.write_png(picture, path[output.qc[k]])
