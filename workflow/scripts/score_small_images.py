"""Thresholds, cells tables and QC pictures of several small images in one job.

The same stages as merge_slide, cells_geojson and qc_slide, slide after slide.
"""

import os

from _common import fail, read_slide_info, rule_config, staged, start

log = start(snakemake)  # noqa: F821

from cxcr4score import stages  # noqa: E402
from cxcr4score.errors import InputError  # noqa: E402

slide_ids = snakemake.params.slide_ids  # noqa: F821
inputs, output = snakemake.input, snakemake.output  # noqa: F821
class_config = rule_config(snakemake.params.class_config)  # noqa: F821
qc_config = rule_config(snakemake.params.qc_config)  # noqa: F821
with staged(output) as path:  # all outputs appear at the end, or none
    for k, slide_id in enumerate(slide_ids):
        measured = read_slide_info(inputs.info[k])
        cells_path = path[output.cells[k]]
        try:
            info, n_cells = stages.merge_files(measured, [inputs.table[k]], [inputs.hist[k]], config=class_config,
                                               on_bad_slide=snakemake.params.on_bad_slide,  # noqa: F821
                                               cells_path=cells_path, blocks_path=path[output.blocks[k]],
                                               summary_path=path[output.summary[k]])
        except InputError as err:
            fail(str(err))
        if info.qc_status == "failed":
            log.error("%s: %s", info.slide_id, info.qc_message)
        # From the table as written, as the per-slide rules do (read twice: a small image's is small).
        qupath_file = stages.geojson_from_table(cells_path, path[output.geojson[k]], slide_id=slide_id,
                                                compress_above=snakemake.params.geojson_compress_above)  # noqa: F821
        log.info("%s (%d of %d): %d cells; cells for QuPath in %s", slide_id, k + 1, len(slide_ids), n_cells,
                 os.path.basename(qupath_file))
        # As qc_slide draws it, from the slide's measured info and its summary's QC verdict.
        stages.qc_from_table(measured, path[output.summary[k]], cells_path, path[output.qc[k]], config=qc_config)
