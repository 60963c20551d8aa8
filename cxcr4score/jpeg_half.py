"""JPEG tiles decoded at half resolution in the DCT domain, and the exact 2 x 2 mean they stand for.

libjpeg-turbo can decode a JPEG at 1/2 scale: each 8 x 8 block goes through a 4 x 4 inverse
DCT, which gives the 2 x 2 mean of the full decode's luma to within rounding, and 4:2:0 chroma
is then at output resolution, so it is not upsampled (the full decode interpolates it, which
is most of the difference). The decode is about 1.4 times faster, and the 2 x 2 average of
the full decode is not needed: the read of a 40x slide's analysis grid is about 2.4 times
faster (docs/performance.md, "Reading 40x slides at half resolution"). OpenCV's ``imdecode``
exposes the scaled decode (``IMREAD_REDUCED_COLOR_2``); imagecodecs, which tifffile decodes
with, does not.
"""

from __future__ import annotations

import struct

import cv2
import numpy as np

#: An Adobe APP14 segment with transform 0: the components are R, G, B, not YCbCr.
_ADOBE_RGB = b"\xff\xee\x00\x0eAdobe\x00\x64\x00\x00\x00\x00\x00"
_SOI, _EOI, _SOS = b"\xff\xd8", b"\xff\xd9", 0xDA


def jpeg_stream(data: bytes, tables: bytes | None, *, rgb_coded: bool) -> bytes | None:
    """One JPEG stream from a TIFF tile, its shared tables and its colour coding.

    Parameters
    ----------
    data : bytes
        The tile's JPEG data (from SOI to EOI; it may lack tables).
    tables : bytes or None
        The page's ``JPEGTables`` (SOI, tables, EOI), spliced in front of the tile's markers.
    rgb_coded : bool
        The components are R, G, B without a colour transform (TIFF photometric RGB without a
        JFIF marker, as Aperio writes): an Adobe marker with transform 0 is placed just before
        the scan header, after any marker of the tile's own, so that the decoder does not
        take the components for YCbCr (as tifffile tells its decoder; see
        ``tifffile.jpeg_decode_colorspace``).

    Returns
    -------
    bytes or None
        None when ``rgb_coded`` and the markers cannot be walked to the scan header (the
        caller decodes the tile exactly rather than risk a YCbCr conversion).
    """
    if tables is not None and tables.startswith(_SOI) and tables.endswith(_EOI) and data.startswith(_SOI):
        data = tables[:-2] + data[2:]
    if not rgb_coded:
        return data
    position = _scan_header(data)
    return None if position is None else data[:position] + _ADOBE_RGB + data[position:]


def _scan_header(data: bytes) -> int | None:
    """Offset of the first SOS marker, walking marker segments from SOI; None if malformed."""
    if not data.startswith(_SOI):
        return None
    position = 2
    while position + 4 <= len(data):
        if data[position] != 0xFF:
            return None
        marker = data[position + 1]
        if marker == 0xFF:  # fill byte
            position += 1
            continue
        if marker == _SOS:
            return position
        if 0xD0 <= marker <= 0xD9 or marker == 0x01:  # markers without a length
            position += 2
            continue
        (length,) = struct.unpack_from(">H", data, position + 2)
        position += 2 + length
    return None


def decode_half(stream: bytes, shape: tuple[int, int]) -> np.ndarray | None:
    """Decode a JPEG stream at half resolution in the DCT domain.

    Parameters
    ----------
    stream : bytes
        A whole JPEG stream (:func:`jpeg_stream`).
    shape : tuple of int
        ``(rows, cols)`` of the full-resolution image, both even.

    Returns
    -------
    (rows // 2, cols // 2, 3) ndarray of uint8 or None
        RGB; None when OpenCV cannot decode the stream at this scale or gives another size
        (the caller decodes it exactly).
    """
    decoded = cv2.imdecode(np.frombuffer(stream, np.uint8), cv2.IMREAD_REDUCED_COLOR_2)
    if decoded is None or decoded.shape != (shape[0] // 2, shape[1] // 2, 3):
        return None
    # A contiguous conversion: copying a channel-reversed view into the output took as long
    # as the decode.
    return cv2.cvtColor(decoded, cv2.COLOR_BGR2RGB)


def half_mean(pixels: np.ndarray) -> np.ndarray:
    """Exact 2 x 2 means: pixel (i, j) is the mean of ``pixels[2i:2i + 2, 2j:2j + 2]``.

    Parameters
    ----------
    pixels : (rows, cols, 3) ndarray of uint8
        Any sizes; at an odd edge a block holds one or two pixels and is their mean.

    Returns
    -------
    (ceil(rows / 2), ceil(cols / 2), 3) ndarray of uint8
        Rounded half to even, as :func:`cxcr4score._kernels.resample.area_resize_kernel`.
    """
    rows, cols = pixels.shape[:2]
    if rows % 2 or cols % 2:  # a repeated last row or column: the mean of the pixels there
        pixels = np.pad(pixels, ((0, rows % 2), (0, cols % 2), (0, 0)), mode="edge")
    sums = pixels[0::2, 0::2].astype(np.uint16)
    sums += pixels[1::2, 0::2]
    sums += pixels[0::2, 1::2]
    sums += pixels[1::2, 1::2]
    quarter, remainder = sums >> 2, sums & 3
    quarter += (remainder > 2) | ((remainder == 2) & (quarter & 1 == 1))
    return quarter.astype(np.uint8)
