"""The predict page in a real browser: headless Chromium (Debian's `chromium` + `chromium-driver`, driven by
Selenium) opens the page of a real `pmv serve` process, uploads a synthetic portrait video, and reads the top-1 and
the three crop boxes from the page; the taxonomy page is searched. Screenshots are kept as test artefacts (under
pytest's temporary folder; ``PMV_ARTEFACTS=DIR`` copies them there too)."""

import os
import shutil
import tempfile
import time
from pathlib import Path

import pytest

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
CHROMEDRIVER = shutil.which("chromedriver")
if not (CHROMIUM and CHROMEDRIVER):
    pytest.skip("Debian's chromium and chromium-driver are not installed (apt-get install chromium chromium-driver; "
                ".ci/run does this)", allow_module_level=True)

from selenium import webdriver  # noqa: E402
from selenium.webdriver.common.by import By  # noqa: E402
from selenium.webdriver.support import expected_conditions as EC  # noqa: E402
from selenium.webdriver.support.ui import WebDriverWait  # noqa: E402

from inference_helpers import trained_run  # noqa: E402
from serve_helpers import ServerProcess  # noqa: E402

FLAGS = ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--disable-dev-shm-usage", "--window-size=1280,900"]


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    return trained_run(tmp_path_factory.getbasetemp())


@pytest.fixture(scope="module")
def server(run, tmp_path_factory):
    folder = tmp_path_factory.mktemp("browser_serve")
    process = ServerProcess(["--checkpoint", str(run.checkpoint), "--device", "cpu", "--tmp-dir",
                             str(folder / "uploads"), "--views", "1x3", "--lists", str(run.list_dir), "--report",
                             str(run.report_dir)], folder / "server.log")
    try:
        process.wait_ready()
        yield process
    finally:
        process.stop()


@pytest.fixture(scope="module")
def browser():
    profile = tempfile.mkdtemp(prefix="pmv-chromium-")  # a fresh profile: nothing from earlier runs
    options = webdriver.ChromeOptions()
    options.binary_location = CHROMIUM
    for flag in FLAGS + [f"--user-data-dir={profile}"]:
        options.add_argument(flag)
    driver = webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=CHROMEDRIVER))
    driver.set_page_load_timeout(60)
    try:
        yield driver
    finally:
        driver.quit()
        shutil.rmtree(profile, ignore_errors=True)


def _keep(png: Path) -> None:
    target = os.environ.get("PMV_ARTEFACTS")
    if target:
        Path(target).mkdir(parents=True, exist_ok=True)
        shutil.copyfile(png, Path(target) / png.name)


def test_upload_on_the_page_shows_top1_and_three_crops(server, browser, run, tmp_path):
    from pmv.acquire.synth import SynthOptions, synthesize

    # a fresh synthetic portrait video (taller than the model's view, so the three crops differ)
    summary = synthesize(tmp_path / "clip", SynthOptions(kinds=("position",), classes_per_kind=2,
                                                         train_per_class=1, val_per_class=0, test_per_class=0,
                                                         size=(160, 90), duration=2.0, workers=1), progress=False)
    video = sorted(Path(summary.root).glob("*.mp4"))[0]
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: d.find_element(By.ID, "model").text.startswith("tiny"))
    browser.find_element(By.ID, "file").send_keys(str(video))
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") in ("done", "error"))
    assert browser.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "done", \
        browser.find_element(By.ID, "status").text
    top1 = browser.find_element(By.ID, "top1").text
    assert top1 in run.class_names
    bars = browser.find_elements(By.CSS_SELECTOR, "#top5 .bar-row")
    assert len(bars) == 4 and bars[0].get_attribute("data-name") == top1  # 4 classes: top-5 shows all four
    boxes = browser.find_elements(By.CSS_SELECTOR, "#frame .crop-box")
    assert [b.get_attribute("data-name") for b in boxes] == ["top", "centre", "bottom"]
    assert all(b.get_attribute("data-top1") in run.class_names for b in boxes)
    # drawn where they belong on the frame: stacked from top to bottom, inside the picture
    image = browser.find_element(By.ID, "frame-img")
    wait.until(lambda d: d.execute_script("return arguments[0].complete && arguments[0].naturalHeight", image))
    frame_rect = image.rect
    tops = [b.rect["y"] for b in boxes]
    assert tops == sorted(tops) and tops[0] < tops[2]
    for box in boxes:
        assert box.rect["y"] >= frame_rect["y"] - 1
        assert box.rect["y"] + box.rect["height"] <= frame_rect["y"] + frame_rect["height"] + 8
    assert browser.find_element(By.ID, "player").get_attribute("src").startswith("blob:")
    time.sleep(0.5)  # let the player paint a frame for the screenshot
    png = tmp_path / "serve_page.png"
    browser.save_screenshot(str(png))
    assert png.stat().st_size > 10_000
    _keep(png)


def test_a_text_file_shows_the_reason(server, browser, tmp_path):
    text = tmp_path / "notes.mp4"
    text.write_text("not a video")
    browser.get(server.url + "/")
    wait = WebDriverWait(browser, 60)
    wait.until(EC.presence_of_element_located((By.ID, "file")))
    browser.find_element(By.ID, "file").send_keys(str(text))
    wait.until(lambda d: d.find_element(By.TAG_NAME, "body").get_attribute("data-state") == "error")
    assert "415" in browser.find_element(By.ID, "status").text


def test_taxonomy_page_search_and_class_videos(server, browser, run, tmp_path):
    browser.get(server.url + "/taxonomy")
    wait = WebDriverWait(browser, 60)
    wait.until(lambda d: len(d.find_elements(By.CSS_SELECTOR, "#classes tr")) == 4)
    browser.find_element(By.ID, "search").send_keys("waving")
    names = [e.text for e in browser.find_elements(By.CSS_SELECTOR, "#classes .class-name")]
    assert names == ["waving at the top", "waving at the bottom"]
    browser.find_elements(By.CSS_SELECTOR, "#classes tr")[0].click()
    wait.until(lambda d: d.find_element(By.ID, "detail-name").text.endswith("waving at the top"))
    right = int(browser.find_element(By.ID, "right-count").text)
    wrong = int(browser.find_element(By.ID, "wrong-count").text)
    assert right + wrong == 2
    assert len(browser.find_elements(By.CSS_SELECTOR, "#detail video")) == 2
    png = tmp_path / "taxonomy_page.png"
    browser.save_screenshot(str(png))
    _keep(png)
