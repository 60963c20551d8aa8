"""Open every slide (and ROI) once; stop listing ALL problems, or record them for on_bad_slide: skip."""

from _common import fail, start

log = start(snakemake)  # noqa: F821 (snakemake is injected by the script directive)

from cxcr4score import pipeline, runtime  # noqa: E402
from cxcr4score.tables import write_json  # noqa: E402

# Compile the Numba kernels into NUMBA_CACHE_DIR now, in this one local job, so that the
# parallel jobs after it load them instead of all compiling the same code at once.
runtime.warm_up()
log.info("kernels compiled or loaded from the Numba cache")

slides = snakemake.params.slides  # noqa: F821
problems = {}
info = {}
for slide in slides:
    details, found = pipeline.validate_slide(slide["path"], roi_path=slide["roi"],
                                             roi_classes=snakemake.params.roi_classes)  # noqa: F821
    info[slide["slide_id"]] = details
    if found:
        problems[slide["slide_id"]] = found
    log.info("%s: %s", slide["slide_id"], "; ".join(found) or "ok")

if problems and snakemake.params.on_bad_slide == "stop":  # noqa: F821
    lines = [f"  {slide_id}: {p}" for slide_id, found in problems.items() for p in found]
    fail(f"{len(problems)} of {len(slides)} slides cannot be used (on_bad_slide: stop):\n" + "\n".join(lines))
write_json({"slides": info, "problems": problems}, snakemake.output[0])  # noqa: F821
