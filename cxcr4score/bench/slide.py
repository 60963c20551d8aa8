"""Whole-slide benchmark (``cxcr4score bench slide``).

A generated 40x slide (0.25 um/px, an Aperio-SVS-like tiled JPEG pyramid written by tifffile)
is scored by the whole Snakemake workflow of the source checkout, and a fully tissue-covered
region of it by the plain scikit-image reference (``tests/reference.py``) in the same run. The
slide is a round section (about 60% of its area) tiled with tiles of
:func:`cxcr4score.synthetic.generate_tile`, on glass; it is cached by its parameters.

Our speed is the whole workflow's: analysis-grid pixels (0.5 um/px, a quarter of the level-0
pixels) over the wall time of ``snakemake --cores N``, per core; start-up, decoding, glass,
merge and report included. The reference is timed end to end on its region, the read through
OpenSlide and the 2 x 2 area average included, at one thread.
"""

from __future__ import annotations

import heapq
import math
import os
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cxcr4score

from .. import config as cx_config
from .. import synthetic
from . import speed

#: Level-0 pixel size of the generated slide (um; a 40x scan).
SLIDE_MPP = 0.25
#: Side of the slide's JPEG tiles (level-0 px).
TILE_PX = 512
#: Each reduced pyramid level is this many times smaller than the one before it.
LEVEL_FACTOR = 4
#: Reduced levels are added until the coarsest one's side is below this (px).
COARSEST_PX = 2048
#: Side of the generated tissue tiles the section is tiled with (level-0 px; 512 um).
BANK_PX = 2048
#: How many different tissue tiles at most (each drawn with its own seed).
BANK_TILES = 6
#: Share of the slide's area covered by the section.
TISSUE_FRACTION = 0.6
#: Glass: this grey level with Gaussian noise of this standard deviation (8-bit units).
GLASS_GREY = 240
GLASS_NOISE = 2.0
JPEG_QUALITY = 90
#: Part of the cached slide's file name: raise it whenever the generated slide changes.
SLIDE_VERSION = 1
#: Side of the reference's region on the analysis grid (px at 0.5 um/px), at most.
REFERENCE_PX = 2048
#: Cores the wall time is projected to.
PROJECTED_CORES = 8
#: Radius of the section is modulated by these (amplitude, angular frequency, phase) terms.
_EDGE_WAVES = ((0.04, 3, 1.0), (0.03, 5, 2.0))
_SNAKEFILE = Path(cxcr4score.__file__).resolve().parents[1] / "Snakefile"
_SLIDE_ID = "bench_slide"
#: Where the workflow keeps Numba's cache unless NUMBA_CACHE_DIR says (workflow/rules/common.smk).
_NUMBA_CACHE = Path.home() / ".cache" / "cxcr4score" / "numba"


class WorkflowFailed(RuntimeError):
    """``snakemake`` exited with an error while scoring the benchmark slide."""


def find_snakefile(path=None):
    """The workflow's Snakefile in the source checkout the package was imported from.

    Parameters
    ----------
    path : str or Path, optional
        Where to look instead (tests).

    Returns
    -------
    Path

    Raises
    ------
    speed.NeedsSourceCheckout
        If there is none (e.g. the package was installed from a wheel).
    """
    path = Path(path or _SNAKEFILE)
    if not path.is_file():
        raise speed.NeedsSourceCheckout(
            f"the slide benchmark runs the workflow of a source checkout of cxcr4score: {path} is missing "
            "(installed from a wheel?)")
    return path


def level_sides(size):
    """Sides of the pyramid levels, finest first: ``size``, then ``LEVEL_FACTOR`` times smaller
    each, down to the first below ``COARSEST_PX``."""
    sides = [size]
    while sides[-1] >= COARSEST_PX:
        sides.append(sides[-1] // LEVEL_FACTOR)
    return sides


def slide_path(folder, size, seed):
    """Where the slide of these parameters is cached."""
    return Path(folder) / f"bench_slide_{size}px_seed{seed}_v{SLIDE_VERSION}.svs"


def write_slide(folder, *, size=32768, seed=0):
    """Write the generated slide, or reuse the one already cached for these parameters.

    Parameters
    ----------
    folder : str or Path
        Cache folder (created if needed).
    size : int
        Level-0 side in pixels (at 0.25 um/px); a multiple of ``TILE_PX``, at least
        ``COARSEST_PX``.
    seed : int
        Seed of the tissue tiles and of the choice and flips of the tile at each place.

    Returns
    -------
    Path
        An Aperio-SVS-like TIFF: level 0 in JPEG tiles, a stripped thumbnail, then the reduced
        levels (``level_sides``) in tiles; every description begins ``Aperio`` and carries
        ``MPP = 0.25``. Level 0 is generated and written tile by tile, never whole.
    """
    import tifffile

    if size % TILE_PX or size < COARSEST_PX:
        raise ValueError(f"size must be a multiple of {TILE_PX} and at least {COARSEST_PX}, got {size}")
    path = slide_path(folder, size, seed)
    if path.is_file():
        return path
    path.parent.mkdir(parents=True, exist_ok=True)
    sides = level_sides(size)
    reduced = np.empty((sides[1], sides[1], 3), np.uint8)
    partial = path.with_name(path.name + ".partial")
    options = {"photometric": "rgb", "compression": "jpeg", "compressionargs": {"level": JPEG_QUALITY},
               "metadata": None}
    with tifffile.TiffWriter(partial, bigtiff=3 * size * size >= 2**32) as tif:
        tif.write(_level0_tiles(size, seed, reduced), shape=(size, size, 3), dtype=np.uint8,
                  tile=(TILE_PX, TILE_PX), description=_aperio_description(size, size),
                  maxworkers=os.cpu_count(), **options)
        levels = [reduced]
        for side in sides[2:]:
            levels.append(_area_resize(levels[-1], side))
        tif.write(levels[-1], rowsperstrip=16, description=_aperio_description(size, sides[-1]), **options)
        for level in levels:
            tif.write(level, tile=(TILE_PX, TILE_PX), description=_aperio_description(size, len(level)), **options)
    os.replace(partial, path)
    return path


def _aperio_description(size, side):
    """An Aperio ImageDescription: what tifffile's ``is_svs`` and OpenSlide's aperio driver
    look for, with the pixel size where :mod:`cxcr4score.pixel_size` reads it."""
    shrink = f" -> {side}x{side}" if side != size else ""
    return (f"Aperio Image Library cxcr4score bench slide\r\n{size}x{size} [0,0 {size}x{size}] "
            f"({TILE_PX}x{TILE_PX}){shrink} JPEG/RGB Q={JPEG_QUALITY}|AppMag = 40|MPP = {SLIDE_MPP}")


def _area_resize(rgb, side):
    import cv2

    return cv2.resize(rgb, (side, side), interpolation=cv2.INTER_AREA)


def _level0_tiles(size, seed, reduced):
    """Level-0 tiles in row-major order; each one's area average goes into ``reduced``."""
    bank = _tissue_bank(size, seed)
    glass = _glass_tiles(seed)
    blocks = math.ceil(size / BANK_PX)
    rng = np.random.default_rng([seed, 1])
    choice = rng.integers(0, len(bank), (blocks, blocks))
    flips = rng.integers(0, 2, (blocks, blocks, 2)) * -2 + 1  # 1 or -1: a step for slicing
    section = _Section(size)
    small = TILE_PX // LEVEL_FACTOR
    for top in range(0, size, TILE_PX):
        for left in range(0, size, TILE_PX):
            block = (top // BANK_PX, left // BANK_PX)
            tissue = bank[choice[block]][::flips[block][0], ::flips[block][1]]
            r, c = top % BANK_PX, left % BANK_PX
            tissue = tissue[r:r + TILE_PX, c:c + TILE_PX]
            inside = section.inside(top, left)
            glass_tile = glass[(top // TILE_PX + left // TILE_PX) % len(glass)]
            if inside is True:
                tile = np.ascontiguousarray(tissue)
            elif inside is False:
                tile = glass_tile
            else:
                tile = np.where(inside[..., None], tissue, glass_tile)
            reduced[top // LEVEL_FACTOR:top // LEVEL_FACTOR + small,
                    left // LEVEL_FACTOR:left // LEVEL_FACTOR + small] = _area_resize(tile, small)
            yield tile


def _tissue_bank(size, seed):
    """Fully tissue-covered generated tiles at the slide's pixel size, I0 about the glass's grey."""
    blocks = math.ceil(size / BANK_PX) ** 2
    spec = synthetic.TileSpec(size_um=(BANK_PX * SLIDE_MPP,) * 2, mpp=SLIDE_MPP, glass_fraction=0.0,
                              i0_range=(GLASS_GREY - 2.0, GLASS_GREY + 2.0), noise_sigma=GLASS_NOISE)
    return [synthetic.generate_tile(spec, seed=seed * BANK_TILES + k).rgb for k in range(min(BANK_TILES, blocks))]


def _glass_tiles(seed, count=4):
    rng = np.random.default_rng([seed, 2])
    noisy = rng.normal(GLASS_GREY, GLASS_NOISE, (count, TILE_PX, TILE_PX, 3))
    return list(np.clip(np.rint(noisy), 0, 255).astype(np.uint8))


class _Section:
    """A round tissue section in the middle of the slide with a gently wavy edge, covering
    ``TISSUE_FRACTION`` of the slide's area."""

    def __init__(self, size):
        self.centre = size / 2
        # The mean of r(theta)^2 over theta is r0^2 (1 + sum a^2 / 2).
        spread = 1 + sum(a * a for a, _, _ in _EDGE_WAVES) / 2
        self.radius = size * np.sqrt(TISSUE_FRACTION / np.pi / spread)
        wobble = sum(a for a, _, _ in _EDGE_WAVES)
        self.r_min, self.r_max = self.radius * (1 - wobble), self.radius * (1 + wobble)

    def inside(self, top, left, side=TILE_PX):
        """True (all tissue), False (all glass), or the boolean mask of a mixed tile."""
        near_r = np.clip(self.centre, top, top + side) - self.centre
        near_c = np.clip(self.centre, left, left + side) - self.centre
        far_r = max(abs(top - self.centre), abs(top + side - self.centre))
        far_c = max(abs(left - self.centre), abs(left + side - self.centre))
        if np.hypot(far_r, far_c) <= self.r_min:
            return True
        if np.hypot(near_r, near_c) >= self.r_max:
            return False
        rows = np.arange(top, top + side)[:, None] + 0.5 - self.centre
        cols = np.arange(left, left + side)[None, :] + 0.5 - self.centre
        angle = np.arctan2(rows, cols)
        edge = self.radius * (1 + sum(a * np.sin(k * angle + phase) for a, k, phase in _EDGE_WAVES))
        return rows * rows + cols * cols <= edge * edge


# --------------------------------------------------------------------------------------
# The workflow
# --------------------------------------------------------------------------------------

def run_workflow(slide, folder, *, cores, snakefile=None):
    """Score one slide with ``snakemake --cores`` in ``folder``; time the whole command.

    The folder gets a one-slide sheet and ``config/config.yaml`` (the package defaults, the
    sheet, ``outdir: results``); Snakemake reads the Snakefile from the source checkout. Numba's
    cache (``NUMBA_CACHE_DIR``, as the workflow sets it) is filled first, untimed, so that a
    first run times what every later run does.

    Parameters
    ----------
    slide : str or Path
        The slide to score.
    folder : str or Path
        An empty working folder for Snakemake.
    cores : int
        ``snakemake --cores``.
    snakefile : str or Path, optional
        Instead of the source checkout's.

    Returns
    -------
    dict
        ``wall_s``, ``outdir`` (Path) and ``threads`` (per rule, as Snakemake ran its jobs).

    Raises
    ------
    speed.NeedsSourceCheckout
        No Snakefile next to the package.
    WorkflowFailed
        Snakemake failed; the message holds the end of its output.
    """
    import yaml

    snakefile = find_snakefile(snakefile)
    folder = Path(folder)
    sheet = folder / "slides.tsv"
    sheet.write_text(f"patient_id\tslide_id\tpath\nBENCH\t{_SLIDE_ID}\t{Path(slide).resolve()}\n")
    config = cx_config.default_config() | {"slides": str(sheet), "outdir": "results"}
    (folder / "config").mkdir(exist_ok=True)
    (folder / "config" / "config.yaml").write_text(yaml.safe_dump(config, sort_keys=False))
    command = [sys.executable, "-m", "snakemake", "--snakefile", str(snakefile), "--directory", str(folder),
               "--cores", str(cores)]
    env = os.environ | {"PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
                        "NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(_NUMBA_CACHE))}
    warm = subprocess.run([sys.executable, "-c", "from cxcr4score import runtime; runtime.warm_up()"], env=env,
                          capture_output=True, text=True, check=False)
    if warm.returncode != 0:
        raise WorkflowFailed(f"filling Numba's cache failed:\n{warm.stderr[-3000:]}")
    start = time.perf_counter()
    done = subprocess.run(command, cwd=folder, capture_output=True, text=True, env=env, check=False)
    wall = time.perf_counter() - start
    if done.returncode != 0:
        raise WorkflowFailed(f"{' '.join(command)} failed ({done.returncode}):\n{done.stdout[-2000:]}\n"
                             f"{done.stderr[-6000:]}")
    return {"wall_s": wall, "outdir": folder / "results", "threads": _rule_threads(done.stderr + done.stdout)}


def _rule_threads(log):
    """Threads per rule from Snakemake's job announcements (1 where it prints none)."""
    threads = {}
    for block in re.split(r"\n(?=(?:local)?(?:rule|checkpoint) )", log):
        name = re.match(r"(?:local)?(?:rule|checkpoint) (\w+):", block)
        if name:
            count = re.search(r"^\s+threads: (\d+)", block, re.MULTILINE)
            threads[name.group(1)] = int(count.group(1)) if count else 1
    return threads


def rule_timings(outdir):
    """Per rule: job count, median and max seconds and max RSS (MB) of the ``benchmarks/`` files.

    Parameters
    ----------
    outdir : str or Path
        The workflow's results folder.

    Returns
    -------
    dict
        rule -> ``{"jobs", "median_s", "max_s", "total_s", "max_rss_mb", "seconds"}``;
        ``seconds`` lists every job's time.
    """
    import pandas as pd

    root = Path(outdir) / "benchmarks"
    rows = {}
    for tsv in sorted(root.rglob("*.tsv")):
        rule = tsv.relative_to(root).parts[0].removesuffix(".tsv")
        table = pd.read_csv(tsv, sep="\t", na_values=["-", "NA"])
        rows.setdefault(rule, []).append((float(table["s"].iloc[0]), float(table["max_rss"].iloc[0])))
    timings = {}
    for rule, jobs in rows.items():
        seconds = [s for s, _ in jobs]
        rss = [r for _, r in jobs if np.isfinite(r)]
        timings[rule] = {"jobs": len(jobs), "median_s": statistics.median(seconds), "max_s": max(seconds),
                         "total_s": sum(seconds), "max_rss_mb": max(rss) if rss else None, "seconds": seconds}
    return timings


def makespan(seconds, slots):
    """Wall time of independent jobs given, longest first, each to the least loaded of ``slots``.

    Parameters
    ----------
    seconds : sequence of float
        Each job's time.
    slots : int
        Jobs that can run at once (at least 1 is used).

    Returns
    -------
    float
    """
    loads = [0.0] * max(1, slots)
    for s in sorted(seconds, reverse=True):
        heapq.heapreplace(loads, loads[0] + s)
    return max(loads)


def modelled_wall(timings, *, cores, chunk_threads, parallel_rule="measure_chunk"):
    """The critical path: every other rule's jobs one after another, then ``parallel_rule``'s
    jobs spread over ``cores // chunk_threads`` slots (:func:`makespan`).

    Parameters
    ----------
    timings : dict
        From :func:`rule_timings`.
    cores : int
    chunk_threads : int
        Threads of one ``parallel_rule`` job.
    parallel_rule : str

    Returns
    -------
    float
        Seconds.
    """
    serial = sum(t["total_s"] for rule, t in timings.items() if rule != parallel_rule)
    chunks = timings.get(parallel_rule, {"seconds": []})["seconds"]
    return serial + makespan(chunks, cores // max(1, chunk_threads))


# --------------------------------------------------------------------------------------
# The reference
# --------------------------------------------------------------------------------------

def read_region_openslide(path, top, left, side):
    """Level-0 RGB ``[top:top + side, left:left + side]`` through OpenSlide.

    Returns
    -------
    rgb : (side, side, 3) ndarray of uint8
    vendor : str
        OpenSlide's ``openslide.vendor`` (``aperio`` for the benchmark slide).
    """
    import openslide

    with openslide.OpenSlide(str(path)) as slide:
        region = np.asarray(slide.read_region((left, top), 0, (side, side)))
        return np.ascontiguousarray(region[..., :3]), slide.properties.get("openslide.vendor", "")


def read_region_tifffile(path, top, left, side):
    """As :func:`read_region_openslide`, through tifffile's zarr store of level 0."""
    import tifffile
    import zarr

    with tifffile.TiffFile(path) as tif, tif.series[0].aszarr(level=0) as store:
        return np.asarray(zarr.open_array(store, mode="r")[top:top + side, left:left + side]), "tifffile"


def area_average_2x(rgb):
    """2 x 2 area average (rounded half up) of an RGB with even sides, in plain NumPy."""
    rows, cols = rgb.shape[0] // 2, rgb.shape[1] // 2
    sums = rgb.reshape(rows, 2, cols, 2, 3).sum(axis=(1, 3), dtype=np.uint16)
    return ((sums + 2) // 4).astype(np.uint8)


def reference_side(size):
    """Side of the reference's square region on the analysis grid: at most ``REFERENCE_PX``, a
    multiple of 256, inside the section's smallest radius (so all tissue) and centred."""
    # A region of side s analysis px is 2 s level-0 px wide: its corners lie s sqrt(2) from the centre.
    return int(min(REFERENCE_PX, _Section(size).r_min / np.sqrt(2) // 256 * 256))


def time_reference(path, size, *, config=None):
    """Time the reference pipeline on the centred region of :func:`reference_side`, end to end.

    Parameters
    ----------
    path : str or Path
        The slide of :func:`write_slide`.
    size : int
        Its level-0 side.
    config : dict, optional
        Effective configuration (the package defaults when not given).

    The read goes through OpenSlide (tifffile when OpenSlide cannot open the file), then the
    2 x 2 area average to 0.5 um/px, then every reference stage at one thread. Its imports are
    done first on a small crop, and the nucleus threshold is measured on the region, untimed.

    Returns
    -------
    dict
        ``side`` (analysis px), ``mpix``, ``seconds``, ``mpix_s``, ``reader``, ``nuclei`` (count).
    """
    config = config or cx_config.default_config()
    reference = speed.load_reference()
    side = reference_side(size)
    top = left = size // 2 - side  # level-0 px: the region is 2 * side wide
    try:
        read, (_, vendor) = read_region_openslide, read_region_openslide(path, top, left, 2)
        reader = f"OpenSlide ({vendor})"
    except Exception as exc:  # OpenSlide missing or refusing the file: plain tifffile instead
        read, reader = read_region_tifffile, f"tifffile (OpenSlide could not read it: {type(exc).__name__}: {exc})"

    def read_stage(state):
        return area_average_2x(read(path, top, left, 2 * side)[0])

    rgb = read_stage({})
    stages = speed.reference_stages(None, config, reference, threshold=speed.nucleus_threshold_of(rgb, config))
    speed.run_pipeline(stages | {"read": lambda state: rgb[:256, :256]})  # imports, untimed
    start = time.perf_counter()
    state = speed.run_pipeline(stages | {"read": read_stage})
    seconds = time.perf_counter() - start
    mpix = side * side / 1e6
    return {"side": side, "mpix": mpix, "seconds": seconds, "mpix_s": mpix / seconds, "reader": reader,
            "nuclei": int(state["nuclei"].max())}


# --------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------

def default_workdir():
    """Where the generated slide is cached and the workflow runs unless told: next to the
    workflow's Numba cache."""
    return Path.home() / ".cache" / "cxcr4score" / "bench_slide"


def slide_bench(*, size=32768, cores=1, workdir=None, seed=0):
    """Score a generated whole slide with the workflow and time the reference on a region of it.

    Parameters
    ----------
    size : int
        Level-0 side of the slide in pixels at 0.25 um/px (see :func:`write_slide`).
    cores : int
        ``snakemake --cores``.
    workdir : str or Path, optional
        Holds the cached slide and, while it runs, the workflow's temporary folder;
        :func:`default_workdir` when not given.
    seed : int
        Seed of the generated slide.

    Returns
    -------
    dict
        ``slide`` (path, size, levels, file MB, seconds to write it or 0 when cached),
        ``workflow`` (wall seconds, cores, analysis-grid Mpix and the section's share of them,
        Mpix/s per core, measure_chunk jobs, cells detected and scored, per-rule timings and
        threads), ``projection`` (modelled
        and projected wall seconds on ``PROJECTED_CORES`` cores), ``reference`` (see
        :func:`time_reference`), ``ratio`` (ours / reference in Mpix/s per core), ``machine``.

    Raises
    ------
    speed.NeedsSourceCheckout
        No ``tests/reference.py`` or ``Snakefile`` next to the package.
    WorkflowFailed
        Snakemake failed.
    """
    import pandas as pd
    import pyarrow.parquet as pq

    if cores < 1:
        raise ValueError(f"cores must be at least 1, got {cores}")
    find_snakefile()
    speed.load_reference()
    workdir = Path(workdir or default_workdir())
    load_before = os.getloadavg()[0]
    cached = slide_path(workdir, size, seed).is_file()
    start = time.perf_counter()
    path = write_slide(workdir, size=size, seed=seed)
    write_s = 0.0 if cached else time.perf_counter() - start
    with tempfile.TemporaryDirectory(dir=workdir, prefix="run_") as folder:
        run = run_workflow(path, folder, cores=cores)
        timings = rule_timings(run["outdir"])
        scored = int(pd.read_csv(run["outdir"] / "slides.csv")["n_cells"].sum())
        detected = pq.ParquetFile(run["outdir"] / "cells" / f"{_SLIDE_ID}.parquet").metadata.num_rows
    reference = time_reference(path, size)
    analysis_mpix = (size * SLIDE_MPP / cx_config.default_config()["analysis_mpp"]) ** 2 / 1e6
    chunk_threads = run["threads"].get("measure_chunk", 1)
    modelled = modelled_wall(timings, cores=cores, chunk_threads=chunk_threads)
    overhead = run["wall_s"] - modelled
    projected_model = modelled_wall(timings, cores=PROJECTED_CORES, chunk_threads=chunk_threads)
    ours_per_core = analysis_mpix / run["wall_s"] / cores
    return {
        "slide": {"path": str(path), "size": size, "mpp": SLIDE_MPP, "seed": seed, "levels": level_sides(size),
                  "file_mb": path.stat().st_size / 1e6, "write_s": write_s, "cached": cached},
        "workflow": {"wall_s": run["wall_s"], "cores": cores, "analysis_mpix": analysis_mpix,
                     "mpix_s_per_core": ours_per_core, "tissue_mpix": TISSUE_FRACTION * analysis_mpix,
                     "chunk_jobs": timings.get("measure_chunk", {"jobs": 0})["jobs"],
                     "cells": detected, "scored_cells": scored, "threads": run["threads"], "rules": timings},
        "projection": {"cores": PROJECTED_CORES, "chunk_threads": chunk_threads, "modelled_s": modelled,
                       "overhead_s": overhead, "projected_s": projected_model + overhead},
        "reference": reference,
        "ratio": ours_per_core / reference["mpix_s"],
        "machine": speed._machine() | {"load_average_before": load_before, "load_average_after": os.getloadavg()[0]},
    }


def format_report(result):
    """The printed report of :func:`slide_bench`: the headline figures and the per-rule table."""
    import pandas as pd

    slide, flow, projection, ref = result["slide"], result["workflow"], result["projection"], result["reference"]
    cores = flow["cores"]
    # In the order Snakemake started them (the order of ``threads``).
    order = [rule for rule in flow["threads"] if rule in flow["rules"]]
    order += [rule for rule in flow["rules"] if rule not in order]
    rules = pd.DataFrame.from_dict(
        {rule: {"jobs": flow["rules"][rule]["jobs"], "threads": flow["threads"].get(rule, 1),
                "median s": flow["rules"][rule]["median_s"], "max s": flow["rules"][rule]["max_s"],
                "total s": flow["rules"][rule]["total_s"], "max RSS MB": flow["rules"][rule]["max_rss_mb"]}
         for rule in order}, orient="index")
    levels = " / ".join(f"{side}" for side in slide["levels"])
    written = "cached" if slide["cached"] else f"written in {slide['write_s']:.0f} s"
    lines = [
        f"slide: generated {slide['size']}^2 px at {slide['mpp']} um/px ({slide['size'] ** 2 / 1e9:.2f} Gpix level 0), "
        f"SVS-like JPEG pyramid {levels} px, {slide['file_mb']:.0f} MB, {written}: {slide['path']}",
        f"workflow: snakemake --cores {cores}, one slide: {flow['wall_s']:.1f} s wall; "
        f"{flow['analysis_mpix']:.0f} Mpix analysis grid at 0.5 um/px, {flow['tissue_mpix']:.0f} Mpix of it tissue; "
        f"{flow['chunk_jobs']} measure_chunk jobs; {flow['cells']:,} cells, {flow['scored_cells']:,} of them scored "
        "(tumour)",
        f"  ours: {flow['analysis_mpix']:.0f} Mpix / {flow['wall_s']:.1f} s / {cores} core(s) = "
        f"{flow['mpix_s_per_core']:.2f} Mpix/s per core (whole workflow, glass and start-up included)",
        rules.to_string(float_format=lambda v: f"{v:.2f}" if v < 100 else f"{v:.0f}"),
        f"  projected on {projection['cores']} cores: {projection['projected_s']:.1f} s = serial rules + "
        f"measure_chunk jobs at {projection['chunk_threads']} thread(s) on {projection['cores'] // max(1, projection['chunk_threads'])} "
        f"slots ({projection['projected_s'] - projection['overhead_s']:.1f} s) + Snakemake's own time in this run "
        f"({projection['overhead_s']:.1f} s: wall minus the same model at {cores} cores, {projection['modelled_s']:.1f} s)",
        f"reference (tests/reference.py, 1 thread): {ref['side']}^2 px region at 0.5 um/px ({ref['mpix']:.1f} Mpix), "
        f"read by {ref['reader']}, 2 x 2 area average, every stage: {ref['seconds']:.1f} s = {ref['mpix_s']:.3f} Mpix/s; "
        f"{ref['nuclei']:,} nuclei",
        f"ratio ours / reference, Mpix/s per core: {result['ratio']:.1f} x",
        f"machine: {result['machine']['cpus_available']} CPUs available, 1-min load average "
        f"{result['machine']['load_average_before']:.1f} before and {result['machine']['load_average_after']:.1f} after",
    ]
    return "\n".join(lines)
