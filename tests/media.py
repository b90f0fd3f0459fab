"""Real media files made at test time, for every engineer's tests.

Import it from a test module as ``from media import make_video, read_index`` (pytest puts ``tests/`` on
``sys.path`` in its default import mode). The API below is kept stable; add keyword arguments, never reorder.

``make_video`` writes a real H.264 mp4 (or another codec) whose frame index is drawn into the pixels as big
binary-coded blocks, so ``read_index(frame)`` recovers it after lossy compression and tests can check that a
reader returned the right frame, upright. ``render_frame`` gives the exact picture that was encoded for an index
(for "same picture, within compression noise" checks). Helpers at the end make broken files for error tests.

Layout of an index frame (display orientation, H x W):
  * top half: a 4 x 4 grid of cells, row-major; cell k is white (bit 1) or black (bit 0). Cells 0..11 hold
    the index (12 bits, least significant first), cells 12..15 a checksum, so a frame read upside down or
    sideways is rejected instead of misread.
  * bottom half: smooth colour gradients that move with the index (red left-right, blue top-bottom), so the
    encoder has motion to code and a swapped R/B channel order is visible.
"""

from __future__ import annotations

from fractions import Fraction
import struct
from pathlib import Path

import av
import av.bitstream
import numpy as np

__all__ = [
    "INDEX_BITS",
    "MAX_INDEX",
    "corrupt_middle",
    "frame_times",
    "make_audio_only",
    "make_video",
    "chirp",
    "make_video_streams",
    "read_index",
    "render_frame",
    "set_flv_frame_rate",
    "split_hidden_frames",
    "trim_start_with_edit_list",
    "truncate",
]

INDEX_BITS = 12
MAX_INDEX = (1 << INDEX_BITS) - 1
_GRID = 4  # 4 x 4 cells in the top half
_CHECK_BITS = _GRID * _GRID - INDEX_BITS


def _checksum(index: int) -> int:
    # Folded XOR of the three nibbles, inverted in alternate bits so an all-black frame does not validate.
    return ((index ^ (index >> 4) ^ (index >> 8)) & 0xF) ^ 0b1010


def _bits(index: int) -> list[int]:
    word = index | (_checksum(index) << INDEX_BITS)
    return [(word >> k) & 1 for k in range(_GRID * _GRID)]


_TEXTURES: dict = {}


def _texture() -> np.ndarray:
    if "tile" not in _TEXTURES:
        texture = np.random.default_rng(1234).integers(0, 256, size=(96, 96)).astype(np.float32)
        for _ in range(2):  # soften it a little, like real surfaces
            texture = (texture + np.roll(texture, 1, 0) + np.roll(texture, -1, 0) + np.roll(texture, 1, 1)
                       + np.roll(texture, -1, 1)) / 5
        _TEXTURES["tile"] = texture
    return _TEXTURES["tile"]


def _camera_like_frame(index: int, height: int, width: int) -> np.ndarray:
    """A textured scene that pans, zooms and turns slowly, under moving colour gradients, with light sensor
    grain. The motion is not a pure translation (as a hand-held phone's is not), so B-frames carry residual
    and cost about what they cost in real footage; a plain scrolling texture is predicted almost for free."""
    texture = _texture()
    ys, xs = np.mgrid[0:height, 0:width].astype(np.float32)
    angle, scale = 0.004 * index, 1 + 0.3 * np.sin(index / 40)
    cx, cy = width / 2, height / 2
    u = ((xs - cx) * np.cos(angle) - (ys - cy) * np.sin(angle)) / scale + cx + 2 * index
    v = ((xs - cx) * np.sin(angle) + (ys - cy) * np.cos(angle)) / scale + cy + index
    scene = texture[v.astype(np.int64) % texture.shape[0], u.astype(np.int64) % texture.shape[1]]
    grain = np.random.default_rng(index).normal(0, 2, size=(height, width)).astype(np.float32)
    picture = np.empty((height, width, 3), dtype=np.float32)
    picture[..., 0] = 0.7 * scene + 60 * np.sin(xs / 50 + index / 10) + 40
    picture[..., 1] = 0.6 * scene + 60 * np.cos(ys / 70 - index / 15) + 50
    picture[..., 2] = 0.5 * scene + 50
    picture += grain[..., None]
    return np.clip(picture, 0, 255).astype(np.uint8)


def render_frame(index: int, height: int, width: int, *, index_in_pixels: bool = True) -> np.ndarray:
    """The upright ``height x width x 3`` uint8 RGB picture that ``make_video`` encodes as frame ``index``.

    With ``index_in_pixels=False`` the picture is "real-ish" content instead (see ``_camera_like_frame``),
    which makes the encoder and decoder work about as hard as on phone footage (no index can be read back).
    """
    if not 0 <= index <= MAX_INDEX:
        raise ValueError(f"frame index {index} does not fit in {INDEX_BITS} bits (max {MAX_INDEX})")
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    picture = np.empty((height, width, 3), dtype=np.uint8)
    if not index_in_pixels:
        return _camera_like_frame(index, height, width)
    half = height // 2
    # Bottom half: gradients that shift with the index, kept in 40..215 so they never look like a cell.
    bottom_ys = ys[half:] - half
    shift = 4.0 * index
    red = 40 + 175 * (((xs + shift) % width) / max(width - 1, 1))
    blue = 40 + 175 * (((bottom_ys + shift) % max(height - half, 1)) / max(height - half - 1, 1))
    picture[half:, :, 0] = red.astype(np.uint8)
    picture[half:, :, 1] = 90
    picture[half:, :, 2] = blue.astype(np.uint8)
    # Top half: the cells.
    for cell, bit in enumerate(_bits(index)):
        row, col = divmod(cell, _GRID)
        y0, y1 = row * half // _GRID, (row + 1) * half // _GRID
        x0, x1 = col * width // _GRID, (col + 1) * width // _GRID
        picture[y0:y1, x0:x1] = 235 if bit else 16
    return picture


def read_index(frame_rgb) -> int:
    """The frame index drawn by ``render_frame`` into an upright ``H x W x 3`` RGB frame (numpy or torch).

    Reads the mean colour of the inner part of each cell, so compression noise and scaling do not matter.
    Raises ValueError when a cell is not clearly black or white, or the checksum does not match: the frame
    is not an index frame, or it is rotated or flipped.
    """
    array = np.asarray(frame_rgb)
    if array.ndim != 3 or array.shape[2] != 3:
        raise ValueError(f"expected an H x W x 3 frame, got shape {array.shape}")
    height, width = array.shape[:2]
    half = height // 2
    word = 0
    for cell in range(_GRID * _GRID):
        row, col = divmod(cell, _GRID)
        y0, y1 = row * half / _GRID, (row + 1) * half / _GRID
        x0, x1 = col * width / _GRID, (col + 1) * width / _GRID
        # The middle half of the cell in each direction, away from edges blurred by the codec.
        ya, yb = int(y0 + (y1 - y0) / 4), max(int(y1 - (y1 - y0) / 4), int(y0 + (y1 - y0) / 4) + 1)
        xa, xb = int(x0 + (x1 - x0) / 4), max(int(x1 - (x1 - x0) / 4), int(x0 + (x1 - x0) / 4) + 1)
        channels = array[ya:yb, xa:xb].reshape(-1, 3).astype(np.float32).mean(axis=0)
        brightness = float(channels.mean())
        # A cell is grey and clearly dark or bright; the colour gradients are neither.
        if float(channels.max() - channels.min()) > 50 or 100 <= brightness <= 155:
            raise ValueError(f"no valid frame index in this frame (cell {cell} is not black or white)")
        if brightness > 128:
            word |= 1 << cell
    index = word & MAX_INDEX
    if (word >> INDEX_BITS) != _checksum(index):
        raise ValueError("no valid frame index in this frame (not an index frame, or rotated/flipped)")
    return index


def frame_times(num_frames: int, fps: float = 30, *, vfr: bool = False, start_time: float = 0.0) -> list[float]:
    """Presentation times in seconds of the frames ``make_video`` writes with the same arguments.

    Constant rate: ``start_time + i / fps``. With ``vfr=True`` the gaps cycle through 1, 2 and 3 frame
    periods (1/fps, 2/fps, 3/fps), like a phone dropping frames in low light.
    """
    times, t = [], 0
    for i in range(num_frames):
        times.append(start_time + t / fps)
        t += (i % 3) + 1 if vfr else 1
    return times


def _sine(seconds: float, sample_rate: int, channels: int, frequency: float) -> np.ndarray:
    n = int(round(seconds * sample_rate))
    tone = (0.5 * np.sin(2 * np.pi * frequency * np.arange(n) / sample_rate)).astype(np.float32)
    return np.repeat(tone[None, :], channels, axis=0)


def chirp(times: np.ndarray) -> np.ndarray:
    """The ``audio_signal="chirp"`` sound at ``times`` seconds: a sweep from 300 to 1500 Hz over 4 s (then
    again), amplitude 0.5. Unlike a steady tone it looks like itself at one time shift only, so alignment can
    be measured by cross-correlation."""
    phase_time = np.mod(times, 4.0)
    return (0.5 * np.sin(2 * np.pi * (300 * phase_time + 150 * phase_time**2))).astype(np.float32)


def _mux_audio_chunks(container, stream, samples: np.ndarray, sample_rate: int, gap: tuple | None = None):
    layout = "mono" if samples.shape[0] == 1 else "stereo"
    chunk = 1024
    skip = None
    if gap is not None:  # samples in [at, at + length) seconds are not written: the timestamps jump
        skip = (int(round(gap[0] * sample_rate)) // chunk * chunk, int(round((gap[0] + gap[1]) * sample_rate)))
    for start in range(0, samples.shape[1], chunk):
        if skip is not None and skip[0] <= start < skip[1]:
            continue
        part = np.ascontiguousarray(samples[:, start : start + chunk])
        frame = av.AudioFrame.from_ndarray(part, format="fltp", layout=layout)
        frame.sample_rate = sample_rate
        frame.pts = start
        frame.time_base = Fraction(1, sample_rate)
        for packet in stream.encode(frame):
            container.mux(packet)
    for packet in stream.encode(None):
        container.mux(packet)


def make_video(
    path,
    *,
    num_frames: int,
    height: int,
    width: int,
    fps: int = 30,
    gop: int = 12,
    bframes: int = 2,
    rotation: int = 0,
    audio: bool = False,
    start_time: float = 0.0,
    vfr: bool = False,
    codec: str = "libx264",
    index_in_pixels: bool = True,
    audio_frequency: float = 440.0,
    audio_sample_rate: int = 44100,
    audio_channels: int = 2,
    faststart: bool = False,
    crf: int = 18,
    open_gop: bool = False,
    muxer_options: dict | None = None,
    display_matrix=None,
    coded_picture=None,
    audio_codec: str = "aac",
    audio_signal: str = "sine",
    audio_gap: tuple[float, float] | None = None,
) -> Path:
    """Write a real video file and return its path.

    ``height x width`` is the upright (display) size; both must be even for yuv420p. ``rotation`` (0, 90, -90,
    180, 270) is the display-matrix rotation a phone writes (degrees counter-clockwise, as PyAV's
    ``frame.rotation``): the picture is stored turned the other way, so a reader that applies the rotation gets
    back ``render_frame(i, height, width)`` upright, and one that ignores it gets a sideways picture.

    ``gop``: frames between keyframes (x264 scene-cut detection off, so keyframes fall exactly every ``gop``);
    ``bframes``: max consecutive B-frames (0 for none). ``start_time``: presentation time of the first video
    frame, in seconds (the mp4 gets an edit list); with ``audio=True`` the audio track still starts at 0 and
    lasts until the end of the video. ``vfr``: irregular frame gaps, see ``frame_times``. ``audio``: an AAC sine
    tone of ``audio_frequency`` Hz, amplitude 0.5, on ``audio_channels`` identical channels. ``codec``: an FFmpeg
    encoder name (``libx264``, ``libx265``, ``mpeg4``, ``libvpx-vp9`` with a ``.webm`` path). ``faststart``:
    put the index (moov) before the data, as streaming sites do. ``crf``: x264/x265 quality (lower = better).
    ``open_gop``: keyframes after the first are not IDR and the B-frames shown just before them are coded after
    them, referencing the previous GOP (x264/x265). ``muxer_options``: options for the container's muxer (e.g.
    ``{"live": "1"}`` for a WebM written as a live stream, with no duration). ``display_matrix``: nine int32
    values written as the stream's display matrix instead of ``rotation``, with ``coded_picture`` the function
    that turns the upright picture into the stored one (what FFmpeg's autorotate undoes for that matrix).
    ``codec="libsvtav1"`` writes AV1 whose temporal units carry hidden alt-ref frames. ``audio_codec``: ``aac``
    or ``libopus`` (48 kHz, for WebM/MKV); ``audio_signal="chirp"`` writes ``chirp(t)`` instead of the tone;
    ``audio_gap=(at, length)`` leaves that many seconds of audio out from ``at`` on (rounded to whole 1024-sample
    frames at the start), so the audio timestamps jump there while the later sound stays at its own time.
    """
    path = Path(path)
    if height % 2 or width % 2:
        raise ValueError(f"height and width must be even for yuv420p, got {height}x{width}")
    if codec == "libx265" and min(height, width) < 64:
        # x265 corrupts its heap (and aborts the interpreter) on pictures narrower than one 64-pixel CTU.
        raise ValueError(f"libx265 needs height and width of at least 64, got {height}x{width}")
    if rotation % 90:
        raise ValueError(f"rotation must be a multiple of 90 degrees, got {rotation}")
    if num_frames - 1 > MAX_INDEX and index_in_pixels:
        raise ValueError(f"at most {MAX_INDEX + 1} frames can carry an index")
    quarter_turns = (rotation // 90) % 4
    coded_height, coded_width = (width, height) if quarter_turns % 2 else (height, width)
    if coded_picture is not None:
        coded_height, coded_width = coded_picture(np.zeros((height, width, 1), dtype=np.uint8)).shape[:2]
    times = frame_times(num_frames, fps, vfr=vfr, start_time=start_time)

    container_options = {"movflags": "+faststart"} if faststart else {}
    container_options.update(muxer_options or {})
    container = av.open(str(path), mode="w", options=container_options)
    try:
        stream = container.add_stream(codec, rate=fps)
        stream.width, stream.height = coded_width, coded_height
        stream.pix_fmt = "yuv420p"
        # Ticks of 1/(fps*6) represent every VFR gap and a start_time in whole 1/6 frames exactly.
        tick = Fraction(1, int(fps) * 6)
        stream.codec_context.time_base = tick
        stream.time_base = tick
        stream.codec_context.gop_size = gop
        stream.codec_context.max_b_frames = bframes
        stream.codec_context.thread_count = 1
        if codec == "libx264":
            stream.codec_context.options = {
                "preset": "veryfast",
                "crf": str(crf),
                "x264-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}"
                               + (":open-gop=1" if open_gop else ""),
            }
        elif codec == "libx265":
            stream.codec_context.options = {
                "preset": "ultrafast",
                "crf": str(crf),
                "x265-params": f"keyint={gop}:min-keyint={gop}:scenecut=0:bframes={bframes}:open-gop="
                               f"{int(open_gop)}:log-level=error",
            }
        elif codec == "libvpx-vp9":
            stream.codec_context.options = {"deadline": "realtime", "cpu-used": "8", "crf": "20", "b": "0"}
        elif codec == "libsvtav1":
            stream.codec_context.options = {"preset": "12", "crf": "30", "svtav1-params": f"keyint={gop}:lp=1"}
        if display_matrix is not None:
            stream.set_display_matrix(list(display_matrix))
        elif rotation % 360:
            stream.set_display_rotation(rotation)
        audio_stream = None
        if audio:
            audio_stream = container.add_stream(audio_codec, rate=audio_sample_rate,
                                                layout="mono" if audio_channels == 1 else "stereo")
        for i in range(num_frames):
            picture = render_frame(i, height, width, index_in_pixels=index_in_pixels)
            # Store the picture turned clockwise by the rotation, so that turning it counter-clockwise by the
            # display rotation (what players do) gives it back upright.
            stored = np.ascontiguousarray(coded_picture(picture) if coded_picture is not None
                                          else np.rot90(picture, k=-quarter_turns))
            frame = av.VideoFrame.from_ndarray(stored, format="rgb24")
            frame.pts = int(round(times[i] / tick))
            frame.time_base = tick
            for packet in stream.encode(frame):
                container.mux(packet)
        for packet in stream.encode(None):
            container.mux(packet)
        if audio_stream is not None:
            last_gap = (times[-1] - times[-2]) if num_frames > 1 else 1.0 / fps
            seconds = times[-1] + last_gap
            if audio_signal == "chirp":
                tone = chirp(np.arange(int(round(seconds * audio_sample_rate))) / audio_sample_rate)
                samples = np.repeat(tone[None, :], audio_channels, axis=0)
            else:
                samples = _sine(seconds, audio_sample_rate, audio_channels, audio_frequency)
            _mux_audio_chunks(container, audio_stream, samples, audio_sample_rate, audio_gap)
    finally:
        container.close()
    return path


def make_audio_only(path, *, seconds: float = 1.0, sample_rate: int = 16000, frequency: float = 440.0) -> Path:
    """Write an ``.mp4`` (or ``.m4a``) holding only an AAC sine tone and no video stream."""
    path = Path(path)
    container = av.open(str(path), mode="w")
    try:
        stream = container.add_stream("aac", rate=sample_rate, layout="mono")
        _mux_audio_chunks(container, stream, _sine(seconds, sample_rate, 1, frequency), sample_rate)
    finally:
        container.close()
    return path


def truncate(src, dst, *, keep_fraction: float) -> Path:
    """Copy the first ``keep_fraction`` of ``src``'s bytes to ``dst`` (a download cut off part way).

    With the default mp4 layout (index at the end) this cuts off the moov; with ``faststart=True`` videos it
    cuts the frame data (mdat) and leaves the index promising frames that are not there.
    """
    data = Path(src).read_bytes()
    Path(dst).write_bytes(data[: int(len(data) * keep_fraction)])
    return Path(dst)


def corrupt_middle(src, dst, *, at_fraction: float = 0.5, length: int = 4096, seed: int = 0) -> Path:
    """Copy ``src`` to ``dst`` with ``length`` bytes at ``at_fraction`` of the file replaced by random bytes."""
    data = bytearray(Path(src).read_bytes())
    start = int(len(data) * at_fraction)
    length = min(length, len(data) - start)
    data[start : start + length] = np.random.default_rng(seed).integers(0, 256, length, dtype=np.uint8).tobytes()
    Path(dst).write_bytes(bytes(data))
    return Path(dst)


def _boxes(data: bytes, start: int, end: int):
    offset = start
    while offset + 8 <= end:
        size, kind = struct.unpack(">I4s", data[offset : offset + 8])
        header = 8
        if size == 1:
            size, header = struct.unpack(">Q", data[offset + 8 : offset + 16])[0], 16
        elif size == 0:
            size = end - offset
        yield kind, offset + header, offset + size
        offset += size


def trim_start_with_edit_list(src, dst, *, skip_frames: int, fps: int = 30) -> Path:
    """Copy an mp4 made by ``make_video`` (constant rate ``fps``) to ``dst`` with its video edit list changed to
    start ``skip_frames`` frames later, as editing apps trim a clip without re-encoding.

    The skipped frames stay in the file (a decoder still needs their keyframe) but players, and a full
    decode with FFmpeg, start at frame ``skip_frames``: its index becomes 0.
    """
    data = bytearray(Path(src).read_bytes())
    movie_scale = None
    for kind, payload, end in _boxes(data, 0, len(data)):
        if kind != b"moov":
            continue
        for sub, sub_payload, sub_end in _boxes(data, payload, end):
            if sub == b"mvhd":
                version = data[sub_payload]
                movie_scale = struct.unpack(">I", data[sub_payload + (20 if version else 12):][:4])[0]
            if sub != b"trak":
                continue
            elst, media_scale, is_video = None, None, False
            for box, box_payload, box_end in _boxes(data, sub_payload, sub_end):
                if box == b"edts":
                    for inner, inner_payload, _ in _boxes(data, box_payload, box_end):
                        if inner == b"elst":
                            elst = inner_payload
                elif box == b"mdia":
                    for inner, inner_payload, _ in _boxes(data, box_payload, box_end):
                        if inner == b"mdhd":
                            version = data[inner_payload]
                            media_scale = struct.unpack(">I", data[inner_payload + (20 if version else 12):][:4])[0]
                        elif inner == b"hdlr":
                            is_video = data[inner_payload + 8 : inner_payload + 12] == b"vide"
            if not is_video:
                continue
            if elst is None or data[elst] != 0 or movie_scale is None or media_scale is None:
                raise ValueError(f"{src}: no version-0 edit list on the video track to change")
            count = struct.unpack(">I", data[elst + 4 : elst + 8])[0]
            entry = elst + 8 + 12 * (count - 1)  # the last entry holds the media (earlier ones are empty edits)
            duration, media_time = struct.unpack(">Ii", data[entry : entry + 8])
            duration -= skip_frames * movie_scale // fps
            media_time += skip_frames * media_scale // fps
            data[entry : entry + 8] = struct.pack(">Ii", duration, media_time)
            Path(dst).write_bytes(bytes(data))
            return Path(dst)
    raise ValueError(f"{src}: no video track found")


def split_hidden_frames(src, dst) -> Path:
    """Copy a VP9 or AV1 video to ``dst`` with every hidden (alt-ref) frame in a packet of its own that shares
    the timestamp of the shown frame after it, as some WebM writers store them: more packets than frames."""
    with av.open(str(src)) as source, av.open(str(dst), mode="w") as target:
        stream = source.streams.video[0]
        name = {"vp9": "vp9_superframe_split", "av1": "av1_frame_split"}[stream.codec_context.name
                                                                         .replace("libdav1d", "av1")]
        splitter = av.bitstream.BitStreamFilterContext(name, stream)
        out = target.add_stream_from_template(stream, opaque=True)  # the decoder's codec: there is no encoder
        for packet in source.demux(stream):
            for piece in splitter.filter(packet if packet.size else None):
                if piece.pts is None:
                    piece.pts = piece.dts
                piece.stream = out
                target.mux(piece)
    return Path(dst)


def make_video_streams(path, streams: list[dict], *, default: int | None = None) -> Path:
    """An mp4 holding several H.264 video streams, each ``make_video`` arguments (num_frames, height, width,
    fps, gop; index frames in the pixels), as phone motion photos and test files do. ``default``: the stream
    marked as the default one (the mp4 muxer otherwise marks the first)."""
    path = Path(path)
    container = av.open(str(path), mode="w")
    try:
        outs = []
        for spec in streams:
            stream = container.add_stream("libx264", rate=spec.get("fps", 30))
            stream.width, stream.height, stream.pix_fmt = spec["width"], spec["height"], "yuv420p"
            stream.codec_context.options = {"preset": "veryfast", "crf": "18",
                                            "x264-params": f"keyint={spec.get('gop', 12)}:scenecut=0"}
            outs.append(stream)
        if default is not None:
            for number, stream in enumerate(outs):
                stream.disposition = av.stream.Disposition.default if number == default else 0
        for stream, spec in zip(outs, streams):
            for i in range(spec["num_frames"]):
                frame = av.VideoFrame.from_ndarray(render_frame(i, spec["height"], spec["width"]), format="rgb24")
                frame.pts = i
                frame.time_base = Fraction(1, spec.get("fps", 30))
                for packet in stream.encode(frame):
                    container.mux(packet)
            for packet in stream.encode(None):
                container.mux(packet)
    finally:
        container.close()
    return path


def set_flv_frame_rate(src, dst, fps: float) -> Path:
    """Copy an FLV to ``dst`` with the ``framerate`` of its onMetaData header changed to ``fps`` (some writers
    store a wrong one, such as 1000 from the 1/1000 time base)."""
    data = bytearray(Path(src).read_bytes())
    at = data.find(b"\x00\x09framerate")
    if at < 0 or data[at + 11] != 0:  # AMF0 number after the key
        raise ValueError(f"{src}: no framerate number in the FLV header")
    data[at + 12 : at + 20] = struct.pack(">d", fps)
    Path(dst).write_bytes(bytes(data))
    return Path(dst)
