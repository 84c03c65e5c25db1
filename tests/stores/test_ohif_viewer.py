"""Our SEG in the OHIF viewer: CT + SEG in a real Orthanc, OHIF served by review/ohif/serve.py, headless Chromium.

Proves the reviewer setup of review/ohif/README.md end to end: the app-config reaches Orthanc through
the same-origin proxy, the CT displays, and OHIF loads our LABELMAP SEG (deflated, the default) — its segment
labels appear in OHIF's segmentation panel and coloured overlay pixels appear over the grey CT.
The screenshots stay in ``test-artifacts/ohif/`` for a person to look at.

OHIF 3.13.2 does not load our BINARY SEG of this sample (see the README): the test uses LABELMAP.
"""

from __future__ import annotations

import io
import re
from pathlib import Path

import numpy as np
import pydicom
import pytest

from dicom_io.stores import open_store
from review.ohif.serve import make_server, serve_in_thread
from tests.support.ohif import CHROMIUM_ARGS, OHIF_VERSION, ToolMissingError, chromium_executable, ohif_dist, require_playwright

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "test-artifacts" / "ohif"
LOAD_TIMEOUT_MS = 60_000
COLOURED_MIN_PIXELS = 500  # the SEG overlay covers thousands of viewport pixels on any slice of the sample
SATURATION = 60  # max(r,g,b) - min(r,g,b): 0 on the grey CT, large on segment colours


@pytest.fixture(scope="session")
def ohif_url(orthanc) -> str:
    """OHIF served against the session's Orthanc, on a free loopback port, for the whole session."""
    try:
        dist = ohif_dist()
    except ToolMissingError as error:
        pytest.fail(str(error))
    server = make_server(dist, orthanc.dicomweb_url, port=0, quiet=True)
    serve_in_thread(server)
    try:
        yield f"http://127.0.0.1:{server.server_port}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="session")
def chromium(tmp_path_factory):
    """A headless Debian Chromium with a fresh profile, driven by Playwright."""
    try:
        require_playwright()
        executable = chromium_executable()
    except ToolMissingError as error:
        pytest.fail(str(error))
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            tmp_path_factory.mktemp("chromium-profile"), executable_path=executable, headless=True,
            args=list(CHROMIUM_ARGS), viewport={"width": 1600, "height": 1000}, service_workers="block",
        )
        try:
            yield context
        finally:
            context.close()


def _rgb(png: bytes) -> np.ndarray:
    from PIL import Image

    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=np.int16)


def _coloured_pixels(png: bytes) -> int:
    """Pixels that are clearly not grey in the middle of the viewport: segment overlay, never CT.

    The middle 80 %: the viewport's edges hold OHIF's coloured frame and icons.
    """
    rgb = _rgb(png)
    h, w = rgb.shape[:2]
    middle = rgb[h // 10: h - h // 10, w // 10: w - w // 10]
    return int(np.count_nonzero(middle.max(axis=-1) - middle.min(axis=-1) > SATURATION))


def _grey_spread(png: bytes) -> float:
    """Standard deviation of the grey levels: near 0 for a blank viewport, large for a CT slice."""
    return float(_rgb(png).mean(axis=-1).std())


def test_ohif_shows_the_ct_and_loads_our_labelmap_seg(empty_orthanc, ohif_url, chromium, sample_dir, sample_seg):
    assert sample_seg.SOPClassUID == "1.2.840.10008.5.1.4.1.1.66.7"  # Label Map Segmentation Storage
    labels = [item.SegmentLabel for item in sample_seg.SegmentSequence]
    assert "T12 vertebra" in labels and "Left rib 7" in labels  # ours: the schema's display names
    store = open_store(empty_orthanc.dicomweb_url, timeout=30)
    ct_files = sorted((sample_dir / "ct").glob("*.dcm"))
    for path in ct_files:
        store.put(pydicom.dcmread(path))  # whole files: CTSeries.datasets hold headers only
    store.put(sample_seg)

    check_seg_in_ohif(chromium, ohif_url, sample_seg, n_ct_images=len(ct_files), name="labelmap_seg")


def check_seg_in_ohif(chromium, ohif_url: str, seg, *, n_ct_images: int, name: str) -> None:
    """Open ``seg``'s study in OHIF, check the CT shows, load ``seg`` and check its segments are listed and drawn."""
    from playwright.sync_api import TimeoutError as PlaywrightTimeoutError

    labels = [item.SegmentLabel for item in seg.SegmentSequence]
    page = chromium.new_page()
    dicomweb_errors: list[str] = []
    page_errors: list[str] = []
    page.on("response", lambda r: dicomweb_errors.append(f"{r.status} {r.url}") if "/dicom-web/" in r.url and r.status >= 400 else None)
    page.on("pageerror", lambda error: page_errors.append(str(error)))
    # first-visit overlays (guided tour, investigational-use notice) are dismissed whenever they show up
    page.add_locator_handler(page.get_by_text("Skip all", exact=True), lambda button: button.click())
    page.add_locator_handler(page.get_by_role("button", name="Confirm and hide"), lambda button: button.click())
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    try:
        page.goto(f"{ohif_url}/viewer?StudyInstanceUIDs={seg.StudyInstanceUID}")

        # The CT: all its images in the viewport, and a real picture on the canvas.
        instance_overlay = page.locator('[data-cy="viewport-overlay-bottom-right"]')
        instance_overlay.get_by_text(re.compile(rf"\(\d+/{n_ct_images}\)")).wait_for(timeout=LOAD_TIMEOUT_MS)
        canvas = page.locator('[data-cy="viewport-pane"] canvas').first
        page.wait_for_timeout(500)  # the image is drawn just after its overlay text
        before = canvas.screenshot()
        assert _grey_spread(before) > 20, "the viewport canvas is blank: the CT was not drawn"
        assert _coloured_pixels(before) < COLOURED_MIN_PIXELS / 10, "colour on the CT before any SEG was opened"
        page.screenshot(path=ARTIFACTS / f"{name}_1_ct.png")

        # The SEG series in the study browser; opening it asks to hydrate it into the CT viewport.
        seg_entry = page.locator('[data-cy="study-browser-thumbnail-no-image"]').filter(
            has=page.locator('[data-cy="series-modality-label"]', has_text="SEG")).filter(has_text=seg.SeriesDescription)
        seg_entry.wait_for(timeout=LOAD_TIMEOUT_MS)
        assert seg_entry.count() == 1
        seg_entry.dblclick()
        try:
            page.get_by_text("Do you want to open this Segmentation?").wait_for(timeout=LOAD_TIMEOUT_MS)
        except PlaywrightTimeoutError:
            pytest.fail(f"OHIF did not load the SEG ({seg.SOPClassUID}) within {LOAD_TIMEOUT_MS / 1000:.0f} s; "
                        f"failed DICOMweb requests: {dicomweb_errors[:5]}; page errors: {page_errors[:5]}")
        page.get_by_role("button", name="Yes", exact=True).click()

        # Our segments, by label, in OHIF's segmentation panel: read from the SEG's SegmentSequence.
        page.locator('[data-cy="panelSegmentation-btn"]').click()
        titles = page.locator('[data-cy="data-row-title"]')
        try:
            titles.nth(len(labels) - 1).wait_for(timeout=LOAD_TIMEOUT_MS)
        except PlaywrightTimeoutError:
            pytest.fail(f"OHIF's segmentation panel lists {titles.all_inner_texts()}, not the SEG's {len(labels)} segments")
        assert titles.all_inner_texts() == labels
        page.wait_for_timeout(500)
        coloured = _coloured_pixels(canvas.screenshot())
        assert coloured >= COLOURED_MIN_PIXELS, f"only {coloured} coloured pixels: the segmentation is not drawn over the CT"

        error_toasts = page.locator('[data-sonner-toast][data-type="error"]').all_inner_texts()
        assert not error_toasts, f"OHIF reported errors: {error_toasts}"
        assert not dicomweb_errors, f"DICOMweb requests failed through the proxy: {dicomweb_errors}"
        assert not page_errors, f"uncaught errors in the page: {page_errors}"
    finally:
        try:
            page.screenshot(path=ARTIFACTS / f"{name}_2_loaded.png")
        finally:
            page.close()
        print(f"OHIF {OHIF_VERSION} screenshots: {ARTIFACTS}")
