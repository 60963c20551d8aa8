"""Tissue mask on a working grid near 1 um/px against the same mask computed at full resolution.

The working grid changes the mask only near its edges (DESIGN: the mask is coarse by design);
the bar: >= 99.5% pixel agreement and tissue area within 1% of the full-resolution mask, on
generated tiles with glass, the sample slides' overviews (what the workflow masks) and the real
scans. A working grid far coarser than 1 um fails the same bar (so the bar discriminates).
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np
import pytest

from cxcr4score import config, grid, synthetic, tissue
from cxcr4score.slide_info import describe_slide, open_grid

from . import reference

ROOT = Path(__file__).resolve().parents[1]
WSI = ROOT.parent / "shared" / "data" / "wsi"
MIN_AGREEMENT, MAX_AREA_CHANGE = 0.995, 0.01


def _agreement(rgb, mpp, **kwargs):
    full = tissue.tissue_mask(rgb, mpp=mpp, work_mpp=mpp)
    ours = tissue.tissue_mask(rgb, mpp=mpp, **kwargs)
    assert ours.shape == full.shape and ours.dtype == bool
    return float(np.mean(ours == full)), abs(int(ours.sum()) - int(full.sum())) / max(int(full.sum()), 1)


@pytest.mark.parametrize("layout", ["edge", "fragment"])
@pytest.mark.parametrize("glass", [0.3, 0.7])
def test_working_grid_agrees_with_full_resolution_on_generated_tiles(layout, glass):
    """Reference: the full-resolution mask (work_mpp = mpp), and reference_pipeline_tissue.
    On these tiles the bar is 99.9%, which a mask 1 um off at every edge fails."""
    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(400.0, 400.0), glass_fraction=glass,
                                                      tissue_layout=layout), seed=5)
    full = tissue.tissue_mask(tile.rgb, mpp=0.5, work_mpp=0.5)
    ours = tissue.tissue_mask(tile.rgb, mpp=0.5)
    assert np.mean(ours == full) >= 0.999
    assert abs(int(ours.sum()) - int(full.sum())) <= MAX_AREA_CHANGE * full.sum()
    assert np.mean(ours == reference.reference_pipeline_tissue(tile.rgb, mpp=0.5)) >= 0.999
    one_um_in = cv2.erode(full.view(np.uint8), np.ones((5, 5), np.uint8), borderType=cv2.BORDER_REPLICATE)
    assert np.mean(one_um_in.view(bool) == full) < 0.999


def _overviews(paths):
    settings = config.default_config()
    for path in paths:
        reader, chosen, _, _ = open_grid(path, sheet_mpp="", config=settings)
        with reader:
            yield path.name, *grid.read_overview(reader, chosen)


def test_working_grid_agrees_on_sample_slide_overviews():
    """Reference: the full-resolution mask of each sample slide's overview (0.5 um/px)."""
    paths = sorted((ROOT / "sample_slides").glob("*/*.tif"))
    assert len(paths) == 8
    for name, overview, mpp in _overviews(paths):
        assert mpp < 2 / 3  # the working grid is used
        agreement, area = _agreement(overview, mpp)
        assert agreement >= MIN_AGREEMENT and area <= MAX_AREA_CHANGE, (name, agreement, area)


@pytest.mark.skipif(not WSI.is_dir(), reason="real scans not available")
def test_working_grid_agrees_on_real_scans():
    """Reference: the full-resolution mask of each real scan's overview, and of the whole
    analysis grid of the CMU scan (its overview is 0.72 um/px, masked at full resolution)."""
    names = ("OS-1-detail.ome.tif", "OS-2-ndpi.ome.tif", "OS-2-vsi.ome.tif", "boxes.tiff", "cmu_small_region.svs")
    for name, overview, mpp in _overviews([WSI / n for n in names]):
        agreement, area = _agreement(overview, mpp)
        assert agreement >= MIN_AGREEMENT and area <= MAX_AREA_CHANGE, (name, agreement, area)
    settings = config.default_config()
    reader, chosen, _, _ = open_grid(WSI / "cmu_small_region.svs", sheet_mpp="", config=settings)
    with reader:
        whole = grid.read_box(reader, chosen, (0, 0, *chosen.shape))
    agreement, area = _agreement(whole, chosen.mpp)
    assert agreement >= MIN_AGREEMENT and area <= MAX_AREA_CHANGE, (agreement, area)


@pytest.mark.parametrize(("shape", "factor"), [((64, 64), 2), ((101, 77), 3), ((9, 130), 4), ((1, 1), 2)])
def test_upsample_matches_reference(shape, factor):
    """Reference: reference.upsample_mask (np.repeat, scipy grey dilation, cv2 INTER_CUBIC);
    equal except where the interpolated value is within float rounding of the threshold."""
    rng = np.random.default_rng(sum(shape) + factor)
    blocks = (-(-shape[0] // factor), -(-shape[1] // factor))
    smoothed = cv2.GaussianBlur(rng.random(blocks, dtype=np.float32) * 0.1, (0, 0), 1.5)
    coarse = smoothed >= 0.05
    coarse[: blocks[0] // 3, : blocks[1] // 3] = True  # a block region whose edge disagrees with smoothed
    ours = tissue._upsample_mask(coarse, smoothed, factor, 0.05, shape)
    expected, interpolated = reference.upsample_mask(coarse, smoothed, factor, 0.05, shape)
    assert ours.shape == shape
    close = np.abs(interpolated - 0.05) < 1e-6
    np.testing.assert_array_equal(ours[~close], expected[~close])
    assert np.isfinite(interpolated).any() or blocks == (1, 1)


def test_odd_shapes_and_pixel_sizes():
    """Reference: the full-resolution mask; image sizes not divisible by the block factor."""
    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(120.0, 150.0), glass_fraction=0.5, mpp=0.3), seed=1)
    rgb = tile.rgb[:-1, :-2]  # 499 x 398 at 0.3 um/px: blocks of 3 cut at both edges
    agreement, area = _agreement(rgb, 0.3)
    assert agreement >= MIN_AGREEMENT and area <= MAX_AREA_CHANGE
    coarse = tissue.tissue_mask(rgb, mpp=0.8)  # 0.8 um/px: no working grid, the full-resolution path
    np.testing.assert_array_equal(coarse, tissue.tissue_mask(rgb, mpp=0.8, work_mpp=0.1))


@pytest.mark.parametrize("shape", [(0, 0), (0, 5), (1, 1), (3, 1)])
def test_empty_and_tiny_images(shape):
    """Reference: the full-resolution mask (tiny images); an empty image has an empty mask."""
    rgb = np.full((*shape, 3), 120, np.uint8)
    mask = tissue.tissue_mask(rgb, mpp=0.5, min_area_um2=0.1)
    assert mask.shape == shape and mask.dtype == bool
    np.testing.assert_array_equal(mask, tissue.tissue_mask(rgb, mpp=0.5, min_area_um2=0.1, work_mpp=0.5))


def test_too_coarse_working_grid_is_refused():
    rgb = np.full((64, 64, 3), 200, np.uint8)
    with pytest.raises(ValueError, match="working pixel size 8.0 um is coarser"):
        tissue.tissue_mask(rgb, mpp=0.5, work_mpp=8.0)


def _pale_core(seed=0, size=600, glass=234.0, vignetting=2.0, specks=0.1):
    """A TMA-like image at 1 um/px: JPEG-like noisy glass with a brightness gradient, and a
    disc of pale tissue that is on average barely darker than the glass but full of small
    dark specks (nuclei, fibres)."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((size, size))
    grey = glass - vignetting * cols / size + rng.normal(0, 1.5, (size, size))
    disc = (rows - size / 2) ** 2 + (cols - size / 2) ** 2 <= (size / 3) ** 2
    dark = disc & (rng.random((size, size)) < specks)
    grey = np.where(dark, grey - 35, grey + 2.0 * disc)
    grey = cv2.GaussianBlur(grey, (0, 0), 0.8)
    rgb = np.clip(np.stack([grey, grey - 1, grey + 8], -1), 0, 255).astype(np.uint8)
    return rgb, disc


def test_pale_tissue_on_glass_is_found_by_its_texture():
    """Reference: the drawn disc. Its mean OD sum is below the old fixed threshold above the
    99th-percentile white, and the glass's gradient reaches above it; the glass rule finds
    the disc and no glass, within the texture window's reach of the edge."""
    rgb, disc = _pale_core()
    mask = tissue.tissue_mask(rgb, mpp=1.0)
    edge = cv2.morphologyEx(disc.astype(np.uint8), cv2.MORPH_GRADIENT, np.ones((15, 15), np.uint8)).astype(bool)
    assert np.mean(mask[~edge] == disc[~edge]) > 0.99
    smoothed = cv2.GaussianBlur(tissue.od_sum(rgb, tissue.provisional_white(rgb)), (0, 0), 2.0)
    assert tissue.glass_level(smoothed, min_fraction=0.01) is not None
    assert np.median(smoothed[disc]) - tissue.glass_level(smoothed, min_fraction=0.01)[0] < 0.05


def test_no_glass_keeps_the_plain_rule():
    """Reference: a field of tissue with no glass mode: the mask is the smoothed OD sum at or
    above the threshold, as reference_pipeline_tissue computes it."""
    tile = synthetic.generate_tile(synthetic.TileSpec(size_um=(150.0, 150.0), glass_fraction=0.0), seed=3)
    od = tissue.od_sum(tile.rgb, tissue.provisional_white(tile.rgb))
    smoothed, fine = cv2.GaussianBlur(od, (0, 0), 4.0), cv2.GaussianBlur(od, (0, 0), 2.0)
    assert tissue.glass_level(smoothed, min_fraction=0.01, texture=tissue._texture(fine, 6.0)) is None
    ours = tissue.tissue_mask(tile.rgb, mpp=0.5, work_mpp=0.5)
    assert np.mean(ours == reference.reference_pipeline_tissue(tile.rgb, mpp=0.5)) >= 0.999


IHC = ROOT.parent / "shared" / "data" / "ihc"


@pytest.mark.skipif(not IHC.is_dir(), reason=f"{IHC} not present: real HER2 crops are not shipped with the project")
@pytest.mark.parametrize("name", ["her2-0-crop.tif", "her2-2plus-crop.tif"])
def test_real_core_edges_have_their_glass_found(name):
    """Reference: the crops' corners are glass (HER2 cores' JPEG glass, about 234-242, where
    the old fixed rule read the whole image as tissue); I0 comes from that glass."""
    info = describe_slide(IHC / name, slide_id="c", config=config.default_config())
    assert info.i0_source == "glass" and 225 <= min(info.i0) and max(info.i0) <= 252
    area_mm2 = info.shape[0] * info.shape[1] * info.analysis_mpp**2 / 1e6
    assert 0.5 < info.tissue_mm2 / area_mm2 < 0.97


def test_pale_tissue_filling_the_image_is_not_glass():
    """Reference: a crop that is pale textured tissue throughout (review finding: the tissue's
    own peak was taken for glass and the tissue lost). Glass is the palest and flattest mode,
    so the tissue stays tissue (denser than the disc above, as a crop of a real pale core reads
    at least 0.05 over its own palest pixels)."""
    rgb, _ = _pale_core(size=400, specks=0.3)
    rows, cols = np.indices((400, 400))
    inside = (rows - 200) ** 2 + (cols - 200) ** 2 <= (400 / 3) ** 2
    assert inside[120:280, 120:280].all()
    assert tissue.tissue_mask(rgb[120:280, 120:280].copy(), mpp=1.0).mean() > 0.99  # was 0.0
