"""Pixels -> per-cell measurements of one chunk (no scoring thresholds)."""

from _common import read_slide_info, rule_config, staged, start, warn

log = start(snakemake)  # noqa: F821

from cxcr4score import stages  # noqa: E402

info = read_slide_info(snakemake.input.info)  # noqa: F821
chunk = snakemake.wildcards.chunk  # noqa: F821
cells, hist = stages.measure_chunk(info, chunk, config=rule_config(snakemake.params.pixel_config))  # noqa: F821
if stages.chunk_problem(cells):
    warn(f"slide {info.slide_id}, {stages.chunk_problem(cells)}\n  (merge_slide will stop the run, or fail the "
         "slide with on_bad_slide: skip)")
log.info("%s chunk %s (%d chunks in the slide): %d cells", info.slide_id, chunk, len(info.chunks), len(cells))
output = snakemake.output  # noqa: F821
with staged(output) as path:  # both outputs appear at the end, or neither
    stages.write_measurements(cells, hist, table_path=path[output.table], hist_path=path[output.hist])
