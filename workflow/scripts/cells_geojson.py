"""A slide's cells as QuPath cell objects (GeoJSON), from its cells table."""

from pathlib import Path

from _common import staged, start

log = start(snakemake)  # noqa: F821

from cxcr4score import stages  # noqa: E402

output, slide_id = snakemake.output, snakemake.wildcards.slide  # noqa: F821
with staged(output) as path:  # both files appear at the end, or neither
    qupath_file = stages.geojson_from_table(snakemake.input.cells, path[output.geojson], slide_id=slide_id,  # noqa: F821
                                            compress_above=snakemake.params.geojson_compress_above)  # noqa: F821
log.info("%s: cells for QuPath in %s", slide_id, Path(qupath_file).name)
