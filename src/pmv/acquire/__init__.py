"""Getting and preparing datasets: annotations, downloads, checks, re-encoding, synthetic data.

Nothing in the clip pipeline (``pmv.data``) imports this package; it is the data tools behind ``pmv download`` and
``pmv data fetch-annotations|check|prepare|synth``.
"""

from pmv.acquire.check import CheckReport, ClipNeed, VideoCheck, check_video, check_videos, collect_check_sources
from pmv.acquire.download import DownloadOptions, download_videos, import_mirror, read_links
from pmv.acquire.fetch import Expectations, fetch_annotations
from pmv.acquire.prepare import PrepareOptions, prepare_video, prepare_videos
from pmv.acquire.synth import SynthOptions, synthesize

__all__ = [
    "CheckReport",
    "ClipNeed",
    "DownloadOptions",
    "Expectations",
    "PrepareOptions",
    "SynthOptions",
    "VideoCheck",
    "check_video",
    "check_videos",
    "collect_check_sources",
    "download_videos",
    "fetch_annotations",
    "import_mirror",
    "prepare_video",
    "prepare_videos",
    "read_links",
    "synthesize",
]
