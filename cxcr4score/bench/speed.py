"""Speed benchmark (``cxcr4score bench speed``).

A generated, fully tissue-covered tile at 0.5 um/px is written once to a tiled TIFF; each
stage (read, deconvolution, tissue, nuclei, expansion/compartments, measurement, scoring)
and the whole chain are timed for our code and for the plain scikit-image pipeline pinned
in ``tests/reference.py``, in the same run. Times are medians of repeats after one untimed
call (JIT compilation); Mpix/s counts every pixel of the tile. Ours runs at 1 thread and,
when asked, at N threads (Numba and OpenCV); the reference at 1. Peak memory is the peak
resident set (``VmHWM``, else ``ru_maxrss``) of a fresh subprocess running one implementation
end to end. The process reuses freed memory as workflow jobs do
(:func:`cxcr4score.runtime.keep_freed_memory`), for both implementations. The accuracy of
the same build on the same tile is checked against the generator's truth.
"""

from __future__ import annotations

import importlib.util
import os
import platform
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

import cxcr4score

from .. import config as cx_config
from .. import grid as grid_module
from .. import measure, pipeline, runtime, score, segment, stains, synthetic, tissue
from ..slide_info import open_grid
from . import accuracy

#: Stages in pipeline order; each reads the outputs of the ones before it.
STAGES = ("read", "deconvolution", "tissue", "ridges", "nuclei", "compartments", "measurement", "scoring")
#: Pixel size of the benchmark tile (um).
MPP = 0.5
#: Targets the table is read against (issue 5; accuracy: issue 4).
TARGETS = {
    "end_to_end_ratio": 10.0,  # x reference (goal 20x)
    "end_to_end_mpix_s_per_core": 20.0,
    "deconvolution_mpix_s_per_thread": 600.0,
    "measurement_mpix_s_per_thread": 300.0,
    "deconvolution_vs_rgb2hed": 30.0,
    "peak_memory_mb_4096": 1500.0,
    "tumour_f1": 0.95,
    "class_kappa": 0.90,
    "membrane_r": 0.95,
}
_REFERENCE_PATH = Path(cxcr4score.__file__).resolve().parents[1] / "tests" / "reference.py"


class NeedsSourceCheckout(RuntimeError):
    """The pinned reference pipeline (``tests/reference.py``) is not next to the package."""


def load_reference(path=None):
    """Import the pinned scikit-image reference (``tests/reference.py`` of the source checkout).

    Raises
    ------
    NeedsSourceCheckout
        If the file is missing (e.g. the package was installed from a wheel).
    """
    path = Path(path or _REFERENCE_PATH)
    if not path.is_file():
        raise NeedsSourceCheckout(
            f"the speed benchmark needs a source checkout of cxcr4score: its scikit-image reference "
            f"{path} is missing (installed from a wheel?)"
        )
    spec = importlib.util.spec_from_file_location("cxcr4score_bench_reference", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def nucleus_threshold(path, config):
    """The tile's nucleus threshold as the workflow sets a slide's: its signal baseline plus
    config ``nuclei.threshold`` (a per-slide estimate, so it is not timed as a tile stage)."""
    reader, grid, _, _ = open_grid(path, sheet_mpp="", config=config)
    with reader:
        rgb = grid_module.read_box(reader, grid, (0, 0, *grid.shape))
    return nucleus_threshold_of(rgb, config)


def nucleus_threshold_of(rgb, config):
    """:func:`nucleus_threshold` of an RGB image at the analysis pixel size."""
    matrix = stains.stain_matrix(config["stains"]["hematoxylin"], config["stains"]["dab"])
    tables = stains.concentration_tables((float(config["default_i0"]),) * 3, matrix)
    baseline = segment.signal_baseline([segment.hematoxylin_and_ridges(*stains.deconvolve(rgb, tables), mpp=MPP)[0]],
                                       mpp=MPP,
                                       params=segment.NucleusParams(**config["nuclei"]))
    return baseline + config["nuclei"]["threshold"]


def our_stages(path, config, *, threshold):
    """Our stages as ``name -> f(state)``; ``state`` holds the outputs of earlier stages by name."""
    matrix = stains.stain_matrix(config["stains"]["hematoxylin"], config["stains"]["dab"])
    tables = stains.concentration_tables((float(config["default_i0"]),) * 3, matrix)
    params = segment.NucleusParams(**{**config["nuclei"], "threshold": threshold})

    def read(state):
        reader, grid, _, _ = open_grid(path, sheet_mpp="", config=config)
        with reader:
            return grid_module.read_box(reader, grid, (0, 0, *grid.shape))

    def nuclei(state):
        return segment.detect_nuclei(state["ridges"][0], mpp=MPP, params=params, dab=state["deconvolution"][1])

    def compartments(state):
        cells = segment.expand_cells(state["nuclei"], mpp=MPP, expansion_um=config["cell_expansion_um"])
        codes, exposed = segment.compartments(cells, state["nuclei"], mpp=MPP, band_um=config["membrane_band_um"],
                                              capture_um=config["membrane_capture_um"], ridges=state["ridges"][1])
        return cells, codes, exposed

    def measurement(state):
        cells, codes, exposed = state["compartments"]
        n = int(state["nuclei"].max())
        rows, cols, _, _ = measure.nucleus_shape(state["nuclei"], n)  # as the workflow
        table, _ = measure.measure_cells(
            state["read"], cells, codes, n_cells=n, tables=tables, alt_dab_table=tables[stains.DAB],
            centroid_row=rows, centroid_col=cols, in_scope=np.ones(n + 1, bool),
        )
        return table.assign(row=rows[1:], col=cols[1:], membrane_exposed_fraction=exposed[1 : n + 1])

    def scoring(state):
        table = state["measurement"]
        classified = score.classify_cells(table, config)
        blocks = pipeline.block_ids(table["col"] * MPP, table["row"] * MPP, config["intervals"]["block_um"])
        counts = score.count_classes(classified["class"].to_numpy(), blocks)
        return {"classes": classified["class"].to_numpy(), "blocks": counts,
                **score.summarize_counts(counts.sum().to_numpy())}

    return {
        "read": read,
        "deconvolution": lambda state: stains.deconvolve(state["read"], tables),
        "tissue": lambda state: tissue.tissue_mask(state["read"], mpp=MPP, od_threshold=config["tissue"]["od_threshold"],
                                                   min_area_um2=config["tissue"]["min_area_um2"]),
        "ridges": lambda state: segment.hematoxylin_and_ridges(*state["deconvolution"], mpp=MPP),
        "nuclei": nuclei,
        "compartments": compartments,
        "measurement": measurement,
        "scoring": scoring,
    }


def reference_stages(path, config, reference, *, threshold):
    """The reference pipeline's stages, as :func:`our_stages` (nuclei on hematoxylin only)."""
    matrix = stains.stain_matrix(config["stains"]["hematoxylin"], config["stains"]["dab"])
    i0 = (float(config["default_i0"]),) * 3
    nuclei_params = {k: v for k, v in config["nuclei"].items() if k not in ("split", "dab_threshold", "dab_threshold_nuclear_stain")}
    nuclei_params["threshold"] = threshold

    def measurement(state):
        hem, dab = state["deconvolution"]
        return reference.reference_pipeline_measure(dab, hem, state["nuclei"], *state["compartments"])

    return {
        "read": lambda state: reference.reference_pipeline_read(path),
        "deconvolution": lambda state: reference.reference_pipeline_deconvolve(state["read"], i0, matrix),
        "tissue": lambda state: reference.reference_pipeline_tissue(
            state["read"], mpp=MPP, od_threshold=config["tissue"]["od_threshold"],
            min_area_um2=config["tissue"]["min_area_um2"]),
        "ridges": lambda state: reference.reference_pipeline_ridges(*state["deconvolution"], mpp=MPP),
        "nuclei": lambda state: reference.reference_pipeline_nuclei(state["ridges"][0], mpp=MPP, **nuclei_params),
        "compartments": lambda state: reference.reference_pipeline_compartments(
            state["nuclei"], mpp=MPP, expansion_um=config["cell_expansion_um"], band_um=config["membrane_band_um"],
            capture_um=config["membrane_capture_um"], ridges=state["ridges"][1]),
        "measurement": measurement,
        "scoring": lambda state: reference.reference_pipeline_score(
            state["measurement"], thresholds=config["thresholds"], mpp=MPP, compartments=tuple(config["compartments"]),
            exposed_max=config["membrane_exposed_max"], block_um=config["intervals"]["block_um"]),
    }


def run_pipeline(stages):
    """Run every stage in order; return the state (each stage's output by name)."""
    state = {}
    for name in STAGES:
        state[name] = stages[name](state)
    return state


def _median_time(func, repeats):
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        func()
        times.append(time.perf_counter() - start)
    return float(np.median(times))


def time_stages(stages, repeats):
    """Median seconds of each stage (on the implementation's own earlier outputs) and end to end."""
    state = run_pipeline(stages)  # also the untimed first call of every stage (JIT compilation)
    seconds = {name: _median_time(lambda: stages[name](state), repeats) for name in STAGES}
    seconds["end_to_end"] = _median_time(lambda: run_pipeline(stages), repeats)
    return seconds


def write_tile(folder, size, seed):
    """Generate a fully tissue-covered tile at 0.5 um/px and write it as a tiled JPEG TIFF."""
    spec = synthetic.TileSpec(size_um=(size * MPP, size * MPP), mpp=MPP, glass_fraction=0.0)
    tile = synthetic.generate_tile(spec, seed=seed)
    return synthetic.write_tile(tile, Path(folder) / "speed_tile.tif", jpeg_quality=90), tile


def tile_accuracy(path, truth, config):
    """Our scoring of the tile (the workflow's code path) against the generator's truth.

    Returns the detection F1 (all cells) and, over tumour cells matched within
    ``accuracy.MATCH_UM`` (our type against the truth type), the tumour F1, the quadratic
    kappa of their classes and the Pearson r of their membrane DAB.
    """
    _, cells, _, _ = pipeline.score_slide(path, slide_id="speed_tile", config=config)
    truth_idx, _ = accuracy._match(cells, truth, MPP)
    counts, pairs = accuracy._tile_pairs(cells, truth, MPP)
    return {
        "f1": _f1(len(truth_idx), len(cells), len(truth)),
        "tumour_f1": _f1(counts["n_matched"], counts["n_ours"], counts["n_truth"]),
        "class_kappa": accuracy._kappa(pairs["truth_class"].astype(int), pairs["ours_class"].astype(int)),
        "membrane_r": accuracy._pearson(pairs["truth_dab_membrane"], pairs["ours_dab_membrane"]),
    }


def _f1(matched, n_found, n_true):
    precision, recall = matched / max(1, n_found), matched / max(1, n_true)
    return 2 * precision * recall / max(1e-12, precision + recall)


def peak_memory_mb(implementation, path, threads):
    """Peak resident memory (MB) of a fresh Python process running one implementation end to end."""
    code = f"from cxcr4score.bench import speed; speed._rss_child({implementation!r}, {str(path)!r}, {threads})"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"peak-memory run of {implementation} failed:\n{done.stderr}")
    return int(done.stdout.split()[-1]) / 1024  # Linux reports KiB


def _rss_child(implementation, path, threads):
    runtime.keep_freed_memory()
    runtime.set_threads(threads)
    config = cx_config.default_config()
    threshold = nucleus_threshold(path, config)
    if implementation == "ours":
        stages = our_stages(path, config, threshold=threshold)
    else:
        stages = reference_stages(path, config, load_reference(), threshold=threshold)
    run_pipeline(stages)
    print(_peak_rss_kib())


def _peak_rss_kib():
    """This process's peak resident set size in KiB (:func:`cxcr4score.runtime.own_peak_rss_kib`;
    ``ru_maxrss`` where there is no ``/proc``)."""
    return runtime.own_peak_rss_kib() or resource.getrusage(resource.RUSAGE_SELF).ru_maxrss


def _machine():
    import cv2
    import numba
    import scipy
    import skimage
    import tifffile

    return {
        "cpu_count": os.cpu_count(),
        "cpus_available": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count(),
        "processor": platform.processor() or platform.machine(),
        "python": platform.python_version(),
        "versions": {"cxcr4score": cxcr4score.__version__, "numpy": np.__version__, "numba": numba.__version__,
                     "opencv": cv2.__version__, "scikit-image": skimage.__version__, "scipy": scipy.__version__,
                     "tifffile": tifffile.__version__},
    }


def speed(*, size=4096, repeats=3, threads=1, seed=0):
    """Time our stages and the reference's on one fully tissue-covered tile.

    Parameters
    ----------
    size : int
        Tile side (pixels at 0.5 um/px).
    repeats : int
        Timed calls per stage (the median is reported), after one untimed call.
    threads : int
        Our stages are also timed at this many threads when above 1.
    seed : int
        Seed of the generated tile.

    Returns
    -------
    dict
        ``stages``: per stage (and ``end_to_end``, ``deconvolution_vs_rgb2hed``) seconds and
        Mpix/s of ours (at 1 and at ``threads``) and of the reference, their ratio at one
        thread and our speed-up; ``memory_mb``, ``accuracy``, ``targets`` (each with its value
        and PASS/MISS), ``machine``.

    Raises
    ------
    NeedsSourceCheckout
        If ``tests/reference.py`` is not next to the package.
    """
    from skimage.color import rgb2hed

    if size < 64 or repeats < 1 or threads < 1:
        raise ValueError(f"need size >= 64, repeats >= 1 and threads >= 1, got {size}, {repeats}, {threads}")
    # As in a workflow job; the reference runs in this process too, with the same allocator.
    runtime.keep_freed_memory()
    reference = load_reference()
    config = cx_config.default_config()
    mpix = size * size / 1e6
    with tempfile.TemporaryDirectory() as folder:
        path, tile = write_tile(folder, size, seed)
        threshold = nucleus_threshold(path, config)
        ours = our_stages(path, config, threshold=threshold)
        ref = reference_stages(path, config, reference, threshold=threshold)
        thread_counts = sorted({1, threads})
        ours_s = {}
        for n in thread_counts:
            runtime.set_threads(n)
            ours_s[n] = time_stages(ours, repeats)
            ours_s[n]["deconvolution_vs_rgb2hed"] = ours_s[n]["deconvolution"]
        runtime.set_threads(1)
        ref_s = time_stages(ref, repeats)
        rgb = ours["read"]({})
        ref_s["deconvolution_vs_rgb2hed"] = _median_time(lambda: rgb2hed(rgb), repeats)
        memory = {name: peak_memory_mb(name, path, threads) for name in ("ours", "reference")}
        scores = tile_accuracy(path, tile.truth, config)
    stages = {}
    for name in (*STAGES, "end_to_end", "deconvolution_vs_rgb2hed"):
        row = {"ours_s": ours_s[1][name], "reference_s": ref_s[name], "ours_mpix_s": mpix / ours_s[1][name],
               "reference_mpix_s": mpix / ref_s[name], "ratio": ref_s[name] / ours_s[1][name]}
        if threads > 1:
            row[f"ours_s_{threads}t"] = ours_s[threads][name]
            row[f"ours_mpix_s_{threads}t"] = mpix / ours_s[threads][name]
            row["speedup"] = ours_s[1][name] / ours_s[threads][name]
        stages[name] = row
    return {
        "size": size, "mpix": mpix, "mpp": MPP, "threads": threads, "repeats": repeats, "seed": seed,
        "stages": stages, "memory_mb": memory, "accuracy": scores,
        "targets": _targets(stages, memory, scores, size), "machine": _machine(),
    }


def _targets(stages, memory, scores, size):
    """Each target with the measured value and PASS / MISS (None where it does not apply)."""
    def check(value, target, higher_is_better=True):
        passed = value >= target if higher_is_better else value < target
        return {"value": value, "target": target, "pass": bool(passed)}

    out = {
        "end_to_end_ratio": check(stages["end_to_end"]["ratio"], TARGETS["end_to_end_ratio"]),
        "end_to_end_mpix_s_per_core": check(stages["end_to_end"]["ours_mpix_s"], TARGETS["end_to_end_mpix_s_per_core"]),
        "deconvolution_mpix_s_per_thread": check(stages["deconvolution"]["ours_mpix_s"],
                                                 TARGETS["deconvolution_mpix_s_per_thread"]),
        "measurement_mpix_s_per_thread": check(stages["measurement"]["ours_mpix_s"],
                                               TARGETS["measurement_mpix_s_per_thread"]),
        "deconvolution_vs_rgb2hed": check(stages["deconvolution_vs_rgb2hed"]["ratio"], TARGETS["deconvolution_vs_rgb2hed"]),
    }
    if size >= 4096:
        out["peak_memory_mb_4096"] = check(memory["ours"], TARGETS["peak_memory_mb_4096"], higher_is_better=False)
    for name in ("tumour_f1", "class_kappa", "membrane_r"):
        out[name] = check(scores[name], TARGETS[name])
    return out


_TARGET_LABELS = {
    "end_to_end_ratio": ("end to end vs reference", ">= {:g}x (goal 20x)", "{:.1f}x"),
    "end_to_end_mpix_s_per_core": ("end to end, 1 thread", ">= {:g} Mpix/s per core", "{:.1f} Mpix/s"),
    "deconvolution_mpix_s_per_thread": ("deconvolution, 1 thread", ">= {:g} Mpix/s per thread", "{:.0f} Mpix/s"),
    "measurement_mpix_s_per_thread": ("measurement, 1 thread", ">= {:g} Mpix/s per thread", "{:.0f} Mpix/s"),
    "deconvolution_vs_rgb2hed": ("deconvolution vs skimage rgb2hed", ">= {:g}x", "{:.1f}x"),
    "peak_memory_mb_4096": ("peak memory, ours, 4096^2", "< {:g} MB", "{:.0f} MB"),
    "tumour_f1": ("tumour F1 (this tile)", ">= {:.2f}", "{:.3f}"),
    "class_kappa": ("class kappa (this tile)", ">= {:.2f}", "{:.3f}"),
    "membrane_r": ("membrane DAB r (this tile)", ">= {:.2f}", "{:.3f}"),
}


def format_report(result):
    """The printed report of :func:`speed`: the stage table, memory, accuracy, targets."""
    import pandas as pd

    threads = result["threads"]
    columns = {"ours_mpix_s": "ours Mpix/s", "reference_mpix_s": "ref Mpix/s", "ratio": "ours/ref",
               "ours_s": "ours s", "reference_s": "ref s"}
    if threads > 1:
        columns |= {f"ours_mpix_s_{threads}t": f"ours {threads}t Mpix/s", "speedup": f"{threads}t speed-up"}
    table = pd.DataFrame(result["stages"]).T[list(columns)].rename(columns=columns)
    table.index = [name.replace("_", " ") for name in table.index]
    machine = result["machine"]
    lines = [
        f"speed on a generated {result['size']}^2 tile ({result['mpix']:.1f} Mpix at {result['mpp']} um/px, all tissue), "
        f"median of {result['repeats']} after one untimed call; ours at 1"
        + (f" and {threads}" if threads > 1 else "") + " thread(s), the scikit-image reference "
        f"(tests/reference.py) at 1; ratio = reference time / our time at 1 thread; "
        f"{machine['cpus_available']} CPUs available",
        table.to_string(float_format=lambda v: f"{v:.3f}" if v < 10 else f"{v:.1f}"),
        "(deconvolution vs rgb2hed: the reference column is skimage.color.rgb2hed, a speed baseline only; "
        "end to end = the per-tile stages; the per-slide overview work of slide_info - background, "
        "stain estimation, QC metrics - is left out on both sides)",
    ]
    memory = result["memory_mb"]
    lines.append(f"peak memory (peak RSS of a fresh process, end to end at {threads} thread(s)): "
                 f"ours {memory['ours']:.0f} MB, reference {memory['reference']:.0f} MB")
    accuracy_scores = result["accuracy"]
    lines.append(f"accuracy on this tile vs generator truth (match within {accuracy.MATCH_UM:g} um): "
                 f"detection F1 {accuracy_scores['f1']:.3f} (all cells)")
    lines.append("targets:")
    for name, check in result["targets"].items():
        label, target, value = _TARGET_LABELS[name]
        lines.append(f"  {label:<36} {value.format(check['value']):>14}   {target.format(check['target']):<26} "
                     f"{'PASS' if check['pass'] else 'MISS'}")
    return "\n".join(lines)
