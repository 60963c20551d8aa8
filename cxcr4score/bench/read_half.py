"""Read-stage benchmark of a 40x JPEG slide: half-scale JPEG decode against full decode and
area average (issue 22).

Run from a source checkout: ``python -m cxcr4score.bench.read_half [--size 16384] [--repeats 3]
[--workdir DIR]``. The slide is written once with tifffile (:func:`write_pyramid`): level 0 at
0.25 um/px in 512 px JPEG tiles (quality 90, YCbCr 4:2:0, as scanners write), tiled with
generated tissue, and levels reduced by 4 (so level 0 is read for the 0.5 um grid). The whole
analysis grid is read in 2048 x 2048 px boxes, as ``measure_chunk`` jobs read it, with
:func:`cxcr4score.grid.read_box` with and without ``reduced_decode``, alternately, at 1 and 2
threads; each figure is the median of the repeats after one untimed pass, which also measures
how far the reduced read is from the exact one.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import numpy as np

from .. import grid as grid_module
from .. import synthetic, tiling
from ..slide_reader import open_slide

#: Side of the analysis-grid boxes read at once (a measure_chunk core).
BOX_PX = 2048
#: Level-0 pixel size (um; a 40x scan), JPEG tile side (px) and quality of the generated slide.
MPP, TILE_PX, JPEG_QUALITY = 0.25, 512, 90
#: Side (px) and number of the generated tissue fields the slide is tiled with, flipped.
BANK_PX, BANK_FIELDS = 2048, 3


def write_pyramid(path, size, *, seed=0):
    """Write the benchmark's 40x JPEG pyramid (cached: an existing file is reused).

    Parameters
    ----------
    path : str or Path
    size : int
        Level-0 side in pixels, a multiple of ``BANK_PX``.
    seed : int
        Seed of the generated tissue fields.

    Returns
    -------
    Path
        A tiled TIFF: level 0 all tissue, tile by tile from ``BANK_FIELDS`` generated fields
        (flipped by position), and SubIFD levels each reduced by 4 (area averages) while
        their side is at least ``TILE_PX``.
    """
    import cv2
    import tifffile

    path = Path(path)
    if size % BANK_PX:
        raise ValueError(f"size must be a multiple of {BANK_PX}, got {size}")
    if path.is_file():
        return path
    spec = synthetic.TileSpec(size_um=(BANK_PX * MPP,) * 2, mpp=MPP, glass_fraction=0.0)
    bank = [synthetic.generate_tile(spec, seed=seed * BANK_FIELDS + k).rgb for k in range(BANK_FIELDS)]
    reduced = np.empty((size // 4, size // 4, 3), np.uint8)

    def level0_tiles():
        for top in range(0, size, TILE_PX):
            for left in range(0, size, TILE_PX):
                block = (top // BANK_PX) * (size // BANK_PX) + left // BANK_PX
                field = bank[block % BANK_FIELDS][::1 - 2 * (block % 2), ::1 - 2 * (block // 2 % 2)]
                r, c = top % BANK_PX, left % BANK_PX
                tile = np.ascontiguousarray(field[r:r + TILE_PX, c:c + TILE_PX])
                reduced[top // 4:(top + TILE_PX) // 4, left // 4:(left + TILE_PX) // 4] = cv2.resize(
                    tile, (TILE_PX // 4, TILE_PX // 4), interpolation=cv2.INTER_AREA)
                yield tile

    levels, side = 0, size // 4
    while side >= TILE_PX:
        levels, side = levels + 1, side // 4
    options = {"photometric": "rgb", "tile": (TILE_PX, TILE_PX), "compression": "jpeg",
               "compressionargs": {"level": JPEG_QUALITY}}
    partial = path.with_name(path.name + ".partial")
    path.parent.mkdir(parents=True, exist_ok=True)
    with tifffile.TiffWriter(partial, bigtiff=3 * size * size >= 2**32) as tif:
        tif.write(level0_tiles(), shape=(size, size, 3), dtype=np.uint8, subifds=levels,
                  resolution=(1e4 / MPP, 1e4 / MPP), resolutionunit="CENTIMETER", **options)
        level = reduced
        for _ in range(levels):
            tif.write(level, subfiletype=1, **options)
            level = cv2.resize(level, (level.shape[1] // 4, level.shape[0] // 4), interpolation=cv2.INTER_AREA)
    partial.replace(path)
    return path


def read_bench(workdir, *, size=16384, repeats=3, threads=(1, 2)):
    """Time reading a generated 40x slide's analysis grid with and without the half-scale decode.

    Parameters
    ----------
    size : int
        Level-0 side (px at 0.25 um/px) of the generated slide.
    repeats : int
        Timed passes per mode and thread count (median reported).
    threads : sequence of int
        Numba thread counts (tiles are decoded on that many threads).
    workdir : str or Path
        Where the slide is written, or reused (``read_half_{size}px.tif``).

    Returns
    -------
    dict
        ``slide`` (path, level-0 and grid shape), ``timings`` (per thread count: seconds and
        Mpix/s of grid output for ``reduced`` and ``exact``, and their ratio), ``difference``
        (reduced minus exact over the whole grid: mean absolute and mean per channel, 99th
        percentile and maximum of the absolute difference, in grey levels).
    """
    import numba

    path = write_pyramid(Path(workdir) / f"read_half_{size}px.tif", size)
    before = numba.get_num_threads()
    timings = {}
    with open_slide(path) as reader:
        grid = grid_module.choose_grid(reader.levels, native_mpp=reader.mpp, analysis_mpp=0.5)
        boxes = [tile.core for tile in tiling.plan_tiles(grid.shape, halo_px=0, core_px=BOX_PX)]
        mpix = grid.shape[0] * grid.shape[1] / 1e6
        abs_sum, signed_sum, histogram = np.zeros(3), np.zeros(3), np.zeros(256, np.int64)
        for box in boxes:  # untimed pass: compilation, file cache, and the difference
            diff = (grid_module.read_box(reader, grid, box).astype(np.int16)
                    - grid_module.read_box(reader, grid, box, reduced_decode=False))
            abs_sum += np.abs(diff).sum(axis=(0, 1))
            signed_sum += diff.sum(axis=(0, 1))
            histogram += np.bincount(np.abs(diff).ravel(), minlength=256)
        cumulative = np.cumsum(histogram) / histogram.sum()
        difference = {"mean_abs": (abs_sum / (mpix * 1e6)).round(4).tolist(),
                      "mean": (signed_sum / (mpix * 1e6)).round(4).tolist(),
                      "p99_abs": int(np.searchsorted(cumulative, 0.99)),
                      "max_abs": int(np.nonzero(histogram)[0].max())}
        try:
            for n in threads:
                numba.set_num_threads(n)
                seconds = {"reduced": [], "exact": []}
                for _ in range(repeats):
                    for mode, reduced in (("reduced", True), ("exact", False)):
                        start = time.perf_counter()
                        for box in boxes:
                            grid_module.read_box(reader, grid, box, reduced_decode=reduced)
                        seconds[mode].append(time.perf_counter() - start)
                medians = {mode: statistics.median(values) for mode, values in seconds.items()}
                timings[n] = {mode: {"seconds": s, "mpix_s": mpix / s} for mode, s in medians.items()}
                timings[n]["speed_up"] = medians["exact"] / medians["reduced"]
        finally:
            numba.set_num_threads(before)
        shape0 = reader.levels[0].shape
    return {"slide": {"path": str(path), "level0": shape0, "grid": grid.shape, "grid_mpix": mpix},
            "timings": timings, "difference": difference}


def main(argv=None):
    """Command line: print :func:`read_bench`'s result as JSON."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", type=int, default=16384)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--workdir", type=Path, default=Path("."), help="where the slide is written [.]")
    args = parser.parse_args(argv)
    print(json.dumps(read_bench(args.workdir, size=args.size, repeats=args.repeats), indent=1))


if __name__ == "__main__":
    main()
