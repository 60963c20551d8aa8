"""Regions of a slide's pyramid levels, decoding only the tiles or strips a region touches."""

from __future__ import annotations

import operator
import os
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile

from .errors import InputError
from .images import (
    RASTER_SUFFIXES, SLIDEIO_SUFFIXES, TIFF_SUFFIXES, check_photometric, check_rgb_layout, checked_tiff_level,
    describe, existing_image_path, inspect_image, read_image, tiff_format, tiff_level, to_rgb, unreadable, yxs_layout,
)


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


def pyramid_levels(shapes) -> tuple[Level, ...]:
    """:class:`Level` records of ``(rows, cols)`` shapes, finest first."""
    rows0, cols0 = shapes[0]
    return tuple(Level((int(rows), int(cols)), 1.0 if i == 0 else (rows0 / rows + cols0 / cols) / 2)
                 for i, (rows, cols) in enumerate(shapes))


class NotOpenable(InputError):
    """A reader could not interpret the file at all (another reader may): not a content refusal.

    Parameters
    ----------
    path : Path
        The file.
    exc : BaseException
        What the reader raised; :attr:`reason` is its one-line description.
    """

    def __init__(self, path, exc: BaseException):
        self.reason = describe(exc)
        super().__init__([unreadable(path, exc)])


class SlideReader:
    """Read regions of a slide's pyramid levels without decoding the whole slide.

    The interface every reader shares (:class:`TiffReader`, and the OpenSlide and slideio
    readers of :mod:`cxcr4score.vendor_readers`); :func:`open_slide` chooses the reader. Open one
    reader per process and close it when done (it is a context manager). A reader holds an open
    file and cannot be pickled: each Snakemake job or worker process opens its own.

    Attributes
    ----------
    path : Path
        The file.
    levels : tuple of Level
        Pyramid levels, finest (level 0) first: those of the main image only (label, macro
        and thumbnail images are never levels).
    mpp : float or None
        Level-0 micrometres per pixel from the file's metadata; None when the file does not say.
    mpp_source : {'ome', 'tiff', 'svs', 'png', 'openslide', 'slideio'} or None
        Which metadata gave ``mpp``.
    reader : str
        The library that reads the file ('tifffile', 'imageio', 'OpenSlide', 'slideio').
    format : str
        The file's format as its reader names it (e.g. 'svs', 'ome-tiff', 'mirax', 'vsi').

    Examples
    --------
    >>> with open_slide("slide.svs") as slide:  # doctest: +SKIP
    ...     tile = slide.read_region(0, top=1024, left=2048, height=512, width=512)
    """

    path = None
    levels: tuple = ()
    _closed = False

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
        return self._region(self.levels[level].shape, self._read_into, level, top, left, height, width)

    def half_shape(self, level: int) -> tuple[int, int] | None:
        """``(rows, cols)`` of a level read at half resolution by :meth:`read_region_half`.

        Returns
        -------
        tuple of int or None
            ``(ceil(rows / 2), ceil(cols / 2))`` of the level when the reader can decode it at
            half resolution in the codec (a TIFF level of JPEG tiles of even size); None when
            it cannot (every other reader and layout), and then :meth:`read_region_half` must
            not be called.
        """
        return None

    def read_region_half(self, level: int, top: int, left: int, height: int, width: int) -> np.ndarray:
        """Read a rectangle of a level at half resolution, decoded at that scale where possible.

        Parameters
        ----------
        level : int
            A level for which :meth:`half_shape` is not None.
        top, left, height, width : int
            As :meth:`read_region`, in half-resolution pixels: pixel (i, j) stands for the
            level pixels ``[2i, 2i + 2) x [2j, 2j + 2)`` inside the level.

        Returns
        -------
        (height, width, 3) ndarray of uint8
            C-contiguous RGB, white outside. Each pixel is the JPEG decoder's half-scale
            output (a 4 x 4 inverse DCT per 8 x 8 block, close to the 2 x 2 mean; see
            :mod:`cxcr4score.jpeg_half`), or the exact mean of the level pixels of its block
            inside the level where the codec is not used (tiles with an odd number of rows or
            columns inside the level, streams OpenCV does not decode at that scale).

        Raises
        ------
        ValueError
            As :meth:`read_region`, or a level without a half-resolution decode.
        InputError
            As :meth:`read_region`.
        """
        level, top, left, height, width = self._checked_region(level, top, left, height, width)
        shape = self.half_shape(level)
        if shape is None:
            raise ValueError(f"{self.path}: level {level} cannot be decoded at half resolution")
        return self._region(shape, self._read_half_into, level, top, left, height, width)

    def _region(self, shape, read_into, level, top, left, height, width) -> np.ndarray:
        """White-padded region of a plane of ``shape``, its inside filled by ``read_into``."""
        rows, cols = shape
        r0, r1 = max(top, 0), min(top + height, rows)
        c0, c1 = max(left, 0), min(left + width, cols)
        inside = (r0, r1, c0, c1) == (top, top + height, left, left + width)
        out = np.empty((height, width, 3), np.uint8) if inside else np.full((height, width, 3), 255, np.uint8)
        if r0 >= r1 or c0 >= c1:
            return out
        try:
            read_into(level, r0, r1, c0, c1, out[r0 - top:r1 - top, c0 - left:c1 - left])
        except (InputError, MemoryError):
            raise
        except Exception as exc:  # decoding errors surface here, not on open
            raise InputError([unreadable(self.path, exc)]) from None
        return out

    def _read_into(self, level: int, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None:
        """Write the level's pixels ``[r0:r1, c0:c1]`` (all inside the level) into ``out``."""
        raise NotImplementedError

    def _read_half_into(self, level: int, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None:
        """As :meth:`_read_into`, in half-resolution pixels of a level with a :meth:`half_shape`."""
        raise NotImplementedError

    def inspect(self) -> dict:
        """``width``, ``height``, ``mpp``, ``mpp_source`` and ``format``, after decoding one
        small region of the coarsest level (which catches unreadable pixel data)."""
        rows, cols = self.levels[-1].shape
        self.read_region(len(self.levels) - 1, 0, 0, min(rows, 256), min(cols, 256))
        rows0, cols0 = self.levels[0].shape
        return {"width": int(cols0), "height": int(rows0), "mpp": self.mpp, "mpp_source": self.mpp_source,
                "format": self.format}

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

    def close(self) -> None:
        """Close the file; further reads raise ValueError. Safe to repeat."""
        self._closed = True

    def __enter__(self):
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def __reduce__(self):
        raise TypeError(f"a {type(self).__name__} cannot be pickled ({self.path}); "
                        "open the slide in each process with open_slide(path)")

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self.levels)} level(s)"
        return f"<{type(self).__name__} {str(self.path)!r} {state}>"


class TiffReader(SlideReader):
    """A TIFF-family slide read with tifffile, or a PNG / JPEG read whole with imageio.

    Parameters
    ----------
    path : str or path-like
        PNG, JPEG, TIFF, OME-TIFF, or a tiled whole-slide TIFF (SVS, NDPI, SCN, BIF).

    Raises
    ------
    NotOpenable
        tifffile cannot interpret the file (not a TIFF, unknown compression, broken structure).
    InputError
        As :func:`read_image`: missing, unsupported or corrupt file, not 8-bit RGB(A),
        anisotropic pixels. The message names the file.

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
    once on open with :func:`read_image` and sliced. A level of JPEG tiles of even size can
    also be read at half resolution, decoded at that scale by libjpeg-turbo
    (:meth:`read_region_half`), which :func:`cxcr4score.grid.read_box` uses on 40x slides.
    """

    def __init__(self, path: str | os.PathLike):
        self.path = existing_image_path(path)
        self._rgb = None  # whole image of a PNG / JPEG
        self._tif = None
        self._series = None
        self._tiff_levels: list = []  # tifffile level series, finest first
        self._layouts: list = []  # per level: (kept-axis mask, transpose order)
        self._arrays: dict = {}  # level -> zarr array, opened lazily
        self._half_layouts: dict = {}  # level -> _half_layout(level), found lazily
        self._stores: list = []
        self._lock = threading.Lock()
        raster = self.path.suffix.lower() in RASTER_SUFFIXES
        self.reader = "imageio" if raster else "tifffile"
        try:
            if raster:
                self._open_raster()
            else:
                self._open_tiff()
        except BaseException as exc:
            self.close()
            if isinstance(exc, (InputError, MemoryError)) or not isinstance(exc, Exception):
                raise
            raise NotOpenable(self.path, exc) from None

    def _open_raster(self) -> None:
        image = read_image(self.path)
        self._rgb = image.rgb
        self._segment_layouts = [None]
        self.levels = (Level((image.rgb.shape[0], image.rgb.shape[1]), 1.0),)
        self.mpp, self.mpp_source = image.mpp, image.mpp_source
        self.format = "png" if self.path.suffix.lower() == ".png" else "jpeg"

    def _open_tiff(self) -> None:
        self._tif = tifffile.TiffFile(self.path)
        level0, _, _, self.mpp, self.mpp_source = checked_tiff_level(self.path, self._tif)
        index, _ = tiff_level(self._tif, 0)
        self._series = self._tif.series[index]
        self.format = tiff_format(self._tif)
        # finest first, whatever order the file stores them in (stable for equal areas)
        shapes = []
        for tiff_index, level in enumerate(self._series.levels):
            shape, order = yxs_layout(self.path, level.shape, level.axes)
            check_rgb_layout(self.path, shape, level.dtype)
            check_photometric(self.path, level)
            keep = tuple(n > 1 or a in "YX" for n, a in zip(level.shape, level.axes))
            shapes.append((shape[:2], tiff_index, level, (keep, order)))
        shapes.sort(key=lambda item: -item[0][0] * item[0][1])
        if shapes[0][2] is not level0:
            raise InputError([f"{self.path}: the first pyramid level is not the largest; "
                              "the pyramid cannot be read"])
        self.levels = pyramid_levels([shape for shape, *_ in shapes])
        self._tiff_index = [tiff_index for _, tiff_index, _, _ in shapes]
        self._tiff_levels = [level for _, _, level, _ in shapes]
        self._layouts = [layout for *_, layout in shapes]
        self._segment_layouts = [_segment_layout(level, self._series) for level in self._tiff_levels]
        if self._segment_layouts[0] is None:
            self._tiff_array(0)

    def _tiff_array(self, level: int):
        """The zarr array of one level, opening its store on first use."""
        import zarr  # slow to import; only region reads of some TIFF levels need it

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

    def _read_into(self, level: int, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None:
        if self._rgb is not None:
            out[...] = self._rgb[r0:r1, c0:c1]
        elif self._segment_layouts[level] is not None:
            self._decode_segments(level, r0, r1, c0, c1, out)
        else:
            out[...] = self._read_tiff_pixels(level, r0, r1, c0, c1)

    def inspect(self) -> dict:
        return inspect_image(self.path)

    def _decode_segments(self, level: int, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None:
        """Decode the tiles or strips of one page that overlap the region straight into ``out``.

        The zarr store decodes the same segments with the same tifffile decoder, but its event
        loop adds about as much time again as the decoding, and it decodes on tifffile's own
        thread count; here decoding uses the job's thread count (Numba's).
        """
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

        self._place_segments(page, indices, place)

    def _place_segments(self, page, indices: list, place) -> None:
        """Read the segments ``indices`` of a page and call ``place((data, index))`` on each, on
        the job's thread count (Numba's)."""
        import numba

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

    def half_shape(self, level: int) -> tuple[int, int] | None:
        if self._half_layout(level) is None:
            return None
        rows, cols = self.levels[level].shape
        return (rows + 1) // 2, (cols + 1) // 2

    def _half_layout(self, level: int) -> tuple | None:
        """(page, chunk rows, chunk columns, chunks across, RGB-coded) of a level stored as
        baseline-TIFF JPEG tiles of even size (:meth:`_read_half_into` reads them); else None."""
        with self._lock:  # is_jfif reads the file
            if level not in self._half_layouts:
                layout = self._segment_layouts[level]
                page = layout[0] if layout is not None else None
                if (page is None or not page.is_tiled or page.compression != 7 or page.photometric not in (2, 6)
                        or page.jpegheader is not None or layout[1] % 2 or layout[2] % 2):
                    self._half_layouts[level] = None
                else:
                    self._half_layouts[level] = (*layout, page.photometric == 2 and not page.is_jfif)
            return self._half_layouts[level]

    def _read_half_into(self, level: int, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None:
        """Decode the JPEG tiles under a half-resolution region at half scale, straight into ``out``.

        A tile with an odd number of rows or columns inside the level (the last tile row or
        column of an odd-sized level) is decoded in full and averaged over its pixels inside:
        at half scale its last half pixel would mix in the tile's padding.
        """
        from .jpeg_half import decode_half, half_mean, jpeg_stream

        page, chunk_rows, chunk_cols, across, rgb_coded = self._half_layouts[level]
        rows, cols = self.levels[level].shape
        half_rows, half_cols = chunk_rows // 2, chunk_cols // 2
        indices = [r * across + c for r in range(r0 // half_rows, (r1 - 1) // half_rows + 1)
                   for c in range(c0 // half_cols, (c1 - 1) // half_cols + 1)]
        decode, tables = page.decode, page.jpegtables

        def place(data_index):
            data, index = data_index
            y, x = index // across * chunk_rows, index % across * chunk_cols
            inside_rows, inside_cols = min(chunk_rows, rows - y), min(chunk_cols, cols - x)
            half = None
            if data is not None and inside_rows % 2 == 0 and inside_cols % 2 == 0:
                stream = jpeg_stream(data, tables, rgb_coded=rgb_coded)
                half = None if stream is None else decode_half(stream, (chunk_rows, chunk_cols))
            if half is None and data is not None:
                segment, _, _ = decode(data, index, jpegtables=tables, _fullsize=True)
                half = half_mean(segment[0, :inside_rows, :inside_cols])
            hy, hx = y // 2, x // 2
            ys, ye, xs, xe = max(hy, r0), min(hy + half_rows, r1), max(hx, c0), min(hx + half_cols, c1)
            target = out[ys - r0:ye - r0, xs - c0:xe - c0]
            target[...] = page.nodata if half is None else half[ys - hy:ye - hy, xs - hx:xe - hx]

        self._place_segments(page, indices, place)

    def _read_tiff_pixels(self, level: int, r0: int, r1: int, c0: int, c1: int) -> np.ndarray:
        array = self._tiff_array(level)
        keep, order = self._layouts[level]
        axes = self._tiff_levels[level].axes
        index = tuple(slice(r0, r1) if a == "Y" else slice(c0, c1) if a == "X" else slice(None)
                      for a in axes)
        pixels = np.asarray(array[index])
        squeezed = pixels.reshape([n for n, k in zip(pixels.shape, keep) if k])
        return to_rgb(squeezed.transpose(order))

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


def open_slide(path: str | os.PathLike) -> SlideReader:
    """Open a slide for reading regions by pyramid level, with the first reader that opens it.

    Parameters
    ----------
    path : str or path-like
        A slide: PNG, JPEG, the TIFF family (TIFF, OME-TIFF, SVS, NDPI, SCN, BIF, Philips
        TIFF), MIRAX (.mrxs), Hamamatsu VMS / VMU, Sakura (.svslide), Zeiss (.czi), DICOM
        (.dcm, one file of the slide's folder) or Olympus (.vsi).

    Returns
    -------
    SlideReader
        To use as a context manager (or ``close()`` it); see :class:`SlideReader`.

    Raises
    ------
    InputError
        As :func:`cxcr4score.images.read_image`, naming the file; when no reader can interpret
        the file, one line naming it and each reader tried with what it said:
        ``"<path>: cannot read the image (tried tifffile: <error>; OpenSlide: <error>)"``.

    Notes
    -----
    The readers tried, in order, by the file's extension (:func:`readers_for`): tifffile for
    the TIFF family (then OpenSlide when tifffile cannot interpret the file), imageio for
    PNG / JPEG, OpenSlide for the other slide formats, slideio for VSI. A reader that opens
    the file but refuses its content (grey-scale, anisotropic pixels) stops the search.
    """
    path = existing_image_path(path)
    tried = []
    for name, reader_class in readers_for(path):
        try:
            return reader_class(path)
        except NotOpenable as exc:
            tried.append(f"{name}: {exc.reason}")
    raise InputError([f"{path}: cannot read the image (tried {'; '.join(tried)})"])


def inspect_slide(path: str | os.PathLike) -> dict:
    """Check a slide as :func:`open_slide` opens it, decoding only one small region.

    Parameters
    ----------
    path : str or path-like
        As :func:`open_slide`.

    Returns
    -------
    dict
        ``width``, ``height`` (level-0 pixels), ``mpp``, ``mpp_source`` and ``format``
        (e.g. 'ome-tiff', 'svs', 'ndpi', 'tiff', 'png', 'jpeg', or OpenSlide's vendor name
        such as 'mirax', or 'vsi').

    Raises
    ------
    InputError
        As :func:`open_slide`, or the region cannot be decoded.
    """
    with open_slide(path) as reader:
        return reader.inspect()


def readers_for(path) -> list[tuple[str, type]]:
    """``(name, reader class)`` to try, in order, for a file of this extension."""
    from .vendor_readers import OpenSlideReader, SlideioReader

    suffix = Path(path).suffix.lower()
    if suffix in RASTER_SUFFIXES:
        return [("imageio", TiffReader)]
    if suffix in TIFF_SUFFIXES:
        return [("tifffile", TiffReader), ("OpenSlide", OpenSlideReader)]
    if suffix in SLIDEIO_SUFFIXES:
        return [("slideio", SlideioReader)]
    return [("OpenSlide", OpenSlideReader)]
