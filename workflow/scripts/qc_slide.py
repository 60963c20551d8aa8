"""The QC picture of one slide."""

from _common import read_slide_info, rule_config, start

log = start(snakemake)  # noqa: F821

from cxcr4score import stages  # noqa: E402

info = read_slide_info(snakemake.input.info)  # noqa: F821
stages.qc_from_table(info, snakemake.input.summary, snakemake.input.cells, snakemake.output[0],  # noqa: F821
                     config=rule_config(snakemake.params.qc_config))  # noqa: F821
