"""What the first per-slide stage learns about a slide, as one typed record.

:func:`describe_slide` opens the slide once and decides everything the later stages share: the
pixel size and analysis grid, the tissue area, background I0, the stain matrix, the pixel QC
metrics and the chunks to measure. The workflow writes the :class:`SlideInfo` to
``slides/{slide_id}/info.json`` (a checkpoint: the chunk list decides the jobs that follow);
``measure_chunk``, ``merge_slide`` and ``qc_slide`` read it back.
"""

from __future__ import annotations

import dataclasses
import math

import cv2
import numpy as np

from . import (__version__, celltype, qc_metrics, roi, segment, segmentation_stability, stain_estimation,
               stain_pattern, stains, tiling, tissue)
from . import grid as grid_module
from .pixel_size import MPP_TOLERANCE, resolve_mpp
from .slide_reader import open_slide

#: A glass region is eroded by this much before I0 is measured (um), away from tissue edges.
_GLASS_MARGIN_UM = 10.0


@dataclasses.dataclass(frozen=True)
class SlideInfo:
    """Metadata, pixel size, background, stains, pixel QC and chunks of one slide.

    Fields hold JSON types (lists, not arrays), so that :meth:`to_json` and :meth:`from_json`
    round-trip exactly. A slide that could not be used (:meth:`failed`) has ``qc_status``
    ``"failed"``, NaN pixel size and I0, no chunks and None for what was never measured.

    Attributes
    ----------
    slide_id, patient_id, path, roi : str
        Identity; ``roi`` is the ROI file or ''.
    mpp : float
        Level-0 micrometres per pixel.
    mpp_source : str
        ``metadata``, ``sheet`` or ``default`` (:func:`cxcr4score.pixel_size.resolve_mpp`).
    level, level_shape, level_mpp : int, list of int, float
        The pyramid level read and its shape and pixel size.
    analysis_mpp : float
        Pixel size of the analysis grid (effective, after area-averaging).
    shape : list of int
        Rows and columns of the analysis grid.
    overview_mpp : float
        Pixel size of the overview the tissue mask and I0 come from, and the stain directions
        up to ``STAIN_OVERVIEW_MAX_MPP`` (else tissue tiles at the analysis pixel size).
    tissue_mm2 : float
    i0 : list of float
        Background intensity per channel.
    i0_source : str
        ``glass`` or ``default``.
    stain_matrix : list of list of float
        Rows hematoxylin, DAB, third stain.
    stain_vectors : str
        Hematoxylin and DAB directions as text (slides.csv).
    stain_source, stain_notes : str
    stain_dab_fraction : float
        Share of the stained pixels the directions were estimated on that are DAB-like.
    nucleus_baseline : float
        Level of the nucleus signal between nuclei (:func:`cxcr4score.segment.signal_baseline`);
        nuclei are thresholded at this plus config ``nuclei.threshold``.
    nucleus_dab_threshold : float
        DAB from which brown blobs are nuclei too (0: hematoxylin only), chosen by how the
        stained cells of the sampled tiles are stained
        (:func:`cxcr4score.stain_pattern.nucleus_dab_threshold`).
    typing_reference : float or None
        The slide's reference nuclear darkness for cell typing
        (:func:`cxcr4score.celltype.darkness_reference` of the sampled tiles' nuclei), so that
        each chunk types its cells as the slide does; None without sampled nuclei.
    segmentation_sample : dict
        Cells of some tissue tiles segmented nominally and under each segmentation variant
        (:func:`cxcr4score.segmentation_stability.sample`); empty when they hold too few.
    pixel_qc : dict
        QC metrics measured on pixels (:func:`measure_pixel_qc`).
    chunks : list of str
        Chunk ids, one ``measure_chunk`` job each.
    chunk_tiles : list of list of int
        The indices (in ``tile_boxes``) of each chunk's tiles, measured in turn by its job.
    tile_boxes : list of dict
        :meth:`cxcr4score.tiling.Tile.to_json` of each tile.
    qc_status, qc_message : str
        QC so far (``ok``, ``warning`` or ``failed``) and why.
    cxcr4score_version : str
    """

    slide_id: str
    patient_id: str
    path: str
    roi: str
    mpp: float
    mpp_source: str
    level: int | None
    level_shape: list | None
    level_mpp: float | None
    analysis_mpp: float
    shape: list
    overview_mpp: float | None
    tissue_mm2: float
    i0: list
    i0_source: str
    stain_matrix: list | None
    stain_vectors: str
    stain_source: str
    stain_dab_fraction: float | None
    stain_notes: str
    nucleus_baseline: float | None
    nucleus_dab_threshold: float | None
    typing_reference: float | None
    segmentation_sample: dict = dataclasses.field(repr=False)  # thousands of numbers; not for the log
    pixel_qc: dict | None
    chunks: list
    chunk_tiles: list
    tile_boxes: list
    qc_status: str
    qc_message: str
    cxcr4score_version: str

    @classmethod
    def failed(cls, *, slide_id, patient_id="", path="", roi_path="", message):
        """The record of a slide that could not be used (``qc_status`` failed, ``message`` why)."""
        nan = float("nan")
        return cls(
            slide_id=slide_id, patient_id=patient_id, path=str(path), roi=str(roi_path or ""), mpp=nan,
            mpp_source="", level=None, level_shape=None, level_mpp=None, analysis_mpp=nan, shape=[0, 0],
            overview_mpp=None, tissue_mm2=0.0, i0=[nan] * 3, i0_source="", stain_matrix=None, stain_vectors="",
            stain_source="", stain_dab_fraction=None, stain_notes="", nucleus_baseline=None, nucleus_dab_threshold=None,
            typing_reference=None, segmentation_sample={}, pixel_qc=None, chunks=[], chunk_tiles=[], tile_boxes=[],
            qc_status="failed", qc_message=message, cxcr4score_version=__version__,
        )

    def to_json(self):
        """A JSON-serialisable dict (the checkpoint file)."""
        return dataclasses.asdict(self)

    @classmethod
    def from_json(cls, data):
        """Inverse of :meth:`to_json`; ValueError naming missing or unknown keys."""
        names = {f.name for f in dataclasses.fields(cls)}
        missing, unknown = sorted(names - set(data)), sorted(set(data) - names)
        if missing or unknown:
            raise ValueError(f"slide info of {data.get('slide_id', '?')!r}: missing keys {missing}, unknown {unknown}")
        lacking = sorted({c for sample in (data.get("segmentation_sample") or {}).values()
                          for c in segmentation_stability.SAMPLE_COLUMNS if c not in sample})
        if lacking:
            raise ValueError(f"slide info of {data.get('slide_id', '?')!r}: its segmentation sample lacks {lacking}")
        return cls(**data)

    @property
    def grid(self):
        """The analysis grid (:class:`cxcr4score.grid.Grid`) of a slide that was read."""
        return grid_module.Grid(
            level=self.level, level_shape=tuple(self.level_shape), level_mpp=self.level_mpp, mpp=self.analysis_mpp,
            shape=tuple(self.shape), native_mpp=self.mpp,
        )

    def tiles(self, chunk_id):
        """The :class:`cxcr4score.tiling.Tile` list of a chunk id; ValueError for an unknown one."""
        if chunk_id not in self.chunks:
            raise ValueError(f"chunk {chunk_id!r} is not one of {self.chunks!r} of slide {self.slide_id}")
        return [tiling.Tile.from_json(self.tile_boxes[k]) for k in self.chunk_tiles[self.chunks.index(chunk_id)]]


def open_grid(path, *, sheet_mpp, config):
    """Open a slide and fix its analysis grid.

    Returns
    -------
    reader : slide_reader.SlideReader
        Open; the caller closes it (``with reader:``).
    grid : grid.Grid
    mpp_source : str
    mpp_warning : str or None
    """
    reader = open_slide(path)
    try:
        native, source, warning = resolve_mpp(reader.mpp, sheet_mpp, config["default_mpp"])
        chosen = grid_module.choose_grid(reader.levels, native_mpp=native, analysis_mpp=config["analysis_mpp"])
    except BaseException:
        reader.close()
        raise
    return reader, chosen, source, warning


def tissue_of(rgb, mpp, config):
    """The tissue mask of an image with the config's ``tissue`` settings."""
    settings = config["tissue"]
    return tissue.tissue_mask(rgb, mpp=mpp, od_threshold=settings["od_threshold"], min_area_um2=settings["min_area_um2"],
                              min_glass_fraction=settings["min_glass_fraction"])


def _glass(tissue_mask, mpp):
    margin = max(1, int(round(_GLASS_MARGIN_UM / mpp)))
    kernel = cv2.getStructuringElement(cv2.MORPH_RECT, (2 * margin + 1, 2 * margin + 1))
    return cv2.erode((~tissue_mask).view(np.uint8), kernel, borderType=cv2.BORDER_REPLICATE).astype(bool)


def _mask_on_box(mask, box, overview_scale):
    """The overview tissue mask on an analysis-grid box ``(top, left, bottom, right)``, by the
    nearest overview pixel."""
    top, left, bottom, right = box
    rows = np.minimum(((np.arange(top, bottom) + 0.5) / overview_scale).astype(int), mask.shape[0] - 1)
    cols = np.minimum(((np.arange(left, right) + 0.5) / overview_scale).astype(int), mask.shape[1] - 1)
    return mask[np.ix_(rows, cols)]


def _region_boxes(mask, roi_path, roi_classes, *, overview_mpp, grid):
    """Analysis-grid boxes of tiles that are mostly tissue inside the ROI (as
    :func:`cxcr4score.qc_metrics.focus_tiles`); none without an ROI or when no tile is.

    The segmentation variants are measured on these, so that a slide scored inside an ROI
    moves as the ROI's cells do, not as the tissue's outside it.
    """
    if not roi_path or not str(roi_path):
        return []
    inside = roi.roi_mask(roi.read_roi(roi_path, roi_classes), mask.shape, scale=grid.native_mpp / overview_mpp)
    return qc_metrics.focus_tiles(mask & inside, overview_scale=overview_mpp / grid.mpp, shape=grid.shape)


#: Stain directions are estimated on the overview up to this pixel size (um): a pixel then
#: is a fraction of a nucleus, and the overview holds all the tissue. A coarser overview (a
#: whole slide's, 4-20 um/px) mixes hematoxylin and DAB in one pixel, and Macenko's extremes
#: move towards each other (docs/method.md section 4).
STAIN_OVERVIEW_MAX_MPP = 1.0
#: Else the directions come from up to this many tissue tiles of ``qc_metrics.FOCUS_TILE_PX``
#: (128 um) spread over the tissue: 4 Mpix at the analysis pixel size.
STAIN_TILES = 64


def _vector_text(vectors):
    return ";".join(",".join(f"{v:.5f}" for v in row) for row in vectors)


def _stain_estimate(images, masks, i0, config):
    """The slide's stain matrix from the tissue pixels of ``images`` (an overview that resolves
    the stains, or tissue tiles at the analysis pixel size): estimated directions where
    trustworthy, else the default."""
    settings, reference = config["stain_estimation"], config["stains"]
    if not settings["enabled"]:
        matrix = stains.stain_matrix(reference["hematoxylin"], reference["dab"])
        return stain_estimation.StainEstimate(matrix, "default")
    od = np.concatenate([stain_estimation.stained_od(image, mask, i0, od_floor=settings["od_floor"])
                         for image, mask in zip(images, masks)] + [np.empty((0, 3))])
    try:
        return stain_estimation.estimate_stains(
            od, hematoxylin=reference["hematoxylin"], dab=reference["dab"], max_angle_deg=settings["max_angle_deg"],
            min_dab_fraction=settings["min_dab_fraction"], third_min_angle_deg=settings["third_stain_min_angle_deg"],
        )
    except (ValueError, np.linalg.LinAlgError) as err:  # degenerate OD: the slide is still scored
        matrix = stains.stain_matrix(reference["hematoxylin"], reference["dab"])
        return stain_estimation.StainEstimate(matrix, "default", notes=(f"stain estimation failed ({err}): default kept",))


def measure_pixel_qc(overview, overview_mpp, mask, focus_tiles, i0, estimate, config):
    """The QC metrics of :mod:`cxcr4score.qc_metrics` measured on pixels (see :func:`describe_slide`)."""
    pixels = stain_estimation.sample_pixels(overview, mask)
    return {
        # The threshold is applied at merge, so that changing it reruns no pixel work.
        "focus_scores": qc_metrics.focus_scores(focus_tiles),
        "saturated": qc_metrics.saturated_share(pixels),
        "pen": qc_metrics.pen_share(stains.od_table(i0)[np.arange(3), pixels], estimate.matrix[:2]),
        "folds": qc_metrics.fold_share(tissue.od_sum(overview, i0), mask, mpp=overview_mpp),
        "stain_angle_deg": max(stain_estimation.angle_deg(estimate.matrix[row], config["stains"][name])
                               for row, name in ((stains.HEMATOXYLIN, "hematoxylin"), (stains.DAB, "dab"))),
        "second_stain_deg": estimate.second_off_plane_deg,
    }


def _finite_or_none(value):
    return float(value) if math.isfinite(value) else None


def describe_slide(path, *, slide_id, patient_id="", sheet_mpp="", roi_path="", config):
    """Metadata, pixel size, tissue area, background I0, stains and the chunk list of one slide.

    Parameters
    ----------
    path : str or path-like
        The slide image.
    slide_id, patient_id : str
    sheet_mpp : str or float
        The sheet's pixel size ('' when not given).
    roi_path : str or path-like
        A QuPath GeoJSON of annotations that restricts scoring ('' for none).
    config : dict
        Effective configuration.

    Returns
    -------
    SlideInfo

    Raises
    ------
    cxcr4score.errors.InputError
        The slide cannot be read.
    """
    reader, grid, mpp_source, mpp_warning = open_grid(path, sheet_mpp=sheet_mpp, config=config)
    with reader:
        overview, overview_mpp = grid_module.read_overview(reader, grid)
        mask = tissue_of(overview, overview_mpp, config)
        focus_boxes = qc_metrics.focus_tiles(mask, overview_scale=overview_mpp / grid.mpp, shape=grid.shape)
        focus_tiles = [grid_module.read_box(reader, grid, b) for b in focus_boxes]
        stain_boxes = [] if overview_mpp <= STAIN_OVERVIEW_MAX_MPP else qc_metrics.focus_tiles(
            mask, overview_scale=overview_mpp / grid.mpp, shape=grid.shape, max_tiles=STAIN_TILES)
        stain_tiles = [grid_module.read_box(reader, grid, b) for b in stain_boxes]
        region_boxes = _region_boxes(mask, roi_path, config["roi_classes"], overview_mpp=overview_mpp, grid=grid)
        region_tiles = [grid_module.read_box(reader, grid, b) for b in region_boxes]
    background = stains.measure_background(
        overview, _glass(mask, overview_mpp),
        default_i0=config["default_i0"], min_glass_fraction=config["tissue"]["min_glass_fraction"],
    )
    warnings = [w for w in (mpp_warning, background.warning) if w]
    if grid.mpp > config["analysis_mpp"] * (1 + MPP_TOLERANCE):
        warnings.append(f"pixel size {grid.mpp:.3g} um is coarser than the analysis pixel size "
                        f"{config['analysis_mpp']:g} um: compartments are less exact")
    tissue_mm2 = float(np.count_nonzero(mask)) * overview_mpp**2 / 1e6
    if tissue_mm2 == 0:
        warnings.append("no tissue found")
    halo_px = math.ceil(tiling.halo_um(config) / grid.mpp)
    core_px = tiling.core_px(config["chunk_mpix"])
    slide_tiles = tiling.plan_tiles(grid.shape, halo_px=halo_px, core_px=core_px, tissue=mask if tissue_mm2 else None)
    chunk_tiles = tiling.group_tiles(len(slide_tiles), core_px=core_px, chunk_mpix=config["chunk_mpix"])
    # Stains are unmixed on the overview where it resolves them, else on tissue tiles at the
    # analysis pixel size (their tissue pixels only); on the overview too when no tile is half
    # tissue.
    if stain_boxes:
        estimate = _stain_estimate(stain_tiles, [_mask_on_box(mask, box, overview_mpp / grid.mpp)
                                                 for box in stain_boxes], background.i0, config)
    else:
        estimate = _stain_estimate([overview], [mask], background.i0, config)
    tables = stains.concentration_tables(background.i0, estimate.matrix)
    # Nuclei are resolved only at the analysis pixel size: a small image's overview, which is
    # then the whole analysis image (its every nucleus: the typing reference is then the
    # image's own), else the focus tiles; their tissue pixels only.
    if overview_mpp == grid.mpp:
        tiles, masks = [overview], [mask]
    else:
        tiles, masks = focus_tiles, [_mask_on_box(mask, box, overview_mpp / grid.mpp) for box in focus_boxes]
    hematoxylin = [segment.hematoxylin_and_ridges(*stains.deconvolve(t, tables), mpp=grid.mpp)[0] for t in tiles]
    baseline = segment.signal_baseline(hematoxylin, mpp=grid.mpp,
                                       params=segment.NucleusParams(**config["nuclei"]), masks=masks)
    if tissue_mm2 and not tiles:
        warnings.append("no tissue tile to measure the nucleus signal's baseline on: 0 assumed")
    elif baseline > segment.BASELINE_WARNING:
        warnings.append(f"hematoxylin between nuclei reads {baseline:.2f} OD: nuclei stand out little "
                        "and may be missed or merged")
    sampled = stain_pattern.sampled_cells(tiles, tables=tables, mpp=grid.mpp, config=config, baseline=baseline)
    n_stained, pct_nuclear = stain_pattern.nuclear_share(sampled["pattern"][sampled["scored"].astype(bool)])
    dab_threshold = stain_pattern.nucleus_dab_threshold(config, n_stained, pct_nuclear)
    stain_notes = estimate.notes + ((f"third stain vector {_vector_text(estimate.matrix[2:])} in use "
                                     "(its OD does not enter DAB)",) if estimate.third_stain else ())
    if dab_threshold > 0 and not config["nuclei"]["dab_threshold"]:
        stain_notes += (f"DAB-stained cells mostly nuclear ({pct_nuclear:.0f}% of {n_stained} in sampled tiles): "
                        f"nuclei also found on DAB >= {dab_threshold:g} OD",)
    reference = _finite_or_none(celltype.darkness_reference(
        sampled["nucleus_area_um2"], sampled["hematoxylin_nucleus"], sampled["neighbour_nucleus_area_um2"]))
    segmentation_sample = segmentation_stability.sample(
        region_tiles or focus_tiles or tiles, tables=tables, mpp=grid.mpp, config=config, baseline=baseline,
        dab_threshold=dab_threshold, reference=reference)
    return SlideInfo(
        slide_id=slide_id,
        patient_id=patient_id,
        path=str(path),
        roi=str(roi_path or ""),
        mpp=grid.native_mpp,
        mpp_source=mpp_source,
        level=grid.level,
        level_shape=list(grid.level_shape),
        level_mpp=grid.level_mpp,
        analysis_mpp=grid.mpp,
        shape=list(grid.shape),
        overview_mpp=overview_mpp,
        tissue_mm2=tissue_mm2,
        i0=list(background.i0),
        i0_source=background.source,
        stain_matrix=estimate.matrix.tolist(),
        # Always hematoxylin;DAB (DESIGN section 4); a third stain in use is named in the notes.
        stain_vectors=_vector_text(estimate.matrix[:2]),
        stain_source=estimate.source,
        stain_dab_fraction=estimate.dab_fraction,
        stain_notes="; ".join(stain_notes),
        nucleus_baseline=baseline,
        nucleus_dab_threshold=dab_threshold,
        typing_reference=reference,
        segmentation_sample=segmentation_sample,
        pixel_qc=measure_pixel_qc(overview, overview_mpp, mask, focus_tiles, background.i0, estimate, config),
        chunks=[str(k) for k in range(len(chunk_tiles))],
        chunk_tiles=chunk_tiles,
        tile_boxes=[t.to_json() for t in slide_tiles],
        qc_status="warning" if warnings else "ok",
        qc_message="; ".join(warnings),
        cxcr4score_version=__version__,
    )
