"""Numba kernels: the per-pixel work that no library does fast enough, by pipeline stage.

Written by hand because no library fuses these steps: scikit-image would deconvolve to
float64 planes and then measure each compartment in a separate ``regionprops`` pass, and
OpenCV's grey erosion with a disk costs O(disk area) per pixel. Each module holds one stage:

- :mod:`.deconvolution`: RGB to hematoxylin (and DAB) OD by table lookup.
- :mod:`.tissue`: OD sum, channel counts and the tissue mask's way back to full resolution.
- :mod:`.resample`: area-average resampling onto the analysis grid.
- :mod:`.filters`: disk erosion and dilation on the OD grid, and the nucleus seed search.
- :mod:`.ridges`: DAB ridges (the located membrane) and hematoxylin lowered beside them.
- :mod:`.labels`: relabelling, the watershed that splits touching nuclei, seed groups.
- :mod:`.cells`: cell expansion and compartment codes.
- :mod:`.statistics`: per-cell and per-label integer statistics in one pass.
- :mod:`.rows` and :mod:`.vector`: helpers the others share (bands of rows, runs of equal
  values, row copies; table rows loaded as vectors).

Kernels take only arrays and scalars and do arithmetic only; the wrappers in
:mod:`cxcr4score.stains`, :mod:`cxcr4score.measure`, :mod:`cxcr4score.segment`,
:mod:`cxcr4score.tissue` and :mod:`cxcr4score.grid` validate, make arrays contiguous and
allocate (STYLE section 3). Parallel loops give each thread its own accumulator slice,
indexed by ``numba.get_thread_id()`` and reduced serially by the wrapper; accumulators are
integers (OD quantised to ``round(OD * 2**20)``), so results are identical for any thread
count. No fastmath. Every kernel has a plain reference in ``tests/reference.py`` and runs
under ``NUMBA_DISABLE_JIT=1`` in the tests.
"""
