"""Memory and time of a slide's merge, GeoJSON and QC jobs (``cxcr4score bench merge``).

After its chunks are measured, a slide goes through three jobs that each see all of its cells:
``merge_slide`` (the chunk tables -> the cells table, block counts and summary),
``cells_geojson`` (the cells table -> QuPath GeoJSON) and ``qc_slide`` (the cells table -> the
QC picture). A job that holds every cell of the slide at once grows with the slide; the
target is a 2-million-cell slide merged in less than 2 GB, and every one of these jobs below
2 GB at its peak. This benchmark measures each job's peak resident size and time on such a
slide.

The slide: the chunk measurements of the whole-slide benchmark's generated slide
(:mod:`cxcr4score.bench.slide`, about 130 000 cells; its workflow is run once and its output
kept) are repeated until the slide holds at least the asked number of cells. Each copy of a
cell is moved by a small deterministic jitter that keeps its nucleus centroid in the core of
its tile, with everything that depends on the position moved with it (:func:`replicate_chunk`);
so the chunks are what ``measure_chunk`` would write for a slide that dense. They are written
once per cell count and reused.

Each stage then runs in a fresh Python process, one after another, as a Snakemake job would:
one thread, freed memory kept (``workflow/scripts/_common.py``), only the package's stage
functions imported. Its peak is the process's own high-water mark of resident memory
(``VmHWM`` in ``/proc/self/status``, read as it ends): ``os.wait4``'s ``ru_maxrss`` of a child
on Linux also holds the high-water mark of the benchmark process it was started from
(``execve`` records the replaced address space's), so that is kept only as a fallback where
there is no ``/proc``. A process that only imports the stages gives the part of every peak
that is import cost.

This module's top level imports nothing but the standard library and NumPy: the stage
processes run it as a script (:func:`_run_stage`) so that they import what a job imports and
no more.
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

#: Cells of the dense slide, at least (the issue's whole slide).
TARGET_CELLS = 2_000_000
#: A job's peak resident memory should stay below this (MB, 2**20 bytes).
LIMIT_MB = 2048
#: Each copy of a cell moves by up to this much in x and in y (analysis px), uniformly.
JITTER_PX = 3.0
#: A moved nucleus centroid stays this far inside its tile's core (analysis px).
_CORE_MARGIN_PX = 0.01
#: Part of the dense chunk set's marker: raise it whenever :func:`replicate_chunk` changes.
DENSE_VERSION = 1
#: The whole-slide benchmark slide the measurements come from.
SLIDE_SIZE = 32768
SLIDE_SEED = 0
#: The stages in the order they run; ``import`` only imports them (the baseline).
STAGES = ("import", "merge", "geojson", "qc")
#: The workflow rule of each stage.
RULES = {"import": "(imports only)", "merge": "merge_slide", "geojson": "cells_geojson", "qc": "qc_slide"}
#: A stage process runs this file as a script (not as ``cxcr4score.bench.merge``, whose
#: package imports every other benchmark).
_CHILD = "import runpy, sys; runpy.run_path(sys.argv[1], run_name='__main__')"
_SOURCE_MARKER = "merge_source.json"
_DENSE_MARKER = "dense.json"


class StageFailed(RuntimeError):
    """A stage's process (or the workflow run that makes the measurements) exited with an error."""


# --------------------------------------------------------------------------------------
# The dense slide
# --------------------------------------------------------------------------------------

def replicate_chunk(cells, copies, *, tile_boxes, to_level0, native_mpp, block_um, jitter_px=JITTER_PX, seed=0):
    """A chunk's measurement table repeated ``copies`` times, each copy of a cell moved a little.

    Copy 0 is the table as it is; copy r >= 1 moves each cell by its own offset, drawn
    uniformly within +-``jitter_px`` analysis px in x and in y and then cut back so that the
    nucleus centroid stays in the core of the cell's tile (the tile that measured it,
    ``cell_id // pipeline._CELL_ID_STRIDE``). ``x, y`` and the outlines move by the same
    level-0 offset, ``x_um, y_um`` follow ``x, y`` and ``block_id`` is recomputed; ``cell_id``
    keeps its tile and gets a label of its own within it. The other columns are copied.

    Parameters
    ----------
    cells : pandas.DataFrame
        One chunk's table as ``measure_chunk`` writes it (``cell_id, x, y, x_um, y_um,
        block_id``, the outline columns of ``pipeline.OUTLINE_COLUMNS``, ...).
    copies : int
        How many times each cell appears (at least 1).
    tile_boxes : sequence of dict
        ``SlideInfo.tile_boxes``: entry k has the ``core`` ``(top, left, bottom, right)`` of tile k
        in analysis px.
    to_level0 : float
        Level-0 px per analysis px (``SlideInfo.grid.to_level0``).
    native_mpp : float
        Level-0 um per px.
    block_um : float
        Config ``intervals.block_um``.
    jitter_px : float
        Largest move in x and in y (analysis px).
    seed : int
        With the copy number, seeds each copy's offsets (a chunk's number, say).

    Returns
    -------
    pandas.DataFrame
        ``copies * len(cells)`` rows: copy 0, then copy 1, ...; a fresh index.

    Raises
    ------
    ValueError
        ``copies`` below 1, or too many copies to number the cells of a tile within
        ``pipeline._CELL_ID_STRIDE``.
    """
    import pandas as pd

    from .. import pipeline

    if copies < 1:
        raise ValueError(f"copies must be at least 1, got {copies}")
    stride = pipeline._CELL_ID_STRIDE
    ids = cells["cell_id"].to_numpy(np.int64)
    tile, label = ids // stride, ids % stride
    step = int(label.max()) + 1 if len(ids) else 1
    if copies * step > stride:
        raise ValueError(f"{copies} copies of labels up to {step - 1} do not fit in a tile's {stride} cell ids")
    f = float(to_level0)
    x, y = cells["x"].to_numpy(np.float64), cells["y"].to_numpy(np.float64)
    col, row = x / f - 0.5, y / f - 0.5  # the nucleus centroid on the analysis grid
    # A centroid c is in the core [top, bottom) when top - 0.5 <= c < bottom - 0.5 (tiling.in_core).
    cores = np.array([box["core"] for box in tile_boxes], dtype=np.float64).reshape(-1, 4)[tile]
    low = cores[:, :2] - 0.5 + _CORE_MARGIN_PX
    high = cores[:, 2:] - 0.5 - _CORE_MARGIN_PX
    parts = [cells.reset_index(drop=True)]
    for r in range(1, copies):
        jitter = np.random.default_rng([seed, r]).uniform(-jitter_px, jitter_px, (2, len(ids)))
        dy = (np.clip(row + jitter[0], low[:, 0], high[:, 0]) - row) * f
        dx = (np.clip(col + jitter[1], low[:, 1], high[:, 1]) - col) * f
        copy = cells.reset_index(drop=True).copy()
        copy["x"], copy["y"] = x + dx, y + dy
        copy["x_um"], copy["y_um"] = copy["x"] * native_mpp, copy["y"] * native_mpp
        copy["block_id"] = pipeline.block_ids(copy["x_um"].to_numpy(), copy["y_um"].to_numpy(), block_um)
        copy["cell_id"] = tile * stride + r * step + label
        for name in pipeline.OUTLINE_COLUMNS:
            copy[name] = _shift_outlines(cells[name].to_numpy(), dx, dy)
        parts.append(copy)
    return pd.concat(parts, ignore_index=True)


def _shift_outlines(outlines, dx, dy):
    """Flat ``x0, y0, x1, y1, ...`` outlines, each moved by its ``(dx, dy)``, in their dtype."""
    import pandas as pd

    lengths = np.fromiter((0 if o is None else len(o) for o in outlines), np.int64, len(outlines))
    present = [o for o in outlines if o is not None and len(o)]
    if not present:
        return pd.Series(list(outlines), dtype=object)
    dtype = present[0].dtype
    points = np.concatenate(present).reshape(-1, 2).astype(np.float64)
    points += np.column_stack([np.repeat(dx, lengths // 2), np.repeat(dy, lengths // 2)])
    pieces = np.split(points.astype(dtype).ravel(), np.cumsum(lengths)[:-1])
    shifted = np.empty(len(outlines), dtype=object)
    for k, (original, piece) in enumerate(zip(outlines, pieces)):
        shifted[k] = original if original is None else piece
    return pd.Series(shifted, dtype=object)


def measured_slide(workdir, *, source=None, cores=None):
    """The chunk measurements of the whole-slide benchmark's slide: reused, or made once.

    Parameters
    ----------
    workdir : Path
        Holds the generated slide (:func:`cxcr4score.bench.slide.write_slide`) and the workflow
        run whose output is kept (``merge_source_*``; made again under another package version).
    source : str or Path, optional
        Instead, an existing workflow results folder with one per-slide slide in ``slides/``
        (``info.json`` and every chunk's table and histogram).
    cores : int, optional
        ``snakemake --cores`` of the one-time run (all CPUs when not given; it is not timed).

    Returns
    -------
    dict
        ``results`` (Path), ``slide_dir`` (Path), ``n_cells``, ``chunks``, ``mb`` (the chunk
        files), ``cached`` and ``workflow_s`` (0 when reused).

    Raises
    ------
    StageFailed
        The slide has no chunk files (it was scored as a small image?) or the workflow failed.
    """
    import pyarrow.parquet as pq

    from .. import __version__
    from . import slide as slide_bench

    workflow_s, cached = 0.0, True
    if source is not None:
        results = Path(source)
    else:
        folder = Path(workdir) / f"merge_source_{SLIDE_SIZE}px_seed{SLIDE_SEED}_v{slide_bench.SLIDE_VERSION}"
        results = folder / "results"
        if _recorded_version(folder / _SOURCE_MARKER) != __version__:
            cached = False
            if folder.exists():
                shutil.rmtree(folder)  # an earlier run that did not finish
            folder.mkdir(parents=True)
            path = slide_bench.write_slide(workdir, size=SLIDE_SIZE, seed=SLIDE_SEED)
            try:
                run = slide_bench.run_workflow(path, folder, cores=cores or os.cpu_count() or 1)
            except slide_bench.WorkflowFailed as err:
                raise StageFailed(str(err)) from None
            workflow_s = run["wall_s"]
            (folder / _SOURCE_MARKER).write_text(json.dumps({"slide": str(path), "wall_s": workflow_s,
                                                             "version": __version__}))
    infos = sorted(results.glob("slides/*/info.json"))
    if len(infos) != 1:
        raise StageFailed(f"{results}: expected one slides/<slide>/info.json, found {len(infos)}")
    slide_dir = infos[0].parent
    info = json.loads(infos[0].read_text())
    files = [slide_dir / "chunks" / f"{chunk}.{suffix}"
             for chunk in info["chunks"] for suffix in ("parquet", "hist.npy")]
    missing = [str(p) for p in files if not p.is_file()]
    if missing or not files:
        raise StageFailed(f"{slide_dir}: the chunk measurements are missing ({', '.join(missing[:3]) or 'no chunks'}); "
                          "a slide scored as a small image has none")
    n_cells = sum(pq.ParquetFile(p).metadata.num_rows for p in files if p.suffix == ".parquet")
    return {"results": results, "slide_dir": slide_dir, "n_cells": n_cells, "chunks": len(info["chunks"]),
            "mb": sum(p.stat().st_size for p in files) / 1e6, "cached": cached, "workflow_s": workflow_s}


def _recorded_version(marker):
    """The package version a kept workflow run was made with (its marker), or None."""
    try:
        return json.loads(Path(marker).read_text()).get("version")
    except (OSError, ValueError):
        return None


def effective_config(results):
    """The workflow run's ``config.effective.yaml`` in ``results``, else the package defaults."""
    from .. import config as cx_config

    path = Path(results) / "config.effective.yaml"
    return cx_config.from_file(path) if path.is_file() else cx_config.default_config()


def dense_folder(workdir, cells):
    """Where the dense chunk set of ``cells`` cells is kept."""
    return Path(workdir) / f"merge_dense_{cells}cells"


def write_dense_chunks(source, folder, *, cells, config):
    """Write (or reuse) the chunks of a dense slide of at least ``cells`` cells.

    Every chunk of ``source`` is replicated ``ceil(cells / n_cells)`` times
    (:func:`replicate_chunk`, seeded by the chunk's number), sorted in reading order and
    written with :func:`cxcr4score.stages.write_measurements`, its histogram multiplied by the copies; the
    slide's ``info.json`` is copied as it is. The set is built in a ``.partial`` folder and
    renamed when whole; a marker records what it was made from, and a set whose marker matches
    is reused.

    Parameters
    ----------
    source : dict
        From :func:`measured_slide`.
    folder : Path
        The set's folder (:func:`dense_folder`).
    cells : int
    config : dict
        The effective configuration (``intervals.block_um``).

    Returns
    -------
    dict
        ``folder``, ``copies``, ``n_cells``, ``chunks``, ``mb``, ``cached``, ``write_s``.
    """
    import pandas as pd

    from .. import reading_order, stages
    from ..slide_info import SlideInfo

    folder = Path(folder)
    copies = max(1, math.ceil(cells / max(1, source["n_cells"])))
    marker = {"version": DENSE_VERSION, "cells": cells, "copies": copies, "jitter_px": JITTER_PX,
              "source": str(source["slide_dir"].resolve()), "source_cells": source["n_cells"],
              "source_mtime_ns": (source["slide_dir"] / "info.json").stat().st_mtime_ns}
    done = folder / _DENSE_MARKER
    if done.is_file():
        recorded = json.loads(done.read_text())
        if {key: recorded.get(key) for key in marker} == marker:
            return {"folder": folder, "copies": copies, "n_cells": recorded["n_cells"], "chunks": recorded["chunks"],
                    "mb": recorded["mb"], "cached": True, "write_s": 0.0}
    start = time.perf_counter()
    partial = folder.with_name(folder.name + ".partial")
    if partial.exists():
        shutil.rmtree(partial)
    (partial / "chunks").mkdir(parents=True)
    shutil.copyfile(source["slide_dir"] / "info.json", partial / "info.json")
    info = SlideInfo.from_json(json.loads((partial / "info.json").read_text()))
    grid = info.grid
    n_cells = 0
    for chunk in info.chunks:
        table = pd.read_parquet(source["slide_dir"] / "chunks" / f"{chunk}.parquet")
        hist = np.load(source["slide_dir"] / "chunks" / f"{chunk}.hist.npy")
        dense = replicate_chunk(table, copies, tile_boxes=info.tile_boxes, to_level0=grid.to_level0,
                                native_mpp=grid.native_mpp, block_um=config["intervals"]["block_um"],
                                seed=int(chunk))
        # sorted, as measure_chunk writes a chunk
        stages.write_measurements(reading_order.sort_cells(dense), hist * copies, table_path=partial / "chunks" / f"{chunk}.parquet",
                                  hist_path=partial / "chunks" / f"{chunk}.hist.npy")
        n_cells += len(dense)
        del table, dense
    mb = sum(p.stat().st_size for p in (partial / "chunks").iterdir()) / 1e6
    recorded = marker | {"n_cells": n_cells, "chunks": len(info.chunks), "mb": mb}
    (partial / _DENSE_MARKER).write_text(json.dumps(recorded))
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(partial, folder)
    return {"folder": folder, "copies": copies, "n_cells": n_cells, "chunks": len(info.chunks), "mb": mb,
            "cached": False, "write_s": time.perf_counter() - start}


def remove_other_dense_sets(workdir, keep):
    """Delete this benchmark's dense chunk sets in ``workdir`` other than ``keep`` (each is about
    1 GB per million cells); return the names removed."""
    removed = []
    for other in sorted(Path(workdir).glob("merge_dense_*cells*")):
        if other.resolve() != Path(keep).resolve() and other.is_dir() and re.fullmatch(
                r"merge_dense_\d+cells(\.partial)?", other.name):
            shutil.rmtree(other)
            removed.append(other.name)
    return removed


# --------------------------------------------------------------------------------------
# The stages, each in a process of its own
# --------------------------------------------------------------------------------------

def run_stage(stage, job, folder):
    """Run one stage in a fresh Python process and measure it.

    Parameters
    ----------
    stage : str
        One of ``STAGES``.
    job : dict
        What :func:`_run_stage` reads: ``info`` (path), ``tables``, ``hists``, ``config``,
        ``slide_id`` and the output paths ``cells``, ``blocks``, ``summary``, ``geojson``, ``png``.
    folder : Path
        Gets the job file, the process's log and its result.

    Returns
    -------
    dict
        ``stage``, ``rule``, ``seconds`` (the stage function), ``wall_s`` (the process, start-up
        and imports included), ``import_s``, ``peak_rss_mb`` (the process's own high-water
        mark; ``wait4``'s ``ru_maxrss`` where there is no ``/proc``), ``import_rss_mb`` (the
        high-water mark once imported), ``rusage_maxrss_mb`` (``os.wait4``'s, see the module's
        notes), ``peak_source`` and ``n_cells`` (the merge's; None otherwise).

    Raises
    ------
    StageFailed
        The process exited with an error; the message holds the end of its log.
    """
    from . import slide as slide_bench

    folder = Path(folder)
    job_path, log_path, result_path = (folder / f"{stage}.{suffix}" for suffix in ("job.json", "log", "result.json"))
    job_path.write_text(json.dumps(job | {"stage": stage, "result": str(result_path)}))
    env = os.environ | {"NUMBA_CACHE_DIR": os.environ.get("NUMBA_CACHE_DIR", str(slide_bench._NUMBA_CACHE))}
    with open(log_path, "w") as log:
        start = time.perf_counter()
        process = subprocess.Popen([sys.executable, "-c", _CHILD, str(Path(__file__).resolve()), str(job_path)],
                                   stdout=log, stderr=subprocess.STDOUT, env=env)
        _, status, usage = os.wait4(process.pid, 0)
        wall = time.perf_counter() - start
    process.returncode = os.waitstatus_to_exitcode(status)
    if process.returncode != 0:
        raise StageFailed(f"stage {stage} ({RULES[stage]}) failed ({process.returncode}):\n"
                          f"{log_path.read_text()[-4000:]}")
    result = json.loads(result_path.read_text())
    # ru_maxrss: KiB on Linux, bytes on macOS.
    rusage_mb = usage.ru_maxrss / (2**20 if sys.platform == "darwin" else 2**10)
    peak, peak_source = (result["peak_rss_mb"], "VmHWM") if result["peak_rss_mb"] is not None else (rusage_mb, "wait4")
    return {"stage": stage, "rule": RULES[stage], "seconds": result["seconds"], "wall_s": wall,
            "import_s": result["import_s"], "peak_rss_mb": peak, "import_rss_mb": result["import_rss_mb"],
            "rusage_maxrss_mb": rusage_mb, "peak_source": peak_source, "n_cells": result["n_cells"]}


def _own_peak_mb(runtime):
    """This process's high-water mark of resident memory (MB), or None without ``/proc``."""
    kib = runtime.own_peak_rss_kib()
    return None if kib is None else kib / 1024


def _run_stage(job_path):
    """A stage process: import as a workflow job does, run the stage of the job file, write
    its seconds and peaks to ``job["result"]``."""
    job = json.loads(Path(job_path).read_text())
    start = time.perf_counter()
    from cxcr4score import runtime, stages
    from cxcr4score.slide_info import SlideInfo

    runtime.set_threads(1)
    runtime.keep_freed_memory()
    imported = time.perf_counter()
    import_rss = _own_peak_mb(runtime)
    stage, n_cells = job["stage"], None
    if stage != "import":
        info = SlideInfo.from_json(json.loads(Path(job["info"]).read_text()))
    if stage == "merge":
        _, n_cells = stages.merge_files(info, job["tables"], job["hists"], config=job["config"], on_bad_slide="stop",
                                        cells_path=job["cells"], blocks_path=job["blocks"], summary_path=job["summary"])
    elif stage == "geojson":
        stages.geojson_from_table(job["cells"], job["geojson"], slide_id=job["slide_id"],
                                  compress_above=job["config"]["geojson_compress_above"])
    elif stage == "qc":
        stages.qc_from_table(info, job["summary"], job["cells"], job["png"], config=job["config"])
    elif stage != "import":
        raise ValueError(f"unknown stage {stage!r}; known: {', '.join(STAGES)}")
    seconds = time.perf_counter() - imported
    Path(job["result"]).write_text(json.dumps({
        "seconds": seconds, "import_s": imported - start, "import_rss_mb": import_rss, "peak_rss_mb": _own_peak_mb(runtime),
        "n_cells": None if n_cells is None else int(n_cells)}))
    return 0


# --------------------------------------------------------------------------------------
# The benchmark
# --------------------------------------------------------------------------------------

def merge_bench(*, cells=TARGET_CELLS, workdir=None, source=None):
    """Peak memory and time of the merge, GeoJSON and QC stages on a slide of about ``cells`` cells.

    Parameters
    ----------
    cells : int
        Cells of the dense slide, at least (it gets a whole number of copies of the measured
        slide's cells).
    workdir : str or Path, optional
        Holds the generated slide, the kept workflow run (``merge_source_*``), the dense chunk
        set (``merge_dense_<cells>cells``, reused for the same count; the sets of other counts
        are removed) and, while it runs, the stages' outputs;
        :func:`cxcr4score.bench.slide.default_workdir` when not given.
    source : str or Path, optional
        An existing workflow results folder to take the measurements from instead
        (:func:`measured_slide`).

    Returns
    -------
    dict
        ``source`` (results folder, cells, chunks, MB, cached, workflow seconds), ``dense``
        (folder, copies, cells, chunks, MB, cached, seconds to write, sets removed),
        ``stages`` (one dict per stage, see :func:`run_stage`, with ``cells`` and ``below_limit``),
        ``outputs`` (MB of each file the stages wrote), ``limit_mb``, ``machine``.

    Raises
    ------
    speed.NeedsSourceCheckout
        The measurements must be made and there is no ``Snakefile`` next to the package.
    StageFailed
        A stage, or the workflow run, failed.
    """

    from . import slide as slide_bench
    from . import speed

    if cells < 1:
        raise ValueError(f"cells must be at least 1, got {cells}")
    workdir = Path(workdir or slide_bench.default_workdir())
    workdir.mkdir(parents=True, exist_ok=True)
    if source is None:
        slide_bench.find_snakefile()
    measured = measured_slide(workdir, source=source)
    config = effective_config(measured["results"])
    folder = dense_folder(workdir, cells)
    removed = remove_other_dense_sets(workdir, folder)
    dense = write_dense_chunks(measured, folder, cells=cells, config=config) | {"removed": removed}
    info = json.loads((folder / "info.json").read_text())
    slide_id = info["slide_id"]
    load_before = os.getloadavg()[0]
    rows, outputs = [], {}
    with tempfile.TemporaryDirectory(dir=workdir, prefix="merge_run_") as run:
        run = Path(run)
        job = {"info": str(folder / "info.json"), "slide_id": slide_id, "config": config,
               "tables": [str(folder / "chunks" / f"{c}.parquet") for c in info["chunks"]],
               "hists": [str(folder / "chunks" / f"{c}.hist.npy") for c in info["chunks"]],
               "cells": str(run / "cells" / f"{slide_id}.parquet"),
               "blocks": str(run / "slides" / slide_id / "blocks.parquet"),
               "summary": str(run / "slides" / slide_id / "summary.json"),
               "geojson": str(run / "cells" / f"{slide_id}.geojson"), "png": str(run / "qc" / f"{slide_id}.png")}
        for sub in ("cells", f"slides/{slide_id}", "qc"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        merged = None
        for stage in STAGES:
            row = run_stage(stage, job, run)
            if stage == "merge":
                merged = row["n_cells"]  # the rows the merge wrote to the cells table the others read
            row["cells"] = None if stage == "import" else merged
            row["below_limit"] = row["peak_rss_mb"] < LIMIT_MB
            rows.append(row)
        for path in sorted(p for p in run.rglob("*") if p.is_file() and p.parent != run):
            outputs[str(path.relative_to(run))] = path.stat().st_size / 1e6
    return {
        "source": {"results": str(measured["results"]), "slide_id": slide_id, "n_cells": measured["n_cells"],
                   "chunks": measured["chunks"], "mb": measured["mb"], "cached": measured["cached"],
                   "workflow_s": measured["workflow_s"]},
        "dense": {"folder": str(folder), "cells_asked": cells, "copies": dense["copies"], "n_cells": dense["n_cells"],
                  "chunks": dense["chunks"], "mb": dense["mb"], "cached": dense["cached"], "write_s": dense["write_s"],
                  "jitter_px": JITTER_PX, "removed": dense["removed"]},
        "stages": rows,
        "outputs": outputs,
        "limit_mb": LIMIT_MB,
        "machine": speed._machine() | {"load_average_before": load_before, "load_average_after": os.getloadavg()[0]},
    }


def format_report(result):
    """The printed report of :func:`merge_bench`: where the slide came from, one row per stage
    and the verdict of each against ``LIMIT_MB``."""
    import pandas as pd

    source, dense, limit = result["source"], result["dense"], result["limit_mb"]
    table = pd.DataFrame.from_records([
        {"stage": row["stage"], "rule": row["rule"], "cells": "-" if row["cells"] is None else f"{row['cells']:,}",
         "seconds": row["seconds"], "process s": row["wall_s"], "peak RSS MB": row["peak_rss_mb"],
         f"< {limit} MB": "yes" if row["below_limit"] else "NO"}
        for row in result["stages"]]).set_index("stage")
    made = ("reused" if source["cached"] else f"workflow run once, {source['workflow_s']:.0f} s")
    written = "reused" if dense["cached"] else f"written in {dense['write_s']:.0f} s"
    baseline = next((row for row in result["stages"] if row["stage"] == "import"), None)
    lines = [
        (f"measurements: slide {source['slide_id']}, {source['n_cells']:,} cells in {source['chunks']} chunks "
         f"({source['mb']:.0f} MB, {made}): {source['results']}"),
        (f"dense slide: {dense['copies']} copies of each cell (jitter up to {dense['jitter_px']:g} analysis px, "
         f"kept in its tile's core) = {dense['n_cells']:,} cells, {dense['mb']:.0f} MB of chunks, {written}: "
         f"{dense['folder']}" + (f"; removed {', '.join(dense['removed'])}" if dense["removed"] else "")),
        ("each stage in a fresh Python process, one thread, one at a time; seconds: the stage function; "
         "process s: start-up and imports included; peak RSS: the process's high-water mark"),
        table.to_string(float_format=lambda v: f"{v:.1f}"),
    ]
    if baseline is not None:
        lines.append(f"  of each peak, {baseline['peak_rss_mb']:.0f} MB is the imports (a process that only imports "
                     "the stages)")
    outputs = ", ".join(f"{name} {mb:.0f} MB" for name, mb in result["outputs"].items())
    lines += [
        f"outputs (removed after the run): {outputs}",
        "verdict: " + "; ".join(f"{row['rule']} peak {row['peak_rss_mb']:.0f} MB "
                                f"{'<' if row['below_limit'] else '>='} {limit} MB "
                                f"{'ok' if row['below_limit'] else 'TOO HIGH'}"
                                for row in result["stages"] if row["stage"] != "import"),
        (f"machine: {result['machine']['cpus_available']} CPUs available, 1-min load average "
         f"{result['machine']['load_average_before']:.1f} before and "
         f"{result['machine']['load_average_after']:.1f} after"),
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(_run_stage(sys.argv[-1]))
