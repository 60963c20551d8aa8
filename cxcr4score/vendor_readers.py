"""Slide formats tifffile does not read: OpenSlide (MIRAX, Hamamatsu VMS / VMU, Sakura, Zeiss,
DICOM, and TIFF-family files tifffile cannot interpret) and slideio (Olympus VSI).

Both readers have the interface of :class:`cxcr4score.slide_reader.SlideReader` and are chosen
by :func:`cxcr4score.slide_reader.open_slide`. Only the main image's pyramid is read: the label,
macro and thumbnail images both libraries offer are never levels.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from .images import check_coarsest_level, check_rgb_layout, to_rgb
from .pixel_size import reader_mpp
from .slide_reader import NotOpenable, SlideReader, pyramid_levels


class OpenSlideReader(SlideReader):
    """A slide read with OpenSlide (openslide-python with the openslide-bin library).

    Parameters
    ----------
    path : str or path-like
        Any slide OpenSlide opens (for DICOM, one ``.dcm`` file of the slide's folder).

    Raises
    ------
    NotOpenable
        OpenSlide cannot interpret the file (or is not installed).
    InputError
        Anisotropic pixels, or no reduced level small enough for the overview.

    Notes
    -----
    Levels are OpenSlide's levels whose downsample (OpenSlide's own, by which it maps level-0
    coordinates onto the level) is a whole number, plus level 0. At a fractional downsample
    OpenSlide places a region at a fractional position of the level and resamples it, so a
    region would not be the level's own pixels and a tile would differ from the same crop of a
    larger read; the analysis grid then reads a finer level and area-averages it as usual.
    OpenSlide returns premultiplied RGBA made straight; transparent pixels (outside the scanned
    area) are composited over white, as glass. Pixel size from ``openslide.mpp-x`` /
    ``openslide.mpp-y`` (:func:`cxcr4score.pixel_size.reader_mpp`); ``format`` is
    ``openslide.vendor`` (e.g. 'mirax', 'aperio', 'generic-tiff').
    """

    def __init__(self, path: str | os.PathLike):
        self.path = Path(path)
        self.reader = "OpenSlide"
        self._slide = None
        try:
            import openslide

            self._slide = openslide.OpenSlide(str(self.path))
        except Exception as exc:  # ImportError or OSError without the library; OpenSlideError otherwise
            raise NotOpenable(self.path, exc) from None
        try:
            self._open()
        except BaseException:
            self.close()
            raise

    def _open(self) -> None:
        properties = self._slide.properties
        self.format = properties.get("openslide.vendor", "openslide")
        self.mpp, self.mpp_source = reader_mpp(self.path, properties.get("openslide.mpp-x"),
                                               properties.get("openslide.mpp-y"), "openslide")
        downsamples = self._slide.level_downsamples
        self._os_levels = [0] + [k for k in range(1, len(downsamples)) if float(downsamples[k]).is_integer()]
        self._os_downsample = [int(downsamples[k]) for k in self._os_levels]
        shapes = [self._slide.level_dimensions[k][::-1] for k in self._os_levels]
        self.levels = pyramid_levels(shapes)
        check_coarsest_level(self.path, shapes[0], shapes[-1][0] * shapes[-1][1])

    def _read_into(self, level: int, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None:
        factor = self._os_downsample[level]
        region = self._slide.read_region((c0 * factor, r0 * factor), self._os_levels[level], (c1 - c0, r1 - r0))
        out[...] = to_rgb(np.asarray(region))

    def close(self) -> None:
        """Close the slide; further reads raise ValueError. Safe to repeat."""
        self._closed = True
        if self._slide is not None:
            self._slide.close()
            self._slide = None


class SlideioReader(SlideReader):
    """A slide read with slideio (Olympus VSI by default).

    Parameters
    ----------
    path : str or path-like
        The slide (a ``.vsi`` file with its ``_<name>_`` folder of ``.ets`` files beside it).
    driver : str, optional
        slideio's driver id (``slideio.get_driver_ids()``); 'VSI' for Olympus.

    Raises
    ------
    NotOpenable
        slideio cannot interpret the file (or is not installed).
    InputError
        Not 8-bit RGB, anisotropic pixels, or no reduced level small enough for the overview.

    Notes
    -----
    The scene with the largest area is the slide (the first of equal ones), which leaves out
    overview scenes; slideio's auxiliary images (label, macro) are never read. Its zoom levels
    are the pyramid, read with ``read_block_from_level`` in each level's own pixels, so nothing
    is resampled. Pixel size from the scene's resolution; ``format`` is the driver id in lower
    case.
    """

    def __init__(self, path: str | os.PathLike, *, driver: str = "VSI"):
        self.path = Path(path)
        self.reader = "slideio"
        self.format = driver.lower()
        self._slide = self._scene = None
        try:
            import slideio

            self._slide = slideio.open_slide(str(self.path), driver)
            scenes = [self._slide.get_scene(i) for i in range(self._slide.num_scenes)]
        except Exception as exc:  # slideio raises RuntimeError for every file it cannot parse
            self.close()
            raise NotOpenable(self.path, exc) from None
        try:
            self._open(scenes)
        except BaseException:
            self.close()
            raise

    def _open(self, scenes) -> None:
        if not scenes:
            raise NotOpenable(self.path, ValueError("the file has no image scenes"))
        self._scene = max(scenes, key=lambda scene: scene.size[0] * scene.size[1])  # first of equal areas
        scene = self._scene
        channels = scene.num_channels
        dtypes = {np.dtype(scene.get_channel_data_type(i)) for i in range(channels)}
        check_rgb_layout(self.path, (scene.size[1], scene.size[0], channels),
                         dtypes.pop() if len(dtypes) == 1 else np.dtype(object))
        self.mpp, self.mpp_source = reader_mpp(self.path, *(r * 1e6 for r in scene.resolution), "slideio")
        sizes = [scene.get_zoom_level_info(k).size for k in range(scene.num_zoom_levels)]
        shapes = [(size.height, size.width) for size in sizes]
        self.levels = pyramid_levels(shapes)
        check_coarsest_level(self.path, shapes[0], shapes[-1][0] * shapes[-1][1])

    def _read_into(self, level: int, r0: int, r1: int, c0: int, c1: int, out: np.ndarray) -> None:
        out[...] = to_rgb(self._scene.read_block_from_level(level, (c0, r0, c1 - c0, r1 - r0)))

    def close(self) -> None:
        """Close the slide; further reads raise ValueError. Safe to repeat."""
        self._closed = True
        for handle in (self._scene, self._slide):
            if handle is not None:
                handle.close()
        self._slide = self._scene = None
