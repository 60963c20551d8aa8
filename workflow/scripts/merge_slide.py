"""Apply thresholds: the per-cell table, block class counts per variant, the slide summary."""

from _common import fail, read_slide_info, rule_config, staged, start

log = start(snakemake)  # noqa: F821

from cxcr4score import stages  # noqa: E402
from cxcr4score.errors import InputError  # noqa: E402

info = read_slide_info(snakemake.input.info)  # noqa: F821
output = snakemake.output  # noqa: F821
with staged(output) as path:  # all outputs appear at the end, or none
    try:
        info, n_cells = stages.merge_files(info, snakemake.input.tables, snakemake.input.hists,  # noqa: F821
                                           config=rule_config(snakemake.params.class_config),  # noqa: F821
                                           on_bad_slide=snakemake.params.on_bad_slide,  # noqa: F821
                                           cells_path=path[output.cells], blocks_path=path[output.blocks],
                                           summary_path=path[output.summary])
    except InputError as err:
        fail(str(err))
if info.qc_status == "failed":
    log.error("%s: %s", info.slide_id, info.qc_message)
log.info("%s: %d cells", info.slide_id, n_cells)
