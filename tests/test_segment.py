"""Segmentation and tissue against scikit-image references and the generator's truth."""

import cv2
import numba
import numpy as np
import pytest
from skimage import morphology
from skimage.segmentation import watershed

from cxcr4score import config, measure, segment, stains, synthetic, tissue
from cxcr4score._kernels import cells as cell_kernels
from cxcr4score._kernels import filters as filter_kernels
from cxcr4score._kernels import labels as label_kernels
from cxcr4score._kernels.rows import row_bands
from cxcr4score.constants import CYTOPLASM, MEMBRANE, MEMBRANE_RING, NUCLEUS

from . import reference
from .threads import needs_two_threads, numba_threads


@pytest.fixture(scope="module")
def tile():
    return synthetic.generate_tile(synthetic.TileSpec(size_um=(256.0, 256.0)), seed=5)


@pytest.fixture(scope="module")
def hematoxylin(tile):
    hem, _ = stains.deconvolve(tile.rgb, stains.concentration_tables(tuple(tile.i0), stains.stain_matrix()))
    return hem


def _matched_fraction(labels_a, labels_b, min_iou=0.5):
    """Share of objects of ``labels_a`` with an object of ``labels_b`` overlapping at IoU >= min_iou."""
    a, b = labels_a.ravel(), labels_b.ravel()
    both = (a > 0) & (b > 0)
    pairs, overlap = np.unique(np.stack([a[both], b[both]]), axis=1, return_counts=True)
    area_a, area_b = np.bincount(a), np.bincount(b)
    iou = overlap / (area_a[pairs[0]] + area_b[pairs[1]] - overlap)
    good = np.unique(pairs[0][iou >= min_iou])
    return len(good) / max(1, np.count_nonzero(area_a[1:]))


def test_nuclei_match_scikit_image_reference(hematoxylin):
    """Reference: reference.detect_nuclei (skimage opening, gaussian, watershed): label overlap."""
    params = segment.NucleusParams()
    ours = segment.detect_nuclei(hematoxylin, mpp=0.5, params=params)
    ref = reference.detect_nuclei(hematoxylin, mpp=0.5, threshold=params.threshold)
    assert ours.max() > 50
    assert _matched_fraction(ours, ref) > 0.9
    assert _matched_fraction(ref, ours) > 0.9


def test_nuclei_match_generator_truth(tile, hematoxylin):
    """Reference: the generator's truth nucleus labels (rendered with other stain vectors, blur, noise)."""
    ours = segment.detect_nuclei(hematoxylin, mpp=0.5)
    assert _matched_fraction(tile.nucleus_labels, ours) > 0.85


def test_nucleus_area_filter_and_threshold():
    """Hand-made: two discs of hematoxylin OD 0.5, one too small to keep (area < 10 um^2)."""
    hem = np.zeros((120, 120), np.float32)
    rows, cols = np.indices(hem.shape)
    hem[(rows - 40) ** 2 + (cols - 40) ** 2 <= 8**2] = 0.5   # 201 px = 50 um^2 at 0.5 um/px
    hem[(rows - 90) ** 2 + (cols - 90) ** 2 <= 1] = 0.5      # 5 px: below 10 um^2 after smoothing
    labels = segment.detect_nuclei(hem, mpp=0.5)
    assert labels.max() == 1
    assert labels[40, 40] == 1 and labels[90, 90] == 0
    area_um2 = np.count_nonzero(labels) * 0.25
    assert 35 < area_um2 < 80


def test_touching_nuclei_are_split():
    """Hand-made: two overlapping discs (a figure of eight) become two nuclei."""
    hem = np.zeros((80, 120), np.float32)
    rows, cols = np.indices(hem.shape)
    hem[((rows - 40) ** 2 + (cols - 45) ** 2 <= 10**2) | ((rows - 40) ** 2 + (cols - 70) ** 2 <= 10**2)] = 0.5
    labels = segment.detect_nuclei(hem, mpp=0.5)
    assert labels.max() == 2
    assert labels[40, 42] != labels[40, 73]


def _touching_discs():
    """60 touching pairs of discs of varied sizes:
    the mask, its components, the split seeds and the components holding several."""
    rows, cols = np.indices((400, 420))
    foreground = np.zeros(rows.shape, bool)
    rng = np.random.default_rng(21)
    for n in range(60):
        top, left = 12 + 64 * (n // 6), 14 + 68 * (n % 6)
        radius = rng.integers(5, 10)
        for dy, dx in ((0, 0), (rng.integers(-3, 4), radius + rng.integers(3, 7))):
            foreground |= (rows - top - dy) ** 2 + (cols - left - dx) ** 2 <= radius**2
    foreground = foreground.view(np.uint8)
    _, components = cv2.connectedComponents(foreground, connectivity=8)
    distance, seed_pixels, seed_ids = segment._split_seeds(foreground, mpp=0.5)
    seeds = np.zeros(components.shape, np.int32)
    seeds.reshape(-1)[seed_pixels] = seed_ids
    per_seed = np.bincount(components.reshape(-1)[seed_pixels][np.unique(seed_ids, return_index=True)[1]])
    several = np.flatnonzero(per_seed >= 2)
    return foreground, components, distance, seeds, several[several > 0]


def _split(foreground, components):
    """segment._split_touching on a copy of ``components``: the labels and the returned areas."""
    areas, boxes = measure.label_stats(components, int(components.max()) + 1)
    labels = components.copy()
    return labels, segment._split_touching(foreground, labels, areas, boxes, mpp=0.5)


@pytest.mark.parametrize("step", [0.0, 0.5])
def test_split_seeds_equal_connected_window_maxima(step):
    """Reference: the seeds as OpenCV comparisons and 8-connected components of the window
    maxima (the same pixels and the same groups), on irregular blobs; the distance
    rounded down to ``step`` makes plateaus of many pixels, joined diagonally too."""
    noise = np.random.default_rng(3).random((300, 340)).astype(np.float32)
    foreground = (cv2.GaussianBlur(noise, (0, 0), 2.5) > 0.5).view(np.uint8)
    distance = cv2.GaussianBlur(cv2.distanceTransform(foreground, cv2.DIST_L2, 5), (0, 0), 1.0)
    if step:
        distance = np.floor(distance / step) * step
    window = cv2.dilate(distance, np.ones((9, 9), np.uint8))
    mask, counts = np.empty(foreground.shape, np.uint8), np.empty(foreground.shape[0], np.int64)
    filter_kernels.seed_mask_kernel(distance, 4, 2.0, foreground, row_bands(foreground.shape[0], 64), mask, counts)
    seed_pixels, seed_ids = label_kernels.seed_groups_kernel(mask, counts)
    seeds = np.zeros(foreground.shape, np.int32)
    seeds.reshape(-1)[seed_pixels] = seed_ids
    peaks = (distance >= window) & (distance >= 2.0) & (foreground > 0)
    n, expected = cv2.connectedComponents(peaks.view(np.uint8), connectivity=8)
    assert n > 100
    if step:
        assert (np.bincount(expected.ravel())[1:] > 3).sum() > 20
    np.testing.assert_array_equal(seeds > 0, expected > 0)
    pairs = np.unique(np.stack([seeds[peaks], expected[peaks]]), axis=1)
    assert pairs.shape[1] == seeds.max() == n - 1  # one group of ours per group of OpenCV's
    first = np.unique(seeds.reshape(-1)[seed_pixels], return_index=True)[1]
    np.testing.assert_array_equal(first, np.sort(first))  # numbered in raster order of first pixel


def test_split_equals_one_watershed_per_component():
    """Reference: reference.split_per_component (a priority flood on each component alone)."""
    foreground, components, distance, seeds, several = _touching_discs()
    assert several.size > 40
    ours, areas = _split(foreground, components)
    expected = reference.split_per_component(components, distance, seeds, several, segment.WATERSHED_LEVELS_PER_PX)
    np.testing.assert_array_equal(ours, expected)
    np.testing.assert_array_equal(areas[1:], np.bincount(ours.ravel(), minlength=areas.size)[1:])


def test_pixels_no_seed_reaches_keep_their_component():
    """Reference: reference.split_per_component. Two pairs of touching discs, each with a
    one-pixel diagonal tail that the 4-connected flood cannot enter: each tail stays with its
    own component (review finding: both tails became one scattered label)."""
    rows, cols = np.indices((120, 240))
    foreground = np.zeros(rows.shape, np.uint8)
    for left in (0, 120):
        for x in (20, 32):
            foreground[(rows - 20) ** 2 + (cols - left - x) ** 2 <= 49] = 1
        foreground[27 + np.arange(1, 40), left + 20 + np.arange(1, 40)] = 1
    _, components = cv2.connectedComponents(foreground, connectivity=8)
    distance, seed_pixels, seed_ids = segment._split_seeds(foreground, mpp=0.5)
    seeds = np.zeros(components.shape, np.int32)
    seeds.reshape(-1)[seed_pixels] = seed_ids
    ours, areas = _split(foreground, components)
    expected = reference.split_per_component(components, distance, seeds, [1, 2], segment.WATERSHED_LEVELS_PER_PX)
    np.testing.assert_array_equal(ours, expected)
    for component in (1, 2):
        tail = (ours == component)
        assert tail.sum() == areas[component] > 30
        assert np.all(components[tail] == component)
    np.testing.assert_array_equal(areas[1:], np.bincount(ours.ravel(), minlength=areas.size)[1:])


def test_empty_images_give_empty_results():
    empty = np.zeros((0, 7), np.float32)
    assert segment.detect_nuclei(empty, mpp=0.5).shape == (0, 7)
    labels = np.zeros((5, 0), np.int32)
    codes, exposed = segment.compartments(labels, labels, mpp=0.5, band_um=1.0, capture_um=2.0)
    assert codes.shape == (5, 0) and exposed.shape == (1,)


@pytest.mark.parametrize("radius_px", [0.2, 1.0, 1.5, 2.49, 4.0, 10.0, 16.5, 40.0])
def test_disk_is_scikit_image_disk(radius_px):
    """Reference: skimage.morphology.disk of the rounded radius (at least 1), as uint8."""
    expected = morphology.disk(max(1, int(round(radius_px)))).astype(np.uint8)
    footprint = segment._disk(radius_px)
    assert footprint.dtype == np.uint8 and np.array_equal(footprint, expected)


def test_split_agrees_with_scikit_image_watershed():
    """Reference: skimage.segmentation.watershed of the unquantised -distance, per component:
    the 1/16 px quantisation of the flooded surface moves under 1% of the split pixels."""
    foreground, components, distance, seeds, several = _touching_discs()
    ours, _ = _split(foreground, components)
    split = np.isin(components, several)
    expected = np.zeros_like(ours)
    for component in several:
        mask = components == component
        expected[mask] = watershed(-distance, np.where(mask, seeds, 0), mask=mask)[mask]
    agreement = np.mean(ours[split] - (components.max() + 1) == expected[split])
    assert agreement > 0.99  # 0.996 here; 0.9999 on a generated 2048^2 tile


@pytest.mark.parametrize("seed", range(4))
def test_watershed_kernel_equals_priority_flood(seed):
    """Reference: reference.priority_flood (heapq of (level, entry order)); few levels, so
    most pixels tie, and markers of several pixels."""
    rng = np.random.default_rng(seed)
    shape = (40 + 7 * seed, 55)
    mask = rng.random(shape) < 0.8
    mask[[0, -1]] = False
    mask[:, [0, -1]] = False
    levels = rng.integers(0, 4 + 20 * (seed % 2), shape).astype(np.int32)
    markers = np.zeros(shape, np.int32)
    for label in range(1, 9):
        y, x = rng.integers(1, shape[0] - 2), rng.integers(1, shape[1] - 2)
        markers[y, x : x + 2] = label
    markers[~mask] = 0
    ours = markers.copy()
    label_kernels.watershed_kernel(levels, markers, mask, ours)
    np.testing.assert_array_equal(ours, reference.priority_flood(levels, markers, mask))


def test_expansion_never_crosses_a_neighbour():
    nuclei = np.zeros((40, 60), np.int32)
    nuclei[18:22, 10:14] = 1
    nuclei[18:22, 30:34] = 2
    cells = segment.expand_cells(nuclei, mpp=0.5, expansion_um=5.0)
    assert np.all(cells[nuclei == 1] == 1) and np.all(cells[nuclei == 2] == 2)
    # the boundary lies halfway between the nuclei; no pixel of cell 1 is right of it
    assert np.max(np.nonzero(cells == 1)[1]) <= 22
    assert np.min(np.nonzero(cells == 2)[1]) >= 22


def test_membrane_band_matches_brute_force(tile):
    """Reference: reference.membrane_band (explicit disk neighbourhood search)."""
    cells, nuclei = tile.cell_labels, tile.nucleus_labels
    codes, exposed = segment.compartments(cells, nuclei, mpp=0.5, band_um=1.0)
    band, near_other = reference.membrane_band(cells, nuclei, band_px=2)
    np.testing.assert_array_equal(codes == MEMBRANE, band)
    np.testing.assert_array_equal(codes == NUCLEUS, (nuclei > 0) & (cells > 0))
    np.testing.assert_array_equal(codes == CYTOPLASM, (cells > 0) & ~band & (nuclei == 0))
    n = int(cells.max())
    band_count = np.bincount(cells[band], minlength=n + 1)
    exposed_ref = np.bincount(cells[band & ~near_other], minlength=n + 1)
    has_band = band_count > 0
    np.testing.assert_allclose(exposed[has_band], exposed_ref[has_band] / band_count[has_band])


def test_capture_ring_is_the_cytoplasm_next_to_the_band(tile):
    """Reference: reference.membrane_band (explicit disk search), then a brute-force disk of
    2 px around it, cytoplasm only."""
    cells, nuclei = tile.cell_labels, tile.nucleus_labels
    codes, exposed = segment.compartments(cells, nuclei, mpp=0.5, band_um=1.0, capture_um=2.0)
    plain, plain_exposed = segment.compartments(cells, nuclei, mpp=0.5, band_um=1.0)
    band, _ = reference.membrane_band(cells, nuclei, band_px=2)
    padded = np.pad(band, 2)
    near = np.zeros_like(band)
    for di, dj in zip(*np.nonzero(morphology.disk(2))):
        near |= padded[di : di + band.shape[0], dj : dj + band.shape[1]]
    cytoplasm = (cells > 0) & (nuclei == 0) & ~band
    np.testing.assert_array_equal(codes == MEMBRANE_RING, cytoplasm & near)
    np.testing.assert_array_equal(np.where(codes == MEMBRANE_RING, CYTOPLASM, codes), plain)
    np.testing.assert_array_equal(exposed, plain_exposed)


def _random_cells(shape, seed, n_labels=40):
    """Blocky random labels with background, single pixels and every arrangement of neighbours."""
    rng = np.random.default_rng(seed)
    blocks = rng.integers(0, n_labels, size=(shape[0] // 3 + 1, shape[1] // 3 + 1))
    cells = np.kron(blocks, np.ones((3, 3), np.int64))[: shape[0], : shape[1]]
    specks = rng.random(shape) < 0.03
    cells[specks] = rng.integers(0, n_labels, size=specks.sum())
    nuclei = np.where(rng.random(shape) < 0.2, cells, 0)
    return cells.astype(np.int32), nuclei.astype(np.int32)


def _brute_force_compartments(cells, nuclei, band_px, ring_px):
    """Reference: reference.membrane_band, then a brute-force disk around the band (outside ignored)."""
    band, near_other = reference.membrane_band(cells, nuclei, band_px=band_px)
    near = np.zeros_like(band)
    if ring_px:
        padded = np.pad(band, ring_px)
        for di, dj in zip(*np.nonzero(morphology.disk(ring_px))):
            near |= padded[di : di + band.shape[0], dj : dj + band.shape[1]]
    inside, nucleus = cells > 0, (nuclei > 0) & (cells > 0)
    codes = np.select([nucleus, band, inside & near, inside], [NUCLEUS, MEMBRANE, MEMBRANE_RING, CYTOPLASM], 0)
    n = int(cells.max(initial=0))
    band_count = np.bincount(cells[band], minlength=n + 1)
    exposed_count = np.bincount(cells[band & ~near_other], minlength=n + 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        exposed = np.where(band_count > 0, exposed_count / band_count, np.nan)
    return codes.astype(np.uint8), exposed


@pytest.mark.parametrize(("band_um", "capture_um"), [(1.0, 0.0), (1.0, 2.0), (0.5, 1.5), (1.5, 2.0), (2.0, 4.0), (3.0, 3.0)])
@pytest.mark.parametrize("shape", [(1, 1), (2, 9), (7, 50), (61, 45)])
def test_compartments_match_brute_force_on_random_labels(band_um, capture_um, shape):
    """Reference: reference.membrane_band and a brute-force ring, exactly (codes and exposed
    fractions), on blocky random labels touching every edge, band radii 1 to 6 px."""
    cells, nuclei = _random_cells(shape, seed=shape[0] * 100 + int(band_um * 10))
    band_px, ring_px = int(round(band_um / 0.5)), max(0, int(round((capture_um - band_um) / 0.5)))
    codes, exposed = segment.compartments(cells, nuclei, mpp=0.5, band_um=band_um, capture_um=capture_um)
    ref_codes, ref_exposed = _brute_force_compartments(cells, nuclei, band_px, ring_px)
    np.testing.assert_array_equal(codes, ref_codes)
    np.testing.assert_array_equal(exposed, ref_exposed)


@pytest.mark.parametrize("case", ["empty", "one label", "one cell", "border cells"])
def test_compartments_edge_cases(case):
    """Reference: reference.membrane_band and a brute-force ring (as above)."""
    cells = np.zeros((24, 31), np.int32)
    if case == "one label":
        cells[:] = 3
    elif case == "one cell":
        cells[5:15, 8:20] = 1
    elif case == "border cells":
        cells[:6, :] = 1
        cells[18:, 10:] = 2
        cells[:, :3] = 3
    nuclei = np.where(cells > 0, cells, 0) * (np.arange(31) % 5 == 0)
    codes, exposed = segment.compartments(cells, nuclei.astype(np.int32), mpp=0.5, band_um=1.0, capture_um=2.0)
    ref_codes, ref_exposed = _brute_force_compartments(cells, nuclei, 2, 2)
    np.testing.assert_array_equal(codes, ref_codes)
    np.testing.assert_array_equal(exposed, ref_exposed)


def test_compartments_do_not_depend_on_row_bands(tile):
    """Each band of rows computes the membrane of the ring's reach beyond its edges: one-row
    bands give the whole-image codes and counts."""
    cells, nuclei = tile.cell_labels.astype(np.int32), tile.nucleus_labels.astype(np.int32)
    results = []
    for rows_per_band in (cells.shape[0], 1, 7):
        codes = np.empty(cells.shape, np.uint8)
        counts = np.zeros((numba.get_num_threads(), int(cells.max()) + 1, 2), np.int64)
        cell_kernels.compartments_kernel(cells, nuclei, segment._disk_half_widths(2), segment._disk_half_widths(2),
                                         row_bands(cells.shape[0], rows_per_band), codes, counts)
        results.append((codes, counts.sum(axis=0)))
    for codes, counts in results[1:]:
        np.testing.assert_array_equal(codes, results[0][0])
        np.testing.assert_array_equal(counts, results[0][1])


def test_compartments_reject_labels_beyond_float32():
    cells = np.full((3, 3), 2**24, np.int32)
    with pytest.raises(ValueError, match="2\\*\\*24"):
        segment.compartments(cells, np.zeros_like(cells), mpp=0.5)


def test_tissue_mask_finds_glass(tile):
    """Reference: the generator's tissue mask (area agreement)."""
    mask = tissue.tissue_mask(tile.rgb, mpp=0.5)
    agreement = np.mean(mask == tile.tissue_mask)
    assert agreement > 0.95
    assert 0.05 < 1 - mask.mean() < 0.5  # the generator leaves ~15% glass


def test_background_measured_on_glass(tile):
    """Reference: the generator's I0 per channel (rendered below 255)."""
    glass = ~tissue.tissue_mask(tile.rgb, mpp=0.5)
    background = stains.measure_background(tile.rgb, glass)
    assert background.source == "glass"
    np.testing.assert_allclose(background.i0, tile.i0, atol=6)
    none = stains.measure_background(tile.rgb, np.zeros_like(glass))
    assert none.source == "default" and none.i0 == (255.0, 255.0, 255.0) and "glass" in none.warning


def test_default_config_params_are_the_dataclass_defaults():
    """Reference: QuPath's background radius and smoothing; the threshold above the slide's
    baseline and brown nuclei off, as config/config.yaml documents them."""
    nuclei = config.default_config()["nuclei"]
    assert segment.NucleusParams(**nuclei) == segment.NucleusParams()
    assert (nuclei["background_radius_um"], nuclei["sigma_um"], nuclei["threshold"], nuclei["dab_threshold"]) == (
        8, 1.5, 0.05, 0)


def test_expansion_matches_scikit_image(tile):
    """Reference: skimage.segmentation.expand_labels, pixel for pixel."""
    from skimage.segmentation import expand_labels

    ours = segment.expand_cells(tile.nucleus_labels, mpp=0.5, expansion_um=5.0)
    np.testing.assert_array_equal(ours, expand_labels(tile.nucleus_labels, distance=10))


@pytest.mark.parametrize("distance", [0.0, 0.7, 1.0, 2.0, 3.6, 5.0, 7.0710678118654755, 10.0, 12.5])
@pytest.mark.parametrize("density", [0.002, 0.02, 0.2])
def test_expansion_matches_scikit_image_on_ties_and_edges(distance, density):
    """Reference: skimage.segmentation.expand_labels on scattered single-pixel nuclei of a few
    labels on a grid (many equidistant pixels, pixels on the image edges), every distance
    rule: integer and not, below a pixel, at sqrt(50)."""
    from skimage.segmentation import expand_labels

    rng = np.random.default_rng(int(distance * 10) + int(density * 1000))
    nuclei = np.where(rng.random((83, 97)) < density, rng.integers(1, 6, (83, 97)), 0).astype(np.int32)
    nuclei[0, 5], nuclei[-1, -3], nuclei[40, 0] = 2, 3, 4
    ours = segment.expand_cells(nuclei, mpp=0.5, expansion_um=distance / 2)
    np.testing.assert_array_equal(ours, expand_labels(nuclei, distance=distance))


@pytest.mark.parametrize("case", ["empty", "full", "one cell", "corner"])
def test_expansion_edge_cases(case):
    """Reference: skimage.segmentation.expand_labels."""
    from skimage.segmentation import expand_labels

    nuclei = np.zeros((30, 41), np.int32)
    if case == "full":
        nuclei[:] = 7
    elif case == "one cell":
        nuclei[12:16, 18:21] = 3
    elif case == "corner":
        nuclei[0, 0] = 1
        nuclei[-1, -1] = 2
    ours = segment.expand_cells(nuclei, mpp=0.5, expansion_um=5.0)
    np.testing.assert_array_equal(ours, expand_labels(nuclei, distance=10))


def test_expansion_does_not_depend_on_row_bands(tile):
    """Each band of rows sweeps beyond its edges: one-row bands give the whole-image result."""
    nuclei = tile.nucleus_labels.astype(np.int32)
    whole, rows = np.empty_like(nuclei), np.empty_like(nuclei)
    cell_kernels.expand_labels_kernel(nuclei, 10, 100, 5, row_bands(nuclei.shape[0], nuclei.shape[0]), whole)
    cell_kernels.expand_labels_kernel(nuclei, 10, 100, 5, row_bands(nuclei.shape[0], 1), rows)
    np.testing.assert_array_equal(rows, whole)


def test_expansion_rejects_bad_distances():
    nuclei = np.zeros((5, 5), np.int32)
    with pytest.raises(ValueError, match="non-negative"):
        segment.expand_cells(nuclei, mpp=0.5, expansion_um=-1.0)
    with pytest.raises(ValueError, match="too large"):
        segment.expand_cells(nuclei, mpp=0.5, expansion_um=1000.0)
    with pytest.raises(ValueError, match=f"at most {segment.MAX_EXPANSION_PX} px"):
        segment.expand_cells(nuclei, mpp=1.0, expansion_um=segment.MAX_EXPANSION_PX + 1.0)
    segment.expand_cells(nuclei, mpp=1.0, expansion_um=float(segment.MAX_EXPANSION_PX))  # the limit itself works
    with pytest.raises(ValueError, match="pixel size"):
        segment.expand_cells(nuclei, mpp=-0.5, expansion_um=5.0)


@needs_two_threads
def test_segmentation_identical_for_any_thread_count(hematoxylin):
    """Exact min/max and integer counts: 1 and 2 threads give identical labels and compartments."""
    results = []
    for threads in (1, 2):
        with numba_threads(threads):
            results.append(segment.segment_cells(hematoxylin, np.zeros_like(hematoxylin), mpp=0.5, config=config.default_config()))
    for one, two in zip(*results):
        np.testing.assert_array_equal(one, two)


def test_signal_baseline_is_the_level_between_nuclei():
    """Reference: a drawn image, 'cytoplasm' hematoxylin of 0.03 or 0.05 OD in a fine
    checkerboard (its local minimum, which the opening takes, lies 0.01 below its smoothed
    mean) and dark nuclei; the baseline is that residual between nuclei (within a bin), and
    without tiles it is 0."""
    rows, cols = np.indices((200, 200))
    hem = (0.03 + 0.02 * ((rows + cols) % 2)).astype(np.float32)
    for r, c in ((50, 50), (50, 150), (150, 100)):
        hem[(rows - r) ** 2 + (cols - c) ** 2 <= 49] = 0.4
    assert segment.signal_baseline([hem], mpp=0.5) == pytest.approx(0.01, abs=0.002)
    assert segment.signal_baseline([], mpp=0.5) == 0.0


def _brown_case():
    """Hematoxylin with one blue nucleus; DAB with one brown nucleus (no hematoxylin) and one
    stained membrane ring (a 1 um line around the blue nucleus)."""
    rows, cols = np.indices((120, 160))
    hem = np.zeros((120, 160), np.float32)
    dab = np.zeros((120, 160), np.float32)
    blue = (rows - 60) ** 2 + (cols - 40) ** 2 <= 36
    hem[blue] = 0.5
    ring = np.abs(np.hypot(rows - 60, cols - 40) - 14) <= 1
    dab[ring] = 0.8
    brown = (rows - 60) ** 2 + (cols - 120) ** 2 <= 36
    dab[brown] = 0.9
    return hem, dab, blue, brown


def test_brown_nuclei_only_when_asked_and_never_membranes():
    """Reference: the drawn nuclei. With dab_threshold 0 only the blue nucleus is found; with
    it, the brown nucleus too, and the stained ring (a membrane) does not become a nucleus."""
    hem, dab, blue, brown = _brown_case()
    off = segment.detect_nuclei(hem, mpp=0.5, dab=dab)
    on = segment.detect_nuclei(hem, mpp=0.5, params=segment.NucleusParams(dab_threshold=0.15), dab=dab)
    # Outlines at half the blurred peak: most of each drawn disc.
    assert off.max() == 1 and (off[blue] > 0).mean() > 0.8 and not off[brown].any()
    assert on.max() == 2 and (on[brown] > 0).mean() > 0.75 and len(np.unique(on[blue])) <= 2
    assert np.mean(on[~(blue | brown)] > 0) < 0.01


def test_brown_blob_over_a_cell_body_is_left_out():
    """A brown blob around a blue nucleus that is more than twice its size (a cell stained in
    its cytoplasm) does not enlarge the nucleus."""
    rows, cols = np.indices((120, 120))
    hem = np.zeros((120, 120), np.float32)
    dab = np.zeros((120, 120), np.float32)
    nucleus = (rows - 60) ** 2 + (cols - 60) ** 2 <= 25
    hem[nucleus] = 0.5
    dab[((rows - 60) ** 2 + (cols - 60) ** 2 <= 196) & ~nucleus] = 0.6
    labels = segment.detect_nuclei(hem, mpp=0.5, params=segment.NucleusParams(dab_threshold=0.15), dab=dab)
    assert labels.max() == 1 and (labels > 0).sum() <= 1.5 * nucleus.sum()


def test_signal_baseline_out_of_range_is_zero():
    """Review finding: with every value outside the histogram's range the mode was its first
    bin (-0.099), a negative threshold; now 0."""
    params = segment.NucleusParams(background_radius_um=0.0)  # no subtraction: the signal is 5 OD throughout
    assert segment.signal_baseline([np.full((64, 64), 5.0, np.float32)], mpp=0.5, params=params) == 0.0


def _membrane_scene(seed=0):
    """DAB of a drawn field at 0.5 um/px: a honeycomb of 1.5 um membranes (0.35 OD) over faint
    cytoplasm (0.05), two brown nuclei (0.9 OD, with chromatin texture of +-0.15) and a
    cytoplasm-stained cell body (0.3 OD, 14 um across); noise 0.01 OD. Returns the image and
    the masks of the membrane crests, the brown nuclei and the stained body."""
    rng = np.random.default_rng(seed)
    rows, cols = np.indices((160, 200))
    dab = np.full(rows.shape, 0.05)
    crest = (rows % 24 == 12) | (cols % 24 == 12)
    line = (np.abs(rows % 24 - 12) <= 1) | (np.abs(cols % 24 - 12) <= 1)
    dab[line] = 0.35
    nuclei = np.zeros(rows.shape, bool)
    for r, c in ((30, 140), (125, 40)):
        nuclei |= (rows - r) ** 2 + (cols - c) ** 2 <= 8**2
    texture = 0.15 * np.sign(np.sin(rows * 1.3) * np.sin(cols * 1.1))
    dab[nuclei] = 0.9 + texture[nuclei]
    body = (rows - 100) ** 2 + (cols - 150) ** 2 <= 14**2
    dab[body] = 0.3
    dab += rng.normal(0, 0.01, dab.shape)
    far_from_lines = ~morphology.dilation(line, morphology.disk(4))
    return dab.astype(np.float32), crest & ~nuclei & ~body, nuclei & far_from_lines, body & far_from_lines


def test_dab_ridges_find_membranes_not_nuclei_or_stained_bodies():
    """Drawn truth (:func:`_membrane_scene`): the membrane crests are ridges, the inside of a
    brown nucleus (textured, on a high level) and of a stained cell body is not."""
    dab, crest, nuclei, body = _membrane_scene()
    ridges = segment.dab_ridges(dab, mpp=0.5).astype(bool)
    inner = np.zeros_like(crest)
    inner[2:-2, 2:-2] = crest[2:-2, 2:-2]
    assert ridges[inner].mean() >= 0.95
    assert ridges[nuclei].mean() <= 0.02
    assert ridges[body].mean() <= 0.02


@pytest.mark.parametrize("seed", [0, 1])
def test_dab_ridges_match_reference(seed):
    """Reference: reference.dab_ridges (scipy Gaussian and grey opening in float64); the
    opening runs on the OD grid (2.4e-4 OD steps) and the Gaussian in float32, so pixels on a
    decision edge may differ: at most 0.2% of pixels."""
    dab, _, _, _ = _membrane_scene(seed)
    ours = segment.dab_ridges(dab, mpp=0.5).astype(bool)
    expected = reference.dab_ridges(dab, mpp=0.5)
    assert (ours != expected).mean() <= 0.002
    assert ours.sum() > 1000


def test_without_ridges_matches_reference_and_keeps_nuclei():
    """Reference: reference.reference_pipeline_ridges (scipy opening, 3 x 3 dilation). A
    hematoxylin honeycomb under the DAB membranes is lowered to the cytoplasm's level; a
    hematoxylin nucleus away from the ridges is untouched."""
    dab, crest, _, _ = _membrane_scene()
    rows, cols = np.indices(dab.shape)
    hem = np.full(dab.shape, 0.03, np.float32)
    hem[crest] = 0.12  # the membranes' leak into hematoxylin
    nucleus = (rows - 48) ** 2 + (cols - 72) ** 2 <= 6**2  # inside one cell of the honeycomb
    hem[nucleus] = 0.25
    ours, ridges = segment.hematoxylin_and_ridges(hem, dab, mpp=0.5)
    expected, expected_ridges = reference.reference_pipeline_ridges(hem, dab, mpp=0.5)
    same = ridges.astype(bool) == expected_ridges
    np.testing.assert_allclose(ours[same], expected[same], atol=1e-3)
    inner = crest.copy()
    inner[:3], inner[-3:], inner[:, :3], inner[:, -3:] = False, False, False, False
    assert np.median(ours[inner]) <= 0.035
    np.testing.assert_array_equal(ours[nucleus], hem[nucleus])
    np.testing.assert_array_equal(segment.without_ridges(hem, np.zeros(hem.shape, np.uint8), mpp=0.5), hem)


def test_ridge_codes_are_band_and_ring_on_ridges(tile):
    """Reference: reference.reference_pipeline_compartments with the same ridges (band -> 5,
    ring -> 6; nucleus and cytoplasm unchanged)."""
    nuclei = tile.nucleus_labels
    cells = segment.expand_cells(nuclei, mpp=tile.mpp)
    ridges = (np.random.default_rng(3).random(cells.shape) < 0.2).astype(np.uint8)
    codes, _ = segment.compartments(cells, nuclei, mpp=tile.mpp, band_um=1.0, capture_um=2.0, ridges=ridges)
    plain, _ = segment.compartments(cells, nuclei, mpp=tile.mpp, band_um=1.0, capture_um=2.0)
    _, expected, _ = reference.reference_pipeline_compartments(nuclei, mpp=tile.mpp, band_um=1.0, capture_um=2.0,
                                                               ridges=ridges)
    assert {5, 6} <= set(np.unique(codes))
    np.testing.assert_array_equal(np.where(codes >= 5, codes - 2, codes), plain)
    np.testing.assert_array_equal(codes == 5, (plain == MEMBRANE) & (ridges == 1))
    with pytest.raises(ValueError, match="ridges shape"):
        segment.compartments(cells, nuclei, mpp=tile.mpp, ridges=ridges[1:])
    assert (codes == expected).mean() > 0.99  # the reference's band is its own brute force


def _brown_nucleus_scene():
    """A brown nucleus (DAB 1.0 OD, radius 8 px) whose hematoxylin outline covers only its
    upper 11 rows, and a blue nucleus (DAB 0) inside a cell body stained 0.6 OD (radius 14 px)."""
    rows, cols = np.indices((80, 120))
    dab = np.zeros(rows.shape, np.float32)
    brown_blob = (rows - 40) ** 2 + (cols - 30) ** 2 <= 8**2
    dab[brown_blob] = 1.0
    body = (rows - 40) ** 2 + (cols - 85) ** 2 <= 14**2
    dab[body] = 0.6
    labels = np.zeros(rows.shape, np.int32)
    labels[brown_blob & (rows <= 42)] = 1  # the part hematoxylin found; the rest within 3 um
    blue = (rows - 40) ** 2 + (cols - 85) ** 2 <= 6**2
    labels[blue] = 2
    dab[blue] = 0.0
    return labels, dab, brown_blob, body


def test_brown_nucleus_takes_its_whole_outline_and_a_stained_body_does_not():
    """Drawn truth: the brown nucleus's lower half joins it; the blue nucleus in a stained
    cell body keeps its own outline."""
    labels, dab, brown_blob, body = _brown_nucleus_scene()
    grown = segment.brown_outlines(labels, dab, mpp=0.5, sigma_um=1.5)
    assert (grown[brown_blob] == 1).mean() >= 0.97
    np.testing.assert_array_equal(grown == 2, labels == 2)
    assert not (grown[body & (labels == 0)] > 0).any()


def test_brown_outlines_match_reference(tile):
    """Reference: reference.brown_outlines (skimage expand_labels, scipy Gaussian) on the
    generator's nuclei with a brown share of them; pixels on the DAB level's edge may differ."""
    labels = tile.nucleus_labels
    rng = np.random.default_rng(4)
    dab = rng.normal(0.05, 0.02, labels.shape).astype(np.float32)
    brown = rng.random(labels.max() + 1) < 0.4
    blobs = segment.expand_cells(labels, mpp=tile.mpp, expansion_um=2.0)
    dab[brown[blobs] & (blobs > 0)] += 0.8
    ours = segment.brown_outlines(labels, dab, mpp=tile.mpp, sigma_um=1.5)
    expected = reference.brown_outlines(labels, dab, mpp=tile.mpp, sigma_um=1.5)
    assert (ours != labels).sum() > 500
    assert (ours != expected).mean() <= 0.001
