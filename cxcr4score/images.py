"""One image file: its format, checks of its layout and colour space, and level 0 read whole
(TIFF family with tifffile, PNG / JPEG with imageio; the other slide formats are opened by
:func:`cxcr4score.slide_reader.open_slide` with OpenSlide or slideio).

Coordinate planes follow the house style: ``l0_`` is level-0 (full resolution) pixels of the
slide file, and ``mpp`` is micrometres per pixel. Regions of large pyramids are read with
:mod:`cxcr4score.slide_reader`.
"""

from __future__ import annotations

import logging
import os
import warnings
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import tifffile
from PIL import Image

from .errors import InputError
from .pixel_size import png_mpp, tiff_mpp


#: Suffixes read with tifffile (TIFF-based slide formats; OpenSlide when tifffile cannot).
TIFF_SUFFIXES = frozenset({".tif", ".tiff", ".svs", ".ndpi", ".scn", ".bif"})
#: Suffixes read with imageio (small tiles and exports).
RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
#: Suffixes read with OpenSlide only: MIRAX, Hamamatsu VMS / VMU, Sakura, Zeiss, DICOM.
OPENSLIDE_SUFFIXES = frozenset({".mrxs", ".vms", ".vmu", ".svslide", ".czi", ".dcm"})
#: Suffixes read with slideio (Olympus VSI).
SLIDEIO_SUFFIXES = frozenset({".vsi"})
#: Every suffix treated as a slide image when scanning a folder (lower case).
IMAGE_SUFFIXES = TIFF_SUFFIXES | RASTER_SUFFIXES | OPENSLIDE_SUFFIXES | SLIDEIO_SUFFIXES
#: Most pixels of a PNG or JPEG: they are decoded whole (3 bytes a pixel), so larger images
#: belong in a tiled pyramidal TIFF. Checked from the header, before any pixel is decoded.
MAX_RASTER_PIXELS = 2**30
#: Most pixels of a TIFF's coarsest level: the slide's overview is read from it, so without
#: reduced-resolution levels every pixel of a huge level 0 would be decoded (a 200,000^2 px
#: image is 40 Gpix, hours). Checked from the metadata, before any pixel is decoded.
MAX_COARSEST_LEVEL_PIXELS = 2**31
#: PIL modes of PNG / JPEG that are read as RGB(A) (palette and grey-with-alpha are converted,
#: grey is refused by the layout check as it is for TIFF).
_RASTER_MODES = {"RGB", "RGBA", "P", "PA", "L", "LA", "I", "I;16", "1"}

# PIL's decompression-bomb limit (89 Mpix by default) is ours: an image up to it is read
# (check_raster_header refuses the larger ones before decoding).
Image.MAX_IMAGE_PIXELS = MAX_RASTER_PIXELS
# tifffile reports odd files through the logging module; our error already names the file.
logging.getLogger("tifffile").addHandler(logging.NullHandler())


@dataclass(frozen=True)
class SlideImage:
    """An RGB image and its pixel size as read from a file.

    Attributes
    ----------
    rgb : (M, N, 3) ndarray of uint8
        C-contiguous pixels (alpha, if any, composited over white).
    mpp : float or None
        Micrometres per pixel from the file's metadata; None when the file does not say.
    mpp_source : {'ome', 'tiff', 'svs', 'png'} or None
        Which metadata gave ``mpp``.
    path : Path
        The file read.
    """

    rgb: np.ndarray
    mpp: float | None
    mpp_source: str | None
    path: Path


def read_image(path: str | os.PathLike) -> SlideImage:
    """Read level 0 of an image and its pixel size.

    Parameters
    ----------
    path : str or path-like
        PNG, JPEG, TIFF, OME-TIFF, or a tiled whole-slide TIFF (SVS, NDPI, SCN, BIF).

    Returns
    -------
    SlideImage
        Pixels as C-contiguous (M, N, 3) uint8, with the pixel size from metadata.

    Raises
    ------
    InputError
        The file is missing, of an unsupported type, unreadable or corrupt, not 8-bit RGB(A),
        or has anisotropic pixels. The message names the file.

    Notes
    -----
    TIFF-based files: the largest series (by level-0 area, first on ties) is read, which is the
    first series for SVS/NDPI/OME and skips label and macro images. Only level 0 is read.
    Pixel size is taken from OME-XML, else the Aperio description, else the TIFF resolution
    tags (ignored without a unit, or at 1 pixel per unit or the 72 / 96 dpi placeholders, in
    inches or centimetres); PNG from ``pHYs`` in pixels per metre (same placeholders ignored);
    JPEG carries no trustworthy pixel size and gives None. Other slide formats are read by
    region with :func:`cxcr4score.slide_reader.open_slide`.
    """
    path = _tiff_or_raster(existing_image_path(path))
    try:
        if path.suffix.lower() in RASTER_SUFFIXES:
            return _read_raster(path)
        return _read_tiff(path)
    except InputError:
        raise
    except Exception as exc:  # any reader failure becomes one plain line naming the file
        raise InputError([unreadable(path, exc)]) from None


def existing_image_path(path: str | os.PathLike) -> Path:
    """``path`` as a Path; InputError unless it is an existing file of a readable image type."""
    path = Path(path)
    if not path.exists():
        raise InputError([f"{path}: file not found"])
    if path.is_dir():
        raise InputError([f"{path}: is a folder, not an image file"])
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        raise InputError([
            f"{path}: unsupported image type '{path.suffix}'; "
            f"supported: {', '.join(sorted(IMAGE_SUFFIXES))}"
        ])
    return path


def _tiff_or_raster(path: Path) -> Path:
    if path.suffix.lower() not in TIFF_SUFFIXES | RASTER_SUFFIXES:
        raise InputError([f"{path}: a '{path.suffix}' slide is read by region with slide_reader.open_slide, "
                          "not whole"])
    return path


def describe(exc: BaseException) -> str:
    """What a reader raised, on one line: ``"<exception type>: <message>"``."""
    message = " ".join(str(exc).split()) or "no details given"
    return f"{type(exc).__name__}: {message}"


def unreadable(path: Path, exc: BaseException) -> str:
    """One line naming the file and what the reader said, for an InputError."""
    return f"{path}: cannot read the image ({describe(exc)})"


def inspect_image(path: Path) -> dict:
    """``width``, ``height``, ``mpp``, ``mpp_source`` and ``format`` of an image, from its metadata
    and one decoded tile or strip (TIFF) or the whole image (PNG, JPEG); InputError if unusable."""
    path = _tiff_or_raster(existing_image_path(path))
    suffix = path.suffix.lower()
    if suffix in RASTER_SUFFIXES:
        image = read_image(path)
        height, width = image.rgb.shape[:2]
        fmt = "png" if suffix == ".png" else "jpeg"
        return _info(width, height, image.mpp, image.mpp_source, fmt)
    try:
        with tifffile.TiffFile(path) as tif:
            level, shape, _, mpp, source = checked_tiff_level(path, tif)
            next(level.keyframe.segments())  # decode one tile: catches bad codecs and data
            return _info(shape[1], shape[0], mpp, source, tiff_format(tif))
    except InputError:
        raise
    except Exception as exc:
        raise InputError([unreadable(path, exc)]) from None


def _info(width: int, height: int, mpp: float | None, source: str | None, fmt: str) -> dict:
    return {"width": int(width), "height": int(height), "mpp": mpp, "mpp_source": source,
            "format": fmt}


def check_raster_header(path: Path) -> None:
    """Refuse a PNG / JPEG too large to decode whole, or not in RGB, from its header alone."""
    try:
        with warnings.catch_warnings():  # PIL's own bomb warning: the limit is ours, below
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(path) as header:  # reads the header only
                width, height = header.size
                mode = header.mode
    except Image.DecompressionBombError:  # PIL refuses beyond twice the limit, before we can
        raise InputError([f"{path}: its header gives more than {2 * MAX_RASTER_PIXELS:,} px, too large to read "
                          "as PNG / JPEG; save it as a tiled pyramidal TIFF"]) from None
    if width * height > MAX_RASTER_PIXELS:
        raise InputError([f"{path}: {width} x {height} px is too large to read as PNG / JPEG (at most "
                          f"{MAX_RASTER_PIXELS:,} px, decoded whole); save it as a tiled pyramidal TIFF"])
    if mode not in _RASTER_MODES:
        raise InputError([f"{path}: colour mode {mode} is not RGB; a brightfield RGB image is needed "
                          "(convert it to RGB)"])


def _read_raster(path: Path) -> SlideImage:
    check_raster_header(path)
    with iio.imopen(path, "r", plugin="pillow") as image_file:
        pixels = image_file.read(index=0)
        meta = image_file.metadata(index=0)
    check_rgb_layout(path, pixels.shape, pixels.dtype)
    mpp, source = png_mpp(path, meta["dpi"]) if path.suffix.lower() == ".png" and "dpi" in meta else (None, None)
    return SlideImage(to_rgb(pixels), mpp, source, path)


def _read_tiff(path: Path) -> SlideImage:
    with tifffile.TiffFile(path) as tif:
        level, _, order, mpp, source = checked_tiff_level(path, tif)
        pixels = level.asarray()
    squeezed = pixels.reshape([n for n, a in zip(level.shape, level.axes) if n > 1 or a in "YX"])
    return SlideImage(to_rgb(squeezed.transpose(order)), mpp, source, path)


def checked_tiff_level(path: Path, tif: tifffile.TiffFile) -> tuple:
    """Level 0 of the main series, checked from metadata only.

    Returns ``(series_level, (M, N, C) shape, transpose order, mpp, mpp_source)``; raises
    InputError when the level is not one 8-bit RGB(A) plane or its pixels are not square.
    """
    index, series_level = tiff_level(tif, 0)
    shape, order = yxs_layout(path, series_level.shape, series_level.axes)
    check_rgb_layout(path, shape, series_level.dtype)
    coarsest = tif.series[index].levels[-1]
    check_coarsest_level(path, shape, int(np.prod([n for n, a in zip(coarsest.shape, coarsest.axes) if a in "YX"])))
    check_photometric(path, series_level)
    mpp, source = tiff_mpp(path, tif, index, series_level)
    return series_level, shape, order, mpp, source


def check_coarsest_level(path: Path, shape: tuple, coarsest_px: int) -> None:
    """Refuse a slide whose coarsest level (the overview is read from it) has more than
    :data:`MAX_COARSEST_LEVEL_PIXELS` pixels; ``shape`` is level 0's ``(rows, cols, ...)``."""
    if coarsest_px > MAX_COARSEST_LEVEL_PIXELS:
        raise InputError([f"{path}: {shape[1]} x {shape[0]} px with no reduced-resolution level under "
                          f"{MAX_COARSEST_LEVEL_PIXELS:,} px: its overview would decode {coarsest_px / 1e9:.1f} "
                          "Gpix; save it as a tiled pyramidal TIFF (e.g. vips tiffsave --tile --pyramid)"])


def tiff_level(tif: tifffile.TiffFile, level: int = 0) -> tuple[int, tifffile.TiffPageSeries]:
    """Return the main series' index and one of its pyramid levels.

    The main series is the one with the largest level-0 area (the first of equal ones), which
    skips the label, macro and thumbnail images of whole-slide files.
    """
    def area(index):
        dims = dict(zip(tif.series[index].axes, tif.series[index].shape))
        return dims.get("Y", 0) * dims.get("X", 0)

    index = max(range(len(tif.series)), key=area)  # max() keeps the first of equal areas
    return index, tif.series[index].levels[level]


def yxs_layout(path: Path, shape: tuple, axes: str) -> tuple[tuple, tuple]:
    """Plan how to turn a tifffile series into (Y, X[, samples]).

    Returns the target shape and the transpose order after dropping length-1 axes other than
    Y and X.
    """
    kept = [(a, n) for a, n in zip(axes, shape) if n > 1 or a in "YX"]
    names = "".join(a for a, _ in kept)
    if "".join(sorted(names)) not in ("XY", "SXY", "CXY"):
        raise InputError([
            f"{path}: unexpected image layout (axes {axes}, shape {tuple(shape)}); "
            "expected a single RGB plane, not a stack of planes"
        ])
    order = tuple(names.index(a) for a in "YX") + tuple(i for i, a in enumerate(names) if a in "SC")
    return tuple(kept[i][1] for i in order), order


def check_rgb_layout(path: Path, shape: tuple, dtype: np.dtype) -> None:
    channels = shape[2] if len(shape) == 3 else 1
    if len(shape) == 3 and channels in (3, 4) and np.dtype(dtype) == np.uint8:
        return
    kind = "grayscale" if len(shape) == 2 else f"{channels}-channel"
    raise InputError([
        f"{path}: not an 8-bit RGB image ({kind}, shape {tuple(shape)}, dtype {np.dtype(dtype)}); "
        "a brightfield RGB image of shape (M, N, 3) or (M, N, 4) with dtype uint8 is needed"
    ])


def check_photometric(path: Path, level: tifffile.TiffPageSeries) -> None:
    photometric = tifffile.PHOTOMETRIC(level.keyframe.photometric).name
    if photometric not in ("RGB", "YCBCR"):
        raise InputError([f"{path}: colour space {photometric} is not RGB; a brightfield RGB image is needed"])


def to_rgb(pixels: np.ndarray) -> np.ndarray:
    """Return C-contiguous (M, N, 3) uint8, compositing straight alpha over white."""
    if pixels.shape[2] == 3:
        return np.ascontiguousarray(pixels)
    alpha = pixels[..., 3:4].astype(np.uint16)
    blended = (pixels[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(blended.astype(np.uint8))


def tiff_format(tif: tifffile.TiffFile) -> str:
    """The TIFF flavour tifffile recognises: 'ome-tiff', 'svs', 'ndpi', 'scn', 'bif' or 'tiff'."""
    for flag, name in (("is_ome", "ome-tiff"), ("is_svs", "svs"), ("is_ndpi", "ndpi"),
                       ("is_scn", "scn"), ("is_bif", "bif")):
        if getattr(tif, flag, False):
            return name
    return "tiff"
