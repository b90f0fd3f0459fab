"""Which frames a video stream holds and where each one is, so a decode can be started right before it.

A frame is what the decoder outputs in a full sequential decode, not a packet. For most codecs each packet
carries one frame and the index is read from the packets alone (no decoding). Some packets carry no frame or
several: VP8/VP9/AV1 hidden (alt-ref) frames, VP9 superframes, AV1 temporal units that also show an earlier
frame. For those codecs the packet headers are parsed to count the frames each packet shows; when packets and
frames still do not map one to one (a packet showing two frames, shown packets sharing a timestamp, packets
without timestamps), the index is built by decoding the stream once, which is exact by definition.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from fractions import Fraction

import av
import numpy as np

from pmv.video._pyav import REDOWNLOAD_HINT, open_input
from pmv.video.errors import CorruptVideoError

logger = logging.getLogger(__name__)

PACKETS = "packets"  # each shown packet holds one frame; frames are found by pts and decoded from a keyframe
DECODED = "decoded"  # built by a full decode; frames are found by pts and decoded from a keyframe
SEQUENTIAL = "sequential"  # output timestamps are missing or repeat: frames are counted from the stream start


@dataclass(frozen=True)
class FrameIndex:
    """Where each frame of a video stream is. Packet arrays are in decode (file) order; frame arrays in
    presentation order."""

    time_base: Fraction
    packet_pts: np.ndarray  # int64, pts (else dts) of each packet
    packet_dts: np.ndarray  # int64, dts (else pts) of each packet: what demuxers seek by
    packet_pos: np.ndarray  # int64, byte offset of each packet in the file, -1 when unknown
    packet_is_key: np.ndarray  # bool
    key_positions: np.ndarray  # int64, decode-order positions of the keyframe packets
    frame_pts: np.ndarray  # int64, sorted: pts of frame i
    frame_packet: np.ndarray  # int32: the packet that holds frame i (mode DECODED: after which it comes out)
    end_pts: int  # pts where the last frame stops being shown
    mode: str = PACKETS
    truncated: str = ""  # why the stream is known to stop early ("" when it is complete)

    @property
    def num_frames(self) -> int:
        return len(self.frame_pts)

    def frame_seconds(self) -> np.ndarray:
        return self.frame_pts.astype(np.float64) * float(self.time_base)

    def keyframe_for(self, frame: int) -> int:
        """Decode-order position of the keyframe a decode must start at to produce ``frame`` exactly.

        The last keyframe at or before the frame's packet whose own pts is not later than the frame's
        (in an open GOP, the frames shown before a keyframe but coded after it need the previous GOP).
        """
        if self.mode == SEQUENTIAL:
            return 0
        position = int(self.frame_packet[frame])
        pts = self.frame_pts[frame]
        keys = self.key_positions
        at = int(np.searchsorted(keys, position, side="right")) - 1
        while at >= 0 and self.packet_pts[keys[at]] > pts:
            at -= 1
        return int(keys[at]) if at >= 0 else 0


class PacketLocator:
    """Finds a demuxed packet's decode-order position in an index: by byte offset where the container gives
    one to every packet, else by timestamp."""

    def __init__(self, index: FrameIndex):
        self._index = index
        pos = index.packet_pos
        self._by_pos = None
        if len(pos) and (pos >= 0).all() and len(np.unique(pos)) == len(pos):
            self._by_pos = dict(zip(pos.tolist(), range(len(pos))))
        self._by_ts: dict[tuple, int] | None = None

    def __call__(self, packet) -> int:
        if self._by_pos is not None and packet.pos is not None and packet.pos >= 0:
            found = self._by_pos.get(int(packet.pos))
            if found is not None:
                return found
        if self._by_ts is None:
            self._by_ts = {}
            index = self._index
            for i, key in enumerate(zip(index.packet_pts.tolist(), index.packet_dts.tolist())):
                self._by_ts.setdefault(key, i)  # shared timestamps: the first packet that has them
        return self._by_ts.get(packet_times(packet), -1)


def locator_for(index: FrameIndex) -> PacketLocator:
    """The index's packet locator, built once per index (indexes are cached per process)."""
    locator = index.__dict__.get("_locator")
    if locator is None:
        locator = PacketLocator(index)
        object.__setattr__(index, "_locator", locator)  # a cache, not part of the frozen value
    return locator


def is_flush(packet) -> bool:
    """The empty packet PyAV's demux yields at the end of a stream."""
    return packet.size == 0 and packet.pts is None and packet.dts is None


def packet_times(packet) -> tuple[int | None, int | None]:
    pts, dts = packet.pts, packet.dts
    return (pts if pts is not None else dts), (dts if dts is not None else pts)


# -- frames shown per packet, from codec headers --------------------------------------------------------------
class _Bits:
    def __init__(self, data: bytes):
        self.data, self.at = data, 0

    def read(self, count: int) -> int:
        value = 0
        for _ in range(count):
            byte = self.data[self.at >> 3] if (self.at >> 3) < len(self.data) else 0
            value = (value << 1) | ((byte >> (7 - (self.at & 7))) & 1)
            self.at += 1
        return value


def _vp9_frame_shown(frame: bytes) -> int:
    if not frame:
        return 0
    bits = _Bits(frame[:2])
    if bits.read(2) != 2:  # frame marker
        return 1  # not a VP9 frame header: let the decoder decide, count it as shown
    profile = bits.read(1) | (bits.read(1) << 1)
    if profile == 3:
        bits.read(1)
    if bits.read(1):  # show_existing_frame
        return 1
    bits.read(1)  # frame_type
    return bits.read(1)  # show_frame


def vp9_shown(data: bytes) -> int:
    """Frames a VP9 packet shows: a superframe (several frames and an index at its end) or one frame."""
    if not data:
        return 0
    marker = data[-1]
    if marker & 0xE0 == 0xC0:
        frames, size_bytes = (marker & 7) + 1, ((marker >> 3) & 3) + 1
        index_size = 2 + size_bytes * frames
        if len(data) >= index_size and data[-index_size] == marker:
            shown, offset, at = 0, 0, len(data) - index_size + 1
            for _ in range(frames):
                size = int.from_bytes(data[at : at + size_bytes], "little")
                at += size_bytes
                shown += _vp9_frame_shown(data[offset : offset + size])
                offset += size
            return shown
    return _vp9_frame_shown(data)


def vp8_shown(data: bytes) -> int:
    """Frames a VP8 packet shows: its frame tag's show_frame bit."""
    return (data[0] >> 4) & 1 if data else 0


def _leb128(data: bytes, at: int) -> tuple[int, int]:
    value = 0
    for i in range(8):
        if at >= len(data):
            break
        byte = data[at]
        at += 1
        value |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            break
    return value, at


def av1_shown(data: bytes) -> int:
    """Frames an AV1 packet shows: frame headers with show_frame or show_existing_frame set."""
    shown, at = 0, 0
    while at < len(data):
        header = data[at]
        kind, has_extension, has_size = (header >> 3) & 15, (header >> 2) & 1, (header >> 1) & 1
        at += 1 + has_extension
        if has_size:
            size, at = _leb128(data, at)
        else:
            size = len(data) - at
        if kind in (3, 6) and at < len(data):  # OBU_FRAME_HEADER, OBU_FRAME
            first = data[at]
            # show_existing_frame, then frame_type (2 bits) and show_frame. (Still pictures with a reduced
            # header, which have no such bits, are not video streams.)
            shown += 1 if first & 0x80 or first & 0x10 else 0
        at += size
    return shown


SHOWN_COUNTERS = {"vp9": vp9_shown, "libvpx-vp9": vp9_shown, "vp8": vp8_shown, "libvpx": vp8_shown,
                  "av1": av1_shown, "libdav1d": av1_shown, "libaom-av1": av1_shown}


def _codec_id_name(stream) -> str:
    try:
        return stream.codec_context.codec.name
    except AttributeError:
        return ""


# -- building ---------------------------------------------------------------------------------------------------
def build_frame_index(container, stream, path: str, size_bytes: int | None = None) -> FrameIndex:
    """Demux every packet of ``stream`` once (and decode it once where packets do not map to frames).

    Packets cut off by the end of the file (or unreadable at its end) are left out and the index says it is
    ``truncated``; the frames before the cut stay readable.
    """
    counter = SHOWN_COUNTERS.get(stream.codec_context.name) or SHOWN_COUNTERS.get(_codec_id_name(stream))
    pts_list, dts_list, pos_list, key_list, usable_list, shown_list, duration_list = [], [], [], [], [], [], []
    cut_list = []  # the packet's bytes run past the end of the file, or the demuxer read it short
    raw_pts_list = []
    truncated = ""
    try:
        for packet in container.demux(stream):
            if is_flush(packet):
                continue
            raw_pts_list.append(packet.pts)
            pts, dts = packet_times(packet)
            pts_list.append(pts)
            dts_list.append(dts)
            pos = packet.pos if packet.pos is not None else -1
            pos_list.append(pos)
            key_list.append(bool(packet.is_keyframe))
            usable_list.append(packet.size > 0 and not packet.is_discard)
            shown_list.append(counter(bytes(packet)) if counter is not None and packet.size else 1)
            duration_list.append(packet.duration or 0)
            cut_list.append(bool(packet.is_corrupt) or
                            (size_bytes is not None and pos >= 0 and pos + packet.size > size_bytes))
    except av.error.FFmpegError as err:
        if not pts_list:
            raise CorruptVideoError(path, f"the video packets cannot be read: {err}", REDOWNLOAD_HINT) from None
        truncated = f"the video packets cannot be read after packet {len(pts_list)}: {err}"
    # Cut-off packets at the end (short reads) cannot be decoded: leave them out. (Damage in the middle is
    # left to the decoder, which reports it.)
    count = len(pts_list)
    while count and cut_list[count - 1]:
        count -= 1
    if count < len(pts_list):
        truncated = truncated or f"the file ends inside packet {count} of the video stream"
    shown = np.asarray(shown_list[:count], dtype=np.int64)
    usable = np.asarray(usable_list[:count], dtype=bool) & (shown > 0)
    if not usable.any():
        raise CorruptVideoError(path, "the video stream has no frames", REDOWNLOAD_HINT)
    # A packet without its own pts (MPEG-PS pictures between timestamps, raw streams) has no presentation time
    # to find its frame by; nor do AVI's packets, whose pts the demuxer makes up in decode order.
    has_time = np.asarray([p is not None for p in raw_pts_list[:count]], dtype=bool)
    if "avi" in container.format.name.split(","):
        has_time[:] = False
    packet_pts = np.asarray([p if p is not None else -(1 << 62) for p in pts_list[:count]], dtype=np.int64)
    packet_dts = np.asarray([d if d is not None else -(1 << 62) for d in dts_list[:count]], dtype=np.int64)
    is_key = np.asarray(key_list[:count], dtype=bool)
    if not is_key.any():
        is_key[0] = True  # streams without keyframe flags: decode from the start
    common = dict(
        time_base=stream.time_base,
        packet_pts=packet_pts,
        packet_dts=packet_dts,
        packet_pos=np.asarray(pos_list[:count], dtype=np.int64),
        packet_is_key=is_key,
        key_positions=np.flatnonzero(is_key),
        truncated=truncated,
    )
    holders = np.flatnonzero(usable)
    one_to_one = (shown[holders] == 1).all() and has_time[holders].all() and \
        len(np.unique(packet_pts[holders])) == len(holders)
    if one_to_one:
        order = holders[np.argsort(packet_pts[holders], kind="stable")]
        frame_pts = packet_pts[order]
        last_duration = duration_list[order[-1]] or (int(frame_pts[-1] - frame_pts[-2]) if len(frame_pts) > 1 else 1)
        return FrameIndex(frame_pts=frame_pts, frame_packet=order.astype(np.int32),
                          end_pts=int(frame_pts[-1]) + int(last_duration), mode=PACKETS, **common)
    logger.debug("%s: packets do not map one to one to frames; indexing by a full decode", path)
    return _index_by_decoding(path, stream, count, common)


def _increasing(values: list) -> bool:
    return all(v is not None for v in values) and all(a < b for a, b in zip(values, values[1:]))


def _disorder(values: list) -> int:
    """How many values are missing or not after the one before."""
    last, count = None, 0
    for value in values:
        if value is None or (last is not None and value <= last):
            count += 1
        else:
            last = value
    return count


def _made_increasing(values: list) -> list[int]:
    out, last = [], None
    for value in values:
        last = value if value is not None and (last is None or value > last) else (last + 1 if last is not None else 0)
        out.append(last)
    return out


def _index_by_decoding(path: str, stream, count: int, common: dict) -> FrameIndex:
    # (pts, dts of the packet that brought it out, packet position it came out after, duration)
    outputs: list[tuple[int | None, int | None, int, int]] = []
    container = open_input(path)
    try:
        decoding = container.streams[stream.index]
        decoding.codec_context.thread_count = 1
        position = -1
        with av.logging.Capture(local=True):
            try:
                for packet in container.demux(decoding):
                    if is_flush(packet):
                        continue
                    position += 1
                    if position >= count:
                        break
                    for frame in decoding.codec_context.decode(packet):
                        outputs.append((frame.pts, frame.dts, position, frame.duration or 0))
                for frame in decoding.codec_context.decode(None):
                    outputs.append((frame.pts, frame.dts, position, frame.duration or 0))
            except av.error.FFmpegError as err:
                if not outputs:
                    raise CorruptVideoError(path, f"the video stream cannot be decoded: {err}",
                                            REDOWNLOAD_HINT) from None
                logger.debug("%s: decoding for the index stopped after %d frames: %s", path, len(outputs), err)
                common = {**common, "truncated": common["truncated"] or
                          f"decoding stops with an error after {len(outputs)} frames: {err}"}
    finally:
        container.close()
    if not outputs:
        raise CorruptVideoError(path, "the video stream decodes to no frames", REDOWNLOAD_HINT)
    pts = [p for p, _, _, _ in outputs]
    mode = DECODED
    if not _increasing(pts):
        # Frames cannot be told apart by timestamp: count them in output order from the start. Their times come
        # from the clock that is out of order least often, the pts or the decoder's packet dts (FFmpeg's
        # best-effort timestamp chooses the same way: AVI's packet pts are made up in decode order).
        mode = SEQUENTIAL
        dts = [d for _, d, _, _ in outputs]
        pts = _made_increasing(min((pts, dts), key=_disorder))
    frame_pts = np.asarray(pts, dtype=np.int64)
    frame_packet = np.asarray([position for _, _, position, _ in outputs], dtype=np.int32)
    last_duration = outputs[-1][3] or (int(frame_pts[-1] - frame_pts[-2]) if len(frame_pts) > 1 else 1)
    return FrameIndex(frame_pts=frame_pts, frame_packet=frame_packet,
                      end_pts=int(frame_pts[-1]) + int(last_duration), mode=mode, **common)
