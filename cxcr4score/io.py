"""Input and output at the edges: images, pixel size, sample sheets, slide folders, tables.

Everything a user hands us is checked here, and every problem is reported in plain words
naming the file (or sheet row) through :class:`InputError`, never as a library traceback.

Coordinate planes follow the house style: ``l0_`` is level-0 (full resolution) pixels of the
slide file, and ``mpp`` is micrometres per pixel.
"""

from __future__ import annotations

import csv
import datetime as _dt
import math
import operator
import os
import re
import tempfile
import threading
import warnings
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import imageio.v3 as iio
import numpy as np
import pandas as pd
import tifffile

__all__ = [
    "IMAGE_SUFFIXES",
    "SHEET_COLUMNS",
    "InputError",
    "Level",
    "SlideImage",
    "SlideReader",
    "image_stem",
    "load_slides",
    "open_slide",
    "read_image",
    "read_sheet",
    "resolve_mpp",
    "sanitise_id",
    "slides_from_folder",
    "validate_slide",
    "write_table",
]

#: Suffixes read with tifffile (TIFF-based slide formats).
_TIFF_SUFFIXES = frozenset({".tif", ".tiff", ".svs", ".ndpi", ".scn", ".bif"})
#: Suffixes read with imageio (small tiles and exports).
_RASTER_SUFFIXES = frozenset({".png", ".jpg", ".jpeg"})
#: Slide formats recognised in folders but not readable without OpenSlide/Bio-Formats yet.
_UNSUPPORTED_SUFFIXES = {".mrxs": "MIRAX (.mrxs)", ".vsi": "Olympus (.vsi)"}
#: Every suffix treated as a slide image when scanning a folder (lower case).
IMAGE_SUFFIXES = _TIFF_SUFFIXES | _RASTER_SUFFIXES | frozenset(_UNSUPPORTED_SUFFIXES)

#: Sheet columns in output order: required first, then optional.
SHEET_COLUMNS = ("patient_id", "slide_id", "path", "mpp", "roi", "specimen", "collected")
_REQUIRED_COLUMNS = SHEET_COLUMNS[:3]
_SLIDE_ID_RE = re.compile(r"[A-Za-z0-9._-]+")
_UNSAFE_CHARS_RE = re.compile(r"[^A-Za-z0-9._-]")

#: x and y pixel sizes may differ by this fraction before an image counts as anisotropic.
ANISOTROPY_TOLERANCE = 0.01
#: An image within this fraction of the analysis pixel size is used as it is (DESIGN section 3).
MPP_TOLERANCE = 0.05
#: Resolutions (dots per inch) that image software writes as placeholders, not measurements.
_PLACEHOLDER_DPI = (72.0, 96.0)
_MICRONS_PER_INCH = 25400.0
_MICRONS_PER_CM = 10000.0
#: OME-XML length units -> micrometres (units without a physical length are not listed).
_OME_UNIT_UM = {
    "µm": 1.0, "μm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "Å": 1e-4, "pm": 1e-6,
    "mm": 1e3, "cm": 1e4, "m": 1e6, "in": _MICRONS_PER_INCH,
}
_APERIO_MPP_RE = re.compile(r"\|\s*MPP\s*=\s*([-+0-9.eE]+)")


class InputError(Exception):
    """Bad user input: every problem found, each naming the file or sheet row.

    Parameters
    ----------
    problems : list of str
        One plain-language sentence per problem.

    Notes
    -----
    ``str(error)`` lists every problem on its own line, ready to print without a traceback.
    """

    def __init__(self, problems: list[str]):
        self.problems = list(problems)
        super().__init__("\n".join(self.problems))


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


# --------------------------------------------------------------------------- images


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
    JPEG carries no trustworthy pixel size and gives None.
    """
    path = _existing_image_path(path)
    try:
        if path.suffix.lower() in _RASTER_SUFFIXES:
            return _read_raster(path)
        return _read_tiff(path)
    except InputError:
        raise
    except Exception as exc:  # any reader failure becomes one plain line naming the file
        raise InputError([_unreadable(path, exc)]) from None


def validate_slide(path: str | os.PathLike, *, roi: str | os.PathLike = "") -> tuple[dict, list[str]]:
    """Check that a slide (and its ROI file) can be read, without decoding all pixels.

    Parameters
    ----------
    path : str or path-like
        The slide image.
    roi : str or path-like, optional
        A QuPath GeoJSON file of annotations; '' for none.

    Returns
    -------
    info : dict
        ``width``, ``height`` (level-0 pixels), ``mpp``, ``mpp_source`` and ``format``
        (e.g. 'ome-tiff', 'svs', 'ndpi', 'tiff', 'png', 'jpeg'); None where unknown.
    problems : list of str
        Every problem found, each naming the file; empty when the slide is usable.

    Notes
    -----
    TIFF-based files are checked from their metadata plus one decoded tile or strip (which
    catches unknown compressions and corrupt data early). PNG and JPEG files are small and are
    read in full.
    """
    from cxcr4score.roi import read_roi  # roi imports InputError from this module

    info = {"width": None, "height": None, "mpp": None, "mpp_source": None, "format": None}
    problems = []
    try:
        info.update(_inspect_image(Path(path)))
    except InputError as exc:
        problems.extend(exc.problems)
    if str(roi):
        try:
            read_roi(roi)
        except InputError as exc:
            problems.extend(exc.problems)
    return info, problems


def _existing_image_path(path: str | os.PathLike) -> Path:
    path = Path(path)
    if not path.exists():
        raise InputError([f"{path}: file not found"])
    if path.is_dir():
        raise InputError([f"{path}: is a folder, not an image file"])
    suffix = path.suffix.lower()
    if suffix in _UNSUPPORTED_SUFFIXES:
        raise InputError([
            f"{path}: {_UNSUPPORTED_SUFFIXES[suffix]} slides cannot be read yet; "
            "convert the slide to OME-TIFF (for example with QuPath or bfconvert)"
        ])
    if suffix not in IMAGE_SUFFIXES:
        raise InputError([
            f"{path}: unsupported image type '{path.suffix}'; "
            f"supported: {', '.join(sorted(_TIFF_SUFFIXES | _RASTER_SUFFIXES))}"
        ])
    return path


def _unreadable(path: Path, exc: BaseException) -> str:
    message = " ".join(str(exc).split()) or "no details given"
    return f"{path}: cannot read the image ({type(exc).__name__}: {message})"


def _inspect_image(path: Path) -> dict:
    path = _existing_image_path(path)
    suffix = path.suffix.lower()
    if suffix in _RASTER_SUFFIXES:
        image = read_image(path)
        height, width = image.rgb.shape[:2]
        fmt = "png" if suffix == ".png" else "jpeg"
        return _info(width, height, image.mpp, image.mpp_source, fmt)
    try:
        with tifffile.TiffFile(path) as tif:
            level, shape, _, mpp, source = _checked_tiff_level(path, tif)
            next(level.keyframe.segments())  # decode one tile: catches bad codecs and data
            return _info(shape[1], shape[0], mpp, source, _tiff_format(tif))
    except InputError:
        raise
    except Exception as exc:
        raise InputError([_unreadable(path, exc)]) from None


def _info(width: int, height: int, mpp: float | None, source: str | None, fmt: str) -> dict:
    return {"width": int(width), "height": int(height), "mpp": mpp, "mpp_source": source,
            "format": fmt}


def _read_raster(path: Path) -> SlideImage:
    with iio.imopen(path, "r", plugin="pillow") as image_file:
        pixels = image_file.read(index=0)
        meta = image_file.metadata(index=0)
    _check_rgb(path, pixels.shape, pixels.dtype)
    mpp, source = None, None
    if path.suffix.lower() == ".png" and "dpi" in meta:
        x_dpi, y_dpi = (float(v) for v in meta["dpi"])
        if not (_is_placeholder_dpi(x_dpi) or x_dpi <= 0 or y_dpi <= 0):
            mpp = _isotropic(path, _MICRONS_PER_INCH / x_dpi, _MICRONS_PER_INCH / y_dpi, "PNG pHYs")
            source = "png"
    return SlideImage(_to_rgb(pixels), mpp, source, path)


def _read_tiff(path: Path) -> SlideImage:
    with tifffile.TiffFile(path) as tif:
        level, _, order, mpp, source = _checked_tiff_level(path, tif)
        pixels = level.asarray()
    squeezed = pixels.reshape([n for n, a in zip(level.shape, level.axes) if n > 1 or a in "YX"])
    return SlideImage(_to_rgb(squeezed.transpose(order)), mpp, source, path)


def _checked_tiff_level(path: Path, tif: tifffile.TiffFile) -> tuple:
    """Level 0 of the main series, checked from metadata only.

    Returns ``(series_level, (M, N, C) shape, transpose order, mpp, mpp_source)``; raises
    InputError when the level is not one 8-bit RGB(A) plane or its pixels are not square.
    """
    index, series_level = _tiff_level(tif, 0)
    shape, order = _yxs_layout(path, series_level.shape, series_level.axes)
    _check_rgb(path, shape, series_level.dtype)
    _check_photometric(path, series_level)
    mpp, source = _tiff_mpp(path, tif, index, series_level)
    return series_level, shape, order, mpp, source


def _tiff_level(tif: tifffile.TiffFile, level: int = 0) -> tuple[int, tifffile.TiffPageSeries]:
    """Return the main series' index and one of its pyramid levels.

    The main series is the one with the largest level-0 area (the first of equal ones), which
    skips the label, macro and thumbnail images of whole-slide files.
    """
    def area(index):
        dims = dict(zip(tif.series[index].axes, tif.series[index].shape))
        return dims.get("Y", 0) * dims.get("X", 0)

    index = max(range(len(tif.series)), key=area)  # max() keeps the first of equal areas
    return index, tif.series[index].levels[level]


def _yxs_layout(path: Path, shape: tuple, axes: str) -> tuple[tuple, tuple]:
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


def _check_rgb(path: Path, shape: tuple, dtype: np.dtype) -> None:
    channels = shape[2] if len(shape) == 3 else 1
    if len(shape) == 3 and channels in (3, 4) and np.dtype(dtype) == np.uint8:
        return
    kind = "grayscale" if len(shape) == 2 else f"{channels}-channel"
    raise InputError([
        f"{path}: not an 8-bit RGB image ({kind}, shape {tuple(shape)}, dtype {np.dtype(dtype)}); "
        "a brightfield RGB image of shape (M, N, 3) or (M, N, 4) with dtype uint8 is needed"
    ])


def _check_photometric(path: Path, level: tifffile.TiffPageSeries) -> None:
    photometric = tifffile.PHOTOMETRIC(level.keyframe.photometric).name
    if photometric not in ("RGB", "YCBCR"):
        raise InputError([f"{path}: colour space {photometric} is not RGB; a brightfield RGB image is needed"])


def _to_rgb(pixels: np.ndarray) -> np.ndarray:
    """Return C-contiguous (M, N, 3) uint8, compositing straight alpha over white."""
    if pixels.shape[2] == 3:
        return np.ascontiguousarray(pixels)
    alpha = pixels[..., 3:4].astype(np.uint16)
    blended = (pixels[..., :3] * alpha + 255 * (255 - alpha) + 127) // 255
    return np.ascontiguousarray(blended.astype(np.uint8))


def _tiff_format(tif: tifffile.TiffFile) -> str:
    for flag, name in (("is_ome", "ome-tiff"), ("is_svs", "svs"), ("is_ndpi", "ndpi"),
                       ("is_scn", "scn"), ("is_bif", "bif")):
        if getattr(tif, flag, False):
            return name
    return "tiff"


#: TIFF compression codes of JPEG (tifffile passes them the JPEG tables and header).
_JPEG_COMPRESSIONS = frozenset({6, 7, 33007, 34892})


def _segment_layout(level: tifffile.TiffPageSeries, series: tifffile.TiffPageSeries) -> tuple | None:
    """(page, chunk rows, chunk columns, chunks across) when a level is one page of 8-bit RGB
    in contiguous tiles or strips, which :meth:`SlideReader._decode_segments` reads; else None
    (read through the zarr store: several pages, planar samples, alpha, NDPI, transforms)."""
    page = level.keyframe
    tifffile.COMPRESSION(page.compression)  # an unknown compression fails on open, as opening a zarr store does
    if (len(level.pages) != 1 or level.pages[0] is not page or level.axes != "YXS" or tuple(level.shape[2:]) != (3,)
            or level.dtype != np.uint8 or page.planarconfig != 1 or page.imagedepth != 1
            or getattr(page, "is_ndpi", False) or series.transform is not None):
        return None
    (chunk_rows, chunk_cols, _), (_, across, _) = page.chunks, page.chunked
    return page, chunk_rows, chunk_cols, across


# --------------------------------------------------------------------------- regions


@dataclass(frozen=True)
class Level:
    """One pyramid level of a slide.

    Attributes
    ----------
    shape : tuple of int
        ``(rows, cols)`` of the level in its own pixels.
    downsample : float
        Level-0 pixels per pixel of this level: the mean over both axes of the level-0 size
        divided by this level's size (exactly 1.0 for level 0).
    """

    shape: tuple[int, int]
    downsample: float


class SlideReader:
    """Read regions of a slide's pyramid levels without decoding the whole slide.

    Open one reader per process with :func:`open_slide` and close it when done (it is a
    context manager). A reader holds an open file and cannot be pickled: each Snakemake job or
    worker process opens its own.

    Parameters
    ----------
    path : str or path-like
        PNG, JPEG, TIFF, OME-TIFF, or a tiled whole-slide TIFF (SVS, NDPI, SCN, BIF).

    Attributes
    ----------
    path : Path
        The file.
    levels : tuple of Level
        Pyramid levels, finest (level 0) first. PNG and JPEG files have one level.
    mpp : float or None
        Level-0 micrometres per pixel from the file's metadata, by the same rules and sources
        as :func:`read_image`; None when the file does not say.
    mpp_source : {'ome', 'tiff', 'svs', 'png'} or None
        Which metadata gave ``mpp``.

    Raises
    ------
    InputError
        As :func:`read_image`: missing, unsupported, unreadable or corrupt file, not 8-bit
        RGB(A), anisotropic pixels. The message names the file.

    Notes
    -----
    TIFF-based files: the same series as :func:`read_image` (largest level-0 area), its
    pyramid levels from tifffile (``series.levels``; thumbnail, label and macro images are
    separate series, not levels). A region read decodes only the tiles or strips it touches:
    a level stored as one page of contiguous 8-bit RGB tiles or strips (most slides) with
    tifffile's segment decoder, straight into the output, on the job's thread count (Numba's);
    any other level through a tifffile zarr store opened the first time it is read (level 0 on
    open). Unknown compressions fail on open. Missing (sparse) tiles read as the file's
    no-data value, as in :func:`read_image`. PNG and JPEG files are small: they are decoded
    once on open with :func:`read_image` and sliced.

    Examples
    --------
    >>> with open_slide("slide.svs") as slide:  # doctest: +SKIP
    ...     tile = slide.read_region(0, top=1024, left=2048, height=512, width=512)
    """

    def __init__(self, path: str | os.PathLike):
        self.path = _existing_image_path(path)
        self._rgb = None  # whole image of a PNG / JPEG
        self._tif = None
        self._series = None
        self._tiff_levels: list = []  # tifffile level series, finest first
        self._layouts: list = []  # per level: (kept-axis mask, transpose order)
        self._arrays: dict = {}  # level -> zarr array, opened lazily
        self._stores: list = []
        self._lock = threading.Lock()
        self._closed = False
        try:
            if self.path.suffix.lower() in _RASTER_SUFFIXES:
                self._open_raster()
            else:
                self._open_tiff()
        except BaseException as exc:
            self.close()
            if isinstance(exc, (InputError, MemoryError)) or not isinstance(exc, Exception):
                raise
            raise InputError([_unreadable(self.path, exc)]) from None

    def _open_raster(self) -> None:
        image = read_image(self.path)
        self._rgb = image.rgb
        self._segment_layouts = [None]
        self.levels = (Level((image.rgb.shape[0], image.rgb.shape[1]), 1.0),)
        self.mpp, self.mpp_source = image.mpp, image.mpp_source

    def _open_tiff(self) -> None:
        self._tif = tifffile.TiffFile(self.path)
        level0, _, _, self.mpp, self.mpp_source = _checked_tiff_level(self.path, self._tif)
        index, _ = _tiff_level(self._tif, 0)
        self._series = self._tif.series[index]
        # finest first, whatever order the file stores them in (stable for equal areas)
        shapes = []
        for tiff_index, level in enumerate(self._series.levels):
            shape, order = _yxs_layout(self.path, level.shape, level.axes)
            _check_rgb(self.path, shape, level.dtype)
            _check_photometric(self.path, level)
            keep = tuple(n > 1 or a in "YX" for n, a in zip(level.shape, level.axes))
            shapes.append((shape[:2], tiff_index, level, (keep, order)))
        shapes.sort(key=lambda item: -item[0][0] * item[0][1])
        if shapes[0][2] is not level0:
            raise InputError([f"{self.path}: the first pyramid level is not the largest; "
                              "the pyramid cannot be read"])
        rows0, cols0 = shapes[0][0]
        self.levels = tuple(
            Level((int(rows), int(cols)), 1.0 if i == 0 else (rows0 / rows + cols0 / cols) / 2)
            for i, ((rows, cols), *_) in enumerate(shapes)
        )
        self._tiff_index = [tiff_index for _, tiff_index, _, _ in shapes]
        self._tiff_levels = [level for _, _, level, _ in shapes]
        self._layouts = [layout for *_, layout in shapes]
        self._segment_layouts = [_segment_layout(level, self._series) for level in self._tiff_levels]
        if self._segment_layouts[0] is None:
            self._tiff_array(0)

    def _tiff_array(self, level: int):
        """The zarr array of one level, opening its store on first use."""
        import zarr  # ~0.3 s to import; only region reads of TIFF files need it

        with self._lock:
            if level not in self._arrays:
                store = self._series.aszarr(level=self._tiff_index[level])
                self._stores.append(store)
                array = zarr.open_array(store, mode="r")
                expected = tuple(self._tiff_levels[level].shape)
                if tuple(array.shape) != expected:
                    raise InputError([f"{self.path}: level {level} has shape {tuple(array.shape)} "
                                      f"as an array but {expected} in its metadata"])
                self._arrays[level] = array
            return self._arrays[level]

    def read_region(self, level: int, top: int, left: int, height: int, width: int) -> np.ndarray:
        """Read a rectangle of one pyramid level.

        Parameters
        ----------
        level : int
            Index into :attr:`levels` (0 is full resolution).
        top, left : int
            First row and column in that level's pixels; may be negative.
        height, width : int
            Size of the region in that level's pixels; non-negative.

        Returns
        -------
        (height, width, 3) ndarray of uint8
            C-contiguous RGB of the level's pixels ``[top:top + height, left:left + width]``
            (alpha composited over white); parts outside the image are white (255).

        Raises
        ------
        ValueError
            A level out of range, a negative size, a non-integer argument, or a closed reader.
        InputError
            The pixels cannot be decoded (corrupt data, unknown compression); names the file.

        Notes
        -----
        Only the tiles or strips that overlap the region are decoded.
        """
        level, top, left, height, width = self._checked_region(level, top, left, height, width)
        rows, cols = self.levels[level].shape
        r0, r1 = max(top, 0), min(top + height, rows)
        c0, c1 = max(left, 0), min(left + width, cols)
        inside = (r0, r1, c0, c1) == (top, top + height, left, left + width)
        out = np.empty((height, width, 3), np.uint8) if inside else np.full((height, width, 3), 255, np.uint8)
        if r0 >= r1 or c0 >= c1:
            return out
        target = (slice(r0 - top, r1 - top), slice(c0 - left, c1 - left))
        if self._rgb is not None:
            out[target] = self._rgb[r0:r1, c0:c1]
            return out
        try:
            if self._segment_layouts[level] is not None:
                self._decode_segments(level, r0, r1, c0, c1, out[target])
            else:
                out[target] = self._read_tiff_pixels(level, r0, r1, c0, c1)
        except (InputError, MemoryError):
            raise
        except Exception as exc:  # decoding errors surface here, not on open
            raise InputError([_unreadable(self.path, exc)]) from None
        return out

    def _checked_region(self, *values) -> tuple[int, ...]:
        names = ("level", "top", "left", "height", "width")
        described = ", ".join(f"{n}={v!r}" for n, v in zip(names, values))
        if self._closed:
            raise ValueError(f"{self.path}: read_region on a closed slide ({described})")
        try:
            level, top, left, height, width = (operator.index(v) for v in values)
        except TypeError:
            raise ValueError(f"read_region arguments must be integers, got {described}") from None
        if not 0 <= level < len(self.levels):
            raise ValueError(f"level must be in 0..{len(self.levels) - 1} for {self.path}, "
                             f"got {described}")
        if height < 0 or width < 0:
            raise ValueError(f"height and width must not be negative, got {described}")
        return level, top, left, height, width

    def _decode_segments(self, level: int, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None:
        """Decode the tiles or strips of one page that overlap the region straight into ``out``.

        The zarr store decodes the same segments with the same tifffile decoder, but costs ~1.5x
        the decode time of a whole 2048^2 JPEG-tiled level on its event loop, and decodes on
        tifffile's own thread count; here decoding uses the job's thread count (Numba's).
        """
        import numba

        page, chunk_rows, chunk_cols, across = self._segment_layouts[level]
        indices = [r * across + c for r in range(r0 // chunk_rows, (r1 - 1) // chunk_rows + 1)
                   for c in range(c0 // chunk_cols, (c1 - 1) // chunk_cols + 1)]
        decodeargs = {"_fullsize": page.is_tiled}  # as TiffPage.segments
        if page.compression in _JPEG_COMPRESSIONS:
            decodeargs.update(jpegtables=page.jpegtables, jpegheader=page.jpegheader)
        decode = page.decode

        def place(data_index):
            segment, (_, _, y, x, _), shape = decode(*data_index, **decodeargs)
            ys, ye, xs, xe = max(y, r0), min(y + shape[1], r1), max(x, c0), min(x + shape[2], c1)
            target = out[ys - r0:ye - r0, xs - c0:xe - c0]
            target[...] = page.nodata if segment is None else segment[0, ys - y:ye - y, xs - x:xe - x]

        segments = page.parent.filehandle.read_segments(
            [page.dataoffsets[i] for i in indices], [page.databytecounts[i] for i in indices], indices,
            lock=self._lock, sort=True)
        workers = numba.get_num_threads()
        if workers < 2 or len(indices) < 2:
            for data_index in segments:
                place(data_index)
        else:
            with ThreadPoolExecutor(workers) as executor:
                for _ in executor.map(place, list(segments)):
                    pass

    def _read_tiff_pixels(self, level: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        array = self._tiff_array(level)
        keep, order = self._layouts[level]
        axes = self._tiff_levels[level].axes
        index = tuple(slice(r0, r1) if a == "Y" else slice(c0, c1) if a == "X" else slice(None)
                      for a in axes)
        pixels = np.asarray(array[index])
        squeezed = pixels.reshape([n for n, k in zip(pixels.shape, keep) if k])
        return _to_rgb(squeezed.transpose(order))

    def close(self) -> None:
        """Close the file and its stores; further reads raise ValueError. Safe to repeat."""
        self._closed = True
        self._rgb = None
        self._arrays = {}
        stores, self._stores = self._stores, []
        for store in stores:
            store.close()
        if self._tif is not None:
            self._tif.close()
            self._tif = None

    def __enter__(self) -> SlideReader:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __reduce__(self):
        raise TypeError(f"a SlideReader cannot be pickled ({self.path}); "
                        "open the slide in each process with open_slide(path)")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.levels)} level(s)"
        return f"<SlideReader {str(self.path)!r} {state}>"


def open_slide(path: str | os.PathLike) -> SlideReader:
    """Open a slide for reading regions by pyramid level.

    Parameters
    ----------
    path : str or path-like
        PNG, JPEG, TIFF, OME-TIFF, or a tiled whole-slide TIFF (SVS, NDPI, SCN, BIF).

    Returns
    -------
    SlideReader
        Use as a context manager (or call ``close()``); see :class:`SlideReader`.

    Raises
    ------
    InputError
        The file is missing, of an unsupported type, unreadable or corrupt, not 8-bit RGB(A),
        or has anisotropic pixels. The message names the file.
    """
    return SlideReader(path)


# --------------------------------------------------------------------------- pixel size


def _tiff_mpp(
    path: Path, tif: tifffile.TiffFile, index: int, level: tifffile.TiffPageSeries
) -> tuple[float | None, str | None]:
    """Pixel size of series ``index`` level 0: OME-XML, else Aperio description, else tags."""
    if tif.is_ome:
        xy = _ome_physical_size(tif.ome_metadata, index)
        if xy is not None:
            return _isotropic(path, *xy, "OME-XML PhysicalSizeX/Y"), "ome"
    if tif.is_svs:
        match = _APERIO_MPP_RE.search(level.keyframe.description or "")
        if match and _positive(match.group(1)):
            return float(match.group(1)), "svs"
    xy = _tag_physical_size(level.keyframe)
    if xy is not None:
        return _isotropic(path, *xy, "TIFF XResolution/YResolution"), "tiff"
    return None, None


def _ome_physical_size(xml: str | None, image_index: int) -> tuple[float, float] | None:
    """PhysicalSizeX/Y of one OME Image in micrometres, or None when absent or not a length."""
    try:
        root = ET.fromstring(xml or "")
    except ET.ParseError:
        return None
    pixels = [el for el in root.iter() if el.tag.rsplit("}", 1)[-1] == "Pixels"]
    if not pixels:
        return None
    attrs = pixels[image_index if image_index < len(pixels) else 0].attrib
    sizes = []
    for axis in ("X", "Y"):
        value, unit = attrs.get(f"PhysicalSize{axis}"), attrs.get(f"PhysicalSize{axis}Unit", "µm")
        if not _positive(value) or unit not in _OME_UNIT_UM:
            return None
        sizes.append(float(value) * _OME_UNIT_UM[unit])
    return sizes[0], sizes[1]


def _tag_physical_size(page: tifffile.TiffPage) -> tuple[float, float] | None:
    """Pixel size in micrometres from XResolution/YResolution, or None for placeholders."""
    tags = page.tags
    if "XResolution" not in tags or "ResolutionUnit" not in tags:
        return None
    unit = tifffile.RESUNIT(tags["ResolutionUnit"].value)
    um_per_unit = {tifffile.RESUNIT.INCH: _MICRONS_PER_INCH,
                   tifffile.RESUNIT.CENTIMETER: _MICRONS_PER_CM}.get(unit)
    x_res = _rational(tags["XResolution"].value)
    y_res = _rational(tags["YResolution"].value) if "YResolution" in tags else x_res
    if um_per_unit is None or x_res <= 1 or y_res <= 0:
        return None
    if _is_placeholder_dpi(x_res * _MICRONS_PER_INCH / um_per_unit):
        return None
    return um_per_unit / x_res, um_per_unit / y_res


def _rational(value) -> float:
    if isinstance(value, tuple):
        return value[0] / value[1] if value[1] else 0.0
    return float(value)


def _is_placeholder_dpi(dpi: float) -> bool:
    return any(abs(dpi - placeholder) < 0.5 for placeholder in _PLACEHOLDER_DPI)


def _isotropic(path: Path, x_um: float, y_um: float, source: str) -> float:
    """Mean of x and y pixel size; InputError when they differ by more than 1%."""
    if abs(x_um - y_um) > ANISOTROPY_TOLERANCE * min(x_um, y_um):
        raise InputError([
            f"{path}: pixels are not square ({source}: x {x_um:.6g} um, y {y_um:.6g} um); "
            "anisotropic images are not supported"
        ])
    return (x_um + y_um) / 2


def _positive(text) -> bool:
    try:
        value = float(text)
    except (TypeError, ValueError):
        return False
    return math.isfinite(value) and value > 0


def resolve_mpp(
    image_mpp: float | None, sheet_mpp: float | str | None, default_mpp: float
) -> tuple[float, str, str | None]:
    """Choose the pixel size: image metadata, else the sheet, else the default.

    Parameters
    ----------
    image_mpp : float or None
        From the image metadata (:attr:`SlideImage.mpp`).
    sheet_mpp : float, str or None
        The sheet's ``mpp`` value; '' or None when not given.
    default_mpp : float
        Config ``default_mpp``.

    Returns
    -------
    mpp : float
        Micrometres per pixel.
    source : {'metadata', 'sheet', 'default'}
    warning : str or None
        A QC warning when the default was assumed, or when the sheet disagrees with the
        metadata by more than 5% (the metadata wins).

    Raises
    ------
    ValueError
        If ``sheet_mpp`` is given but not a positive number, or ``default_mpp`` is not positive.
    """
    if sheet_mpp is not None and str(sheet_mpp).strip() != "":
        if not _positive(sheet_mpp):
            raise ValueError(f"sheet mpp must be a positive number, got {sheet_mpp!r}")
        sheet_mpp = float(sheet_mpp)
    else:
        sheet_mpp = None
    if not _positive(default_mpp):
        raise ValueError(f"default_mpp must be a positive number, got {default_mpp!r}")
    if image_mpp is not None:
        warning = None
        if sheet_mpp is not None and abs(sheet_mpp - image_mpp) > MPP_TOLERANCE * image_mpp:
            warning = (f"sheet mpp {sheet_mpp:g} um/px differs from the image metadata "
                       f"{image_mpp:.4g} um/px; the metadata is used")
        return float(image_mpp), "metadata", warning
    if sheet_mpp is not None:
        return sheet_mpp, "sheet", None
    return float(default_mpp), "default", (
        f"pixel size not in the image metadata or the sheet; assumed default_mpp "
        f"{float(default_mpp):g} um/px"
    )


# --------------------------------------------------------------------------- sheets


def read_sheet(path: str | os.PathLike) -> pd.DataFrame:
    """Read and check a sample sheet (TSV or CSV) of slides.

    Parameters
    ----------
    path : str or path-like
        ``.tsv`` (tab), ``.csv`` (comma) or ``.txt`` (separator guessed from tab, comma,
        semicolon). Required columns ``patient_id, slide_id, path``; optional ``mpp, roi,
        specimen, collected``; other columns are kept after these.

    Returns
    -------
    DataFrame
        Every value a string (so ``007`` stays ``007``), surrounding spaces removed, missing
        optional columns filled with ''; ``path`` and ``roi`` made absolute, relative ones taken
        from the sheet's folder.

    Raises
    ------
    InputError
        Listing every problem in the sheet, each as ``"<sheet name> row <n>: ..."`` with n the
        1-based data row: missing columns, empty ids or paths, duplicate or malformed
        ``slide_id``, a non-numeric or non-positive ``mpp``, a ``collected`` that is not an ISO
        date, a missing image or roi file.
    """
    path = Path(path)
    table = _read_table_text(path)
    required = [c for c in _REQUIRED_COLUMNS if c in table.columns]
    problems = [f"{path.name}: missing required column '{c}'"
                for c in _REQUIRED_COLUMNS if c not in required]
    if table.empty:
        problems.append(f"{path.name}: has no slide rows")
    table = _normalise_columns(table)
    base = path.resolve().parent
    for column in ("path", "roi"):
        table[column] = [_absolute(value, base) for value in table[column]]
    for number, row in enumerate(table.to_dict("records"), start=1):
        problems.extend(f"{path.name} row {number}: {p}" for p in _row_problems(row, required))
    problems.extend(_duplicate_problems(path.name, table["slide_id"]))
    if problems:
        raise InputError(problems)
    return table


def _read_table_text(path: Path) -> pd.DataFrame:
    if not path.is_file():
        raise InputError([f"{path}: sample sheet not found"])
    suffix = path.suffix.lower()
    if suffix not in (".tsv", ".csv", ".txt"):
        raise InputError([f"{path}: a sample sheet must be .tsv, .csv or .txt (got '{path.suffix}')"])
    try:
        sep = {".tsv": "\t", ".csv": ","}.get(suffix) or _sniff_separator(path)
        with warnings.catch_warnings():  # a row longer than the header would lose data
            warnings.simplefilter("error", pd.errors.ParserWarning)
            table = pd.read_csv(path, sep=sep, dtype=str, keep_default_na=False, na_filter=False,
                                encoding="utf-8-sig", index_col=False)
    except pd.errors.EmptyDataError:
        raise InputError([f"{path}: the sample sheet is empty"]) from None
    except pd.errors.ParserWarning:
        raise InputError([f"{path}: a row has more values than the header has column names "
                          "(check the separator and quoting)"]) from None
    except (csv.Error, pd.errors.ParserError, UnicodeDecodeError) as exc:
        raise InputError([_unreadable_sheet(path, exc)]) from None
    table.columns = [str(c).strip() for c in table.columns]
    return table.apply(lambda column: column.str.strip())


def _unreadable_sheet(path: Path, exc: BaseException) -> str:
    return f"{path}: cannot read the sample sheet ({' '.join(str(exc).split())})"


def _sniff_separator(path: Path) -> str:
    with open(path, encoding="utf-8-sig", newline="") as handle:
        sample = handle.read(65536)
    return csv.Sniffer().sniff(sample, delimiters="\t,;").delimiter


def _normalise_columns(table: pd.DataFrame) -> pd.DataFrame:
    for column in SHEET_COLUMNS:
        if column not in table.columns:
            table[column] = ""
    extras = [c for c in table.columns if c not in SHEET_COLUMNS]
    return table[list(SHEET_COLUMNS) + extras].reset_index(drop=True)


def _absolute(value: str, base: Path) -> str:
    if not value:
        return ""
    return os.path.abspath(base / Path(value).expanduser())


def _row_problems(row: dict, required: list[str]) -> list[str]:
    problems = [f"{column} is empty" for column in required if not row[column]]
    slide_id = row["slide_id"]
    if slide_id and not _SLIDE_ID_RE.fullmatch(slide_id):
        problems.append(f"slide_id '{slide_id}' may only contain letters, digits, '.', '_' and '-'")
    if row["mpp"] and not _positive(row["mpp"]):
        problems.append(f"mpp '{row['mpp']}' is not a positive number (micrometres per pixel)")
    if row["collected"] and not _is_iso_date(row["collected"]):
        problems.append(f"collected '{row['collected']}' is not an ISO date (YYYY-MM-DD)")
    if row["path"]:
        problems.extend(_image_path_problems(Path(row["path"])))
    if row["roi"] and not Path(row["roi"]).is_file():
        problems.append(f"roi file not found: {row['roi']}")
    return problems


def _image_path_problems(path: Path) -> list[str]:
    if not path.exists():
        return [f"image file not found: {path}"]
    if path.is_dir():
        return [f"path is a folder, not an image file: {path}"]
    if path.suffix.lower() not in IMAGE_SUFFIXES:
        return [f"not a supported image type ('{path.suffix}'): {path}"]
    return []


def _is_iso_date(text: str) -> bool:
    for parse in (_dt.date.fromisoformat, _dt.datetime.fromisoformat):
        try:
            parse(text)
        except ValueError:
            continue
        return True
    return False


def _duplicate_problems(name: str, slide_ids: pd.Series) -> list[str]:
    first_row: dict[str, int] = {}
    problems = []
    for number, slide_id in enumerate(slide_ids, start=1):
        if slide_id and slide_id in first_row:
            problems.append(f"{name} row {number}: slide_id '{slide_id}' repeats row {first_row[slide_id]}")
        first_row.setdefault(slide_id, number)
    return problems


# --------------------------------------------------------------------------- folders


def slides_from_folder(folder: str | os.PathLike, *, patient_pattern: str = "") -> pd.DataFrame:
    """List the slides in a folder: each sub-folder a patient, each image in it a slide.

    Parameters
    ----------
    folder : str or path-like
        The cohort folder.
    patient_pattern : str, optional
        A regular expression with a named group ``patient``, searched in each image's file name;
        when given it decides the patient instead of the folders.

    Returns
    -------
    DataFrame
        Columns ``patient_id, slide_id, path, mpp, roi, specimen, collected`` (strings; absolute
        paths; '' where unknown), sorted by patient_id then slide_id.

    Raises
    ------
    InputError
        The folder is missing or holds no images, the pattern is invalid or misses a file, or
        two images would get the same ``slide_id``.

    Notes
    -----
    - Images are files ending in one of :data:`IMAGE_SUFFIXES` (any case); hidden files and
      folders are ignored, as is everything else (sidecars such as ``*.truth.csv``,
      ``*.geojson``).
    - A patient folder is searched one level deep only, so a results folder or other nested
      material inside the cohort is not mistaken for slides.
    - An image directly in ``folder`` is its own patient, with the patient id taken from its
      stem.
    - ``stem`` is the file name without its extension and without a trailing ``.ome``.
      Patient ids are sanitised to ``[A-Za-z0-9._-]`` (other characters become ``_``), and
      ``slide_id = f"{patient_id}__{sanitised stem}"`` in every case, so a loose image
      ``P7.svs`` is patient ``P7`` with slide ``P7__P7``.
    - Companion folders of MIRAX (``X/`` beside ``X.mrxs``) and Olympus (``_X_/`` beside
      ``X.vsi``) slides are not patients.
    - ``<stem>.roi.geojson``, else ``<stem>.geojson``, beside an image becomes its ``roi``.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise InputError([f"{folder}: slide folder not found"])
    images = _folder_images(folder)
    if not images:
        raise InputError([f"{folder}: no slide images found (looked for {', '.join(sorted(IMAGE_SUFFIXES))})"])
    if patient_pattern:
        patients, problems = _patients_from_pattern(images, patient_pattern)
    else:
        patients, problems = [owner for _, owner in images], []
    rows = [_folder_row(image, patient) for (image, _), patient in zip(images, patients)
            if patient is not None]
    table = pd.DataFrame(rows, columns=list(SHEET_COLUMNS))
    problems.extend(_folder_duplicate_problems(table))
    if problems:
        raise InputError(problems)
    return table.sort_values(["patient_id", "slide_id"], kind="stable").reset_index(drop=True)


def _folder_images(folder: Path) -> list[tuple[Path, str]]:
    """Images in ``folder`` and its patient sub-folders, with the default owner (patient)."""
    found = []
    entries = _visible(folder)
    companions = _companion_folder_names(entries)
    for entry in entries:
        if entry.is_dir() and entry.name not in companions:
            found.extend((image, entry.name) for image in _visible(entry) if _is_image(image))
        elif _is_image(entry):
            found.append((entry, image_stem(entry)))
    return found


def _visible(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if not p.name.startswith("."))


def _is_image(path: Path) -> bool:
    return path.is_file() and path.suffix.lower() in IMAGE_SUFFIXES


def _companion_folder_names(entries: list[Path]) -> set[str]:
    names = set()
    for entry in entries:
        suffix = entry.suffix.lower()
        if entry.is_file() and suffix == ".mrxs":
            names.add(entry.stem)
        elif entry.is_file() and suffix == ".vsi":
            names.add(f"_{entry.stem}_")
    return names


def image_stem(path: str | os.PathLike) -> str:
    """File name without its extension and without a trailing ``.ome``.

    Examples
    --------
    >>> image_stem("/slides/P7/A 1.ome.tif"), image_stem("b.svs")
    ('A 1', 'b')
    """
    stem = Path(path).stem
    return stem[:-4] if stem.lower().endswith(".ome") else stem


def sanitise_id(text: str) -> str:
    """Replace every character outside ``[A-Za-z0-9._-]`` by ``_``.

    Examples
    --------
    >>> sanitise_id("Patient 007/a")
    'Patient_007_a'
    """
    return _UNSAFE_CHARS_RE.sub("_", text)


def _patients_from_pattern(images: list[tuple[Path, str]], pattern: str) -> tuple[list, list[str]]:
    try:
        regex = re.compile(pattern)
    except re.error as exc:
        raise InputError([f"patient_pattern '{pattern}' is not a valid regular expression ({exc})"]) from None
    if "patient" not in regex.groupindex:
        raise InputError([f"patient_pattern '{pattern}' has no named group 'patient', e.g. (?P<patient>[^_]+)"])
    patients, problems = [], []
    for image, _ in images:
        match = regex.search(image.name)
        patient = match.group("patient") if match else None
        if not patient:
            problems.append(f"{image}: patient_pattern '{pattern}' finds no patient in the file name")
        patients.append(patient or None)
    return patients, problems


def _folder_row(image: Path, patient: str) -> dict:
    patient_id = sanitise_id(patient)
    return {
        "patient_id": patient_id,
        "slide_id": f"{patient_id}__{sanitise_id(image_stem(image))}",
        "path": os.path.abspath(image),
        "mpp": "",
        "roi": _sidecar_roi(image),
        "specimen": "",
        "collected": "",
    }


def _sidecar_roi(image: Path) -> str:
    for name in (f"{image_stem(image)}.roi.geojson", f"{image_stem(image)}.geojson"):
        candidate = image.with_name(name)
        if candidate.is_file():
            return os.path.abspath(candidate)
    return ""


def _folder_duplicate_problems(table: pd.DataFrame) -> list[str]:
    problems = []
    for slide_id, group in table.groupby("slide_id", sort=True):
        if len(group) > 1:
            problems.append(f"these images would all get slide_id '{slide_id}'; rename one: "
                            + ", ".join(group["path"]))
    return problems


def load_slides(spec: str | os.PathLike, *, patient_pattern: str = "") -> pd.DataFrame:
    """Load the slide list from a sample sheet or a folder.

    Parameters
    ----------
    spec : str or path-like
        A sheet (see :func:`read_sheet`) or a folder (see :func:`slides_from_folder`).
    patient_pattern : str, optional
        Folder input only (ignored for a sheet).

    Returns
    -------
    DataFrame
        ``patient_id, slide_id, path, mpp, roi, specimen, collected`` as strings (absolute
        paths, '' for missing optionals), then any extra sheet columns.

    Raises
    ------
    InputError
        If ``spec`` does not exist, or from the sheet or folder checks.
    """
    spec = Path(spec).expanduser()
    if spec.is_dir():
        return slides_from_folder(spec, patient_pattern=patient_pattern)
    if spec.is_file():
        return read_sheet(spec)
    raise InputError([f"{spec}: slides not found (expected a sample sheet or a folder of slides)"])


# --------------------------------------------------------------------------- tables


def write_table(df: pd.DataFrame, path: str | os.PathLike) -> None:
    """Write a table atomically as CSV or Parquet, chosen by the file suffix.

    Parameters
    ----------
    df : DataFrame
        Written without its index.
    path : str or path-like
        Ends in ``.csv`` or ``.parquet``; parent folders are created.

    Raises
    ------
    ValueError
        For any other suffix.

    Notes
    -----
    The table goes to a hidden temporary file in the same folder, which then replaces
    ``path`` with ``os.replace``; readers never see a half-written file, and a failed write
    leaves no temporary file behind.
    """
    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".csv", ".parquet"):
        raise ValueError(f"table path must end in .csv or .parquet, got {str(path)!r}")
    path.parent.mkdir(parents=True, exist_ok=True)
    handle, temp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    os.close(handle)
    try:
        if suffix == ".csv":
            df.to_csv(temp, index=False)
        else:
            df.to_parquet(temp, index=False, engine="pyarrow")
        os.replace(temp, path)
    except BaseException:
        Path(temp).unlink(missing_ok=True)
        raise
