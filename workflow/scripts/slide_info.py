"""Slide metadata, pixel size, tissue area, background I0 and the chunk list (checkpoint)."""

from _common import fail, read_json, rule_config, start

log = start(snakemake)  # noqa: F821

from cxcr4score.errors import InputError  # noqa: E402
from cxcr4score.slide_info import SlideInfo, describe_slide  # noqa: E402
from cxcr4score.tables import write_json  # noqa: E402

slide = snakemake.params.slide  # noqa: F821
config = rule_config(snakemake.params.slide_config)  # noqa: F821
problems = read_json(snakemake.input.validation)["problems"].get(slide["slide_id"])  # noqa: F821
identity = dict(slide_id=slide["slide_id"], patient_id=slide["patient_id"], path=slide["path"], roi_path=slide["roi"])
if problems:
    info = SlideInfo.failed(**identity, message="; ".join(problems))
else:
    try:
        info = describe_slide(slide["path"], slide_id=slide["slide_id"], patient_id=slide["patient_id"],
                              sheet_mpp=slide["mpp"], roi_path=slide["roi"], config=config)
    except InputError as err:
        # A slide can pass validate_inputs (which decodes one tile) and still be corrupt further in.
        if snakemake.params.on_bad_slide == "stop":  # noqa: F821
            fail(f"slide {slide['slide_id']} cannot be used (on_bad_slide: stop):\n  {err}")
        info = SlideInfo.failed(**identity, message=str(err))
log.info("%s", info)
write_json(info.to_json(), snakemake.output.info)  # noqa: F821
