"""Load an HTML page in headless Chromium: the DOM after the load event, the state of each
<img>, the number of rendered inline SVGs and a screenshot. Chromium is taken from PATH or,
as root with apt-get, installed from the distribution (Debian's ``chromium`` package); where
neither is possible the calling test is skipped with the reason."""

from __future__ import annotations

import dataclasses
import functools
import html
import json
import os
import re
import shutil
import signal
import subprocess
from pathlib import Path

import cv2
import numpy as np
import pytest

#: Names tried on PATH, in order.
EXECUTABLES = ("chromium", "chromium-browser", "google-chrome")
#: Seconds allowed for ``apt-get update`` and for ``apt-get install``, each.
APT_TIMEOUT = 900
#: Seconds allowed for one Chromium run.
CHROMIUM_TIMEOUT = 120
#: Milliseconds of virtual time Chromium gives the page to load before dumping or capturing.
VIRTUAL_TIME_BUDGET = 10_000

_CHECK_ID = "browser-check"
# On load, writes the state of every <img> and the count of rendered outermost <svg> as JSON
# into <pre id="browser-check">, and removes itself so that the dumped DOM is the page's own.
_CHECK_SCRIPT = f"""<script id="{_CHECK_ID}-script">
window.addEventListener("load", function () {{
  var images = Array.prototype.map.call(document.images, function (img) {{
    return {{src: (img.getAttribute("src") || "").slice(0, 80), complete: img.complete,
            naturalWidth: img.naturalWidth, naturalHeight: img.naturalHeight}};
  }});
  var svgs = Array.prototype.filter.call(document.querySelectorAll("svg"), function (svg) {{
    var box = svg.getBoundingClientRect();
    return !svg.parentElement.closest("svg") && box.width > 0 && box.height > 0;
  }}).length;
  var pre = document.createElement("pre");
  pre.id = "{_CHECK_ID}";
  pre.textContent = JSON.stringify({{images: images, svgs: svgs}});
  document.body.appendChild(pre);
  document.getElementById("{_CHECK_ID}-script").remove();
}});
</script>
"""
_CHECK_PRE = re.compile(f'<pre id="{_CHECK_ID}">(.*?)</pre>', re.DOTALL)


@dataclasses.dataclass(frozen=True)
class Page:
    """What headless Chromium made of a page.

    Attributes
    ----------
    dom : str
        The DOM serialized after the load event.
    images : list of dict
        One per <img>, in document order: ``src`` (the attribute, first 80 characters),
        ``complete`` (bool), ``naturalWidth`` and ``naturalHeight`` (int, 0 if not decoded).
    svgs : int
        Outermost inline <svg> elements with a nonzero bounding box.
    screenshot : (H, W, 3) ndarray of uint8
        RGB capture of a window of the requested size.
    console : list of str
        The page's console messages and uncaught errors, as Chromium logged them.
    stderr : str
        Chromium's whole standard error over both runs, for error messages.
    """

    dom: str
    images: list[dict]
    svgs: int
    screenshot: np.ndarray
    console: list[str]
    stderr: str


def chromium_executable():
    """Path of a Chromium or Chrome executable, installing Debian's ``chromium`` if need be.

    The lookup, and the install attempt, happen once per session. The install runs only as
    root where apt-get exists.

    Returns
    -------
    str

    Raises
    ------
    pytest.skip.Exception
        If no executable is found and it cannot be installed, with the reason (for a failed
        install, the tail of apt-get's output).
    """
    path, reason = _find_or_install()
    if path is None:
        pytest.skip(reason)
    return path


@functools.cache
def _find_or_install():
    """``(path, None)``, or ``(None, reason)`` when there is no browser and none can be
    installed; cached, failure included, so that apt-get runs at most once."""
    path = _which()
    if path is not None:
        return path, None
    if shutil.which("apt-get") is None:
        return None, f"no {'/'.join(EXECUTABLES)} on PATH, and no apt-get to install chromium"
    if os.geteuid() != 0:
        return None, f"no {'/'.join(EXECUTABLES)} on PATH, and not root to apt-get install chromium"
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    for command in (["apt-get", "update"],
                    ["apt-get", "install", "-y", "--no-install-recommends", "chromium"]):
        try:
            done = subprocess.run(command, check=False, env=env, capture_output=True, text=True,
                                  errors="replace", timeout=APT_TIMEOUT, stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired as e:
            # What was read before the timeout comes as bytes, text=True notwithstanding.
            output = b"".join(filter(None, (e.stdout, e.stderr))).decode(errors="replace")
            return None, f"{' '.join(command)} timed out after {APT_TIMEOUT} s:\n{_tail(output)}"
        if done.returncode != 0:
            return None, (f"{' '.join(command)} exited with {done.returncode}:\n"
                          f"{_tail(done.stdout + done.stderr)}")
    path = _which()
    if path is None:
        return None, f"apt-get installed chromium but no {'/'.join(EXECUTABLES)} is on PATH"
    return path, None


def _which():
    return next(filter(None, map(shutil.which, EXECUTABLES)), None)


def _tail(text, lines=20):
    return "\n".join(text.strip().splitlines()[-lines:])


def load_page(html_path, workdir, *, window_size=(1400, 4000)):
    """Open ``html_path`` in headless Chromium, after the load event.

    The page is copied into ``workdir`` first, so a reference to a file beside the original
    does not resolve: a self-contained page loses nothing. Chromium runs twice, each with a
    fresh profile in ``workdir``: once to dump the DOM, with a script added at the end of
    <body> that records the images' state, and once on the unmodified copy for the
    screenshot.

    Parameters
    ----------
    html_path : str or Path
    workdir : str or Path
        An existing, empty directory (e.g. pytest's ``tmp_path``).
    window_size : (int, int)
        Width and height of the window, in CSS pixels; the screenshot is this size, so the
        page below the height is not in it.

    Returns
    -------
    Page

    Raises
    ------
    pytest.skip.Exception
        If there is no Chromium (see `chromium_executable`).
    RuntimeError
        If Chromium fails, times out, or dumps a DOM without the load event's record.
    """
    executable = chromium_executable()
    workdir = Path(workdir).resolve()
    text = Path(html_path).read_text(encoding="utf-8")
    page = workdir / "page.html"
    page.write_text(text, encoding="utf-8")
    checked = workdir / "page-check.html"
    end = text.lower().rfind("</body>")
    end = len(text) if end < 0 else end
    checked.write_text(text[:end] + _CHECK_SCRIPT + text[end:], encoding="utf-8")

    dom, dump_stderr = _chromium(executable, workdir / "profile-dom", ["--dump-dom"], checked)
    found = _CHECK_PRE.search(dom)
    if found is None:
        raise RuntimeError(f"no record of the load event in the DOM Chromium dumped "
                           f"(did the page load within {VIRTUAL_TIME_BUDGET} ms?):\n"
                           f"{_tail(dom)}\n{_tail(dump_stderr)}")
    record = json.loads(html.unescape(found.group(1)))
    dom = dom[:found.start()] + dom[found.end():]

    png = workdir / "screenshot.png"
    width, height = window_size
    _, shot_stderr = _chromium(executable, workdir / "profile-screenshot",
                               [f"--screenshot={png}", f"--window-size={width},{height}"], page)
    screenshot = cv2.imread(str(png), cv2.IMREAD_COLOR)
    if screenshot is None:
        raise RuntimeError(f"Chromium wrote no readable screenshot {png}:\n{_tail(shot_stderr)}")

    stderr = dump_stderr + shot_stderr
    return Page(dom=dom, images=record["images"], svgs=record["svgs"],
                screenshot=cv2.cvtColor(screenshot, cv2.COLOR_BGR2RGB),
                console=[line for line in dump_stderr.splitlines() if ":CONSOLE" in line],
                stderr=stderr)


def _chromium(executable, profile, action, page):
    """Run headless Chromium with ``action`` on ``page``; ``(stdout, stderr)``."""
    command = [executable, "--headless=new", "--no-sandbox", "--disable-gpu", "--hide-scrollbars",
               "--no-first-run", f"--user-data-dir={profile}", "--enable-logging=stderr", "--v=0",
               f"--virtual-time-budget={VIRTUAL_TIME_BUDGET}", *action, page.as_uri()]
    # A session of its own, so that a timeout kills the renderer and GPU processes too, not
    # just the launcher.
    process = subprocess.Popen(command, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True, errors="replace",
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=CHROMIUM_TIMEOUT)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        _, stderr = process.communicate()
        raise RuntimeError(f"Chromium timed out after {CHROMIUM_TIMEOUT} s: {' '.join(command)}\n"
                           f"{_tail(stderr)}") from None
    if process.returncode != 0:
        raise RuntimeError(f"Chromium exited with {process.returncode}: {' '.join(command)}\n"
                           f"{_tail(stderr)}")
    return stdout, stderr


def broken_images(page):
    """Sources of the <img> elements that did not load: not complete, or no decoded width.

    Parameters
    ----------
    page : Page

    Returns
    -------
    list of str
        The ``src`` of each, as in ``page.images``, in document order.
    """
    return [image["src"] for image in page.images
            if not image["complete"] or image["naturalWidth"] == 0]


def is_blank(screenshot, *, min_pixels=100, tolerance=8):
    """Whether a screenshot is one colour, but for fewer than ``min_pixels`` pixels.

    Parameters
    ----------
    screenshot : (H, W, 3) ndarray of uint8
    min_pixels : int
        Pixels off the background colour (the most common one) needed for content.
    tolerance : int
        Largest channel difference from the background still counted as background.

    Returns
    -------
    bool
    """
    pixels = screenshot.reshape(-1, 3)
    packed = (pixels[:, 0].astype(np.uint32) << 16) | (pixels[:, 1].astype(np.uint32) << 8) | pixels[:, 2]
    colours, counts = np.unique(packed, return_counts=True)
    background = colours[np.argmax(counts)]
    background = np.array([background >> 16, (background >> 8) & 255, background & 255], np.int16)
    off = np.abs(pixels.astype(np.int16) - background).max(axis=1) > tolerance
    return int(np.count_nonzero(off)) < min_pixels
