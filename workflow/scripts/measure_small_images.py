"""Slide metadata and pixel measurements of several small images in one job (no scoring thresholds).

The same stages as slide_info and measure_chunk, slide after slide; each slide's chunks are
measured in turn and kept in one measurements file.
"""

from _common import fail, read_json, rule_config, staged, start, warn

log = start(snakemake)  # noqa: F821

from cxcr4score import stages  # noqa: E402
from cxcr4score.errors import InputError  # noqa: E402
from cxcr4score.tables import write_json  # noqa: E402

slides = snakemake.params.slides  # noqa: F821
output = snakemake.output  # noqa: F821
config = rule_config(snakemake.params.pixel_config)  # noqa: F821
problems = read_json(snakemake.input.validation)["problems"]  # noqa: F821
with staged(output) as path:  # all outputs appear at the end, or none
    for k, slide in enumerate(slides):
        try:
            info = stages.describe(slide, config=config, problems=problems.get(slide["slide_id"]),
                                   on_bad_slide=snakemake.params.on_bad_slide)  # noqa: F821
        except InputError as err:
            fail(str(err))
        log.info("%s", info)
        write_json(info.to_json(), path[output.info[k]])
        cells, hist = stages.measure_slide(info, config=config)
        if stages.chunk_problem(cells):
            warn(f"slide {info.slide_id}, {stages.chunk_problem(cells)}\n  (the slide's scoring will stop the run, "
                 "or fail the slide with on_bad_slide: skip)")
        log.info("%s (%d of %d): %d chunks, %d cells", info.slide_id, k + 1, len(slides), len(info.chunks), len(cells))
        stages.write_measurements(cells, hist, table_path=path[output.table[k]],
                                  hist_path=path[output.hist[k]])
