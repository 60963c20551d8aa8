"""Slide metadata, pixel size, tissue area, background I0 and the chunk list (checkpoint)."""

from _common import fail, read_json, rule_config, start

log = start(snakemake)  # noqa: F821

from cxcr4score import stages  # noqa: E402
from cxcr4score.errors import InputError  # noqa: E402
from cxcr4score.tables import write_json  # noqa: E402

slide = snakemake.params.slide  # noqa: F821
try:
    info = stages.describe(slide, config=rule_config(snakemake.params.slide_config),  # noqa: F821
                           problems=read_json(snakemake.input.validation)["problems"].get(slide["slide_id"]),  # noqa: F821
                           on_bad_slide=snakemake.params.on_bad_slide)  # noqa: F821
except InputError as err:
    fail(str(err))
log.info("%s", info)
write_json(info.to_json(), snakemake.output.info)  # noqa: F821
