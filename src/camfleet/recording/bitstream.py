"""H.264/H.265 bitstream helpers for remuxing without decoding.

The packet ring carries what the camera's demuxer produced: Annex-B packets
with Annex-B (or no) extradata for RTSP, or length-prefixed packets with
``avcC``/``hvcC`` extradata for MP4 files. The recorder normalises everything
to Annex-B and reads the picture size from the sequence parameter set, so the
MP4 muxer gets what it needs without a single frame being decoded.
"""

from __future__ import annotations

from dataclasses import dataclass

START = b"\x00\x00\x00\x01"

_H264_HIGH_PROFILES = {100, 110, 122, 244, 44, 83, 86, 118, 128, 138, 139, 134, 135}


class BitstreamError(ValueError):
    """A parameter set or packet could not be parsed."""


@dataclass(frozen=True)
class StreamInfo:
    """What the muxer needs about a video stream.

    ``codec`` is FFmpeg's name (``"h264"``, ``"hevc"``); ``width``/``height``
    are the displayed size in pixels; ``extradata`` is Annex-B parameter sets
    (possibly empty); ``nal_length_size`` is 0 for Annex-B packets, else the
    byte size of each NAL length prefix (packets are converted to Annex-B).
    """

    codec: str
    width: int
    height: int
    extradata: bytes
    nal_length_size: int = 0

    def to_annexb(self, data: bytes) -> bytes:
        """Return one packet's payload in Annex-B form (a no-op for Annex-B streams)."""
        if not self.nal_length_size:
            return data
        return length_prefixed_to_annexb(data, self.nal_length_size)


def split_annexb(data: bytes) -> list[bytes]:
    """The NAL units of an Annex-B byte string (start codes removed)."""
    units: list[bytes] = []
    i, n = 0, len(data)
    start = -1
    while i + 2 < n:
        if data[i] == 0 and data[i + 1] == 0 and data[i + 2] == 1:
            if start >= 0:
                end = i
                while end > start and data[end - 1] == 0:
                    end -= 1
                units.append(data[start:end])
            i += 3
            start = i
        else:
            i += 1
    if start >= 0 and start < n:
        units.append(data[start:])
    return [u for u in units if u]


def length_prefixed_to_annexb(data: bytes, size: int) -> bytes:
    """Convert length-prefixed NAL units (``size``-byte big-endian lengths) to Annex-B."""
    out = bytearray()
    i, n = 0, len(data)
    while i + size <= n:
        length = int.from_bytes(data[i : i + size], "big")
        i += size
        if length <= 0 or i + length > n:
            raise BitstreamError(f"NAL length {length} at byte {i - size} overruns the {n}-byte packet")
        out += START + data[i : i + length]
        i += length
    return bytes(out)


def _avcc_to_annexb(extra: bytes) -> tuple[bytes, int]:
    """``avcC`` → (Annex-B SPS/PPS, NAL length size)."""
    if len(extra) < 7:
        raise BitstreamError("avcC extradata is shorter than 7 bytes")
    size = (extra[4] & 3) + 1
    out = bytearray()
    i = 5
    for count_mask in (0x1F, 0xFF):
        count = extra[i] & count_mask
        i += 1
        for _ in range(count):
            length = int.from_bytes(extra[i : i + 2], "big")
            out += START + extra[i + 2 : i + 2 + length]
            i += 2 + length
    return bytes(out), size


def _hvcc_to_annexb(extra: bytes) -> tuple[bytes, int]:
    """``hvcC`` → (Annex-B VPS/SPS/PPS, NAL length size)."""
    if len(extra) < 23:
        raise BitstreamError("hvcC extradata is shorter than 23 bytes")
    size = (extra[21] & 3) + 1
    out = bytearray()
    i = 23
    for _ in range(extra[22]):
        count = int.from_bytes(extra[i + 1 : i + 3], "big")
        i += 3
        for _ in range(count):
            length = int.from_bytes(extra[i : i + 2], "big")
            out += START + extra[i + 2 : i + 2 + length]
            i += 2 + length
    return bytes(out), size


class _Bits:
    """MSB-first bit reader over an RBSP (emulation prevention bytes removed)."""

    def __init__(self, nal: bytes, header_bytes: int) -> None:
        rbsp = bytearray()
        zeros = 0
        for b in nal[header_bytes:]:
            if zeros >= 2 and b == 3:
                zeros = 0
                continue
            rbsp.append(b)
            zeros = zeros + 1 if b == 0 else 0
        self.data = bytes(rbsp)
        self.pos = 0

    def u(self, n: int) -> int:
        value = 0
        for _ in range(n):
            byte = self.pos >> 3
            if byte >= len(self.data):
                raise BitstreamError("parameter set ends early")
            value = (value << 1) | ((self.data[byte] >> (7 - (self.pos & 7))) & 1)
            self.pos += 1
        return value

    def ue(self) -> int:
        zeros = 0
        while self.u(1) == 0:
            zeros += 1
            if zeros > 31:
                raise BitstreamError("bad Exp-Golomb code")
        return (1 << zeros) - 1 + self.u(zeros)

    def se(self) -> int:
        k = self.ue()
        return (k + 1) // 2 if k & 1 else -(k // 2)


def _h264_size(sps: bytes) -> tuple[int, int]:
    r = _Bits(sps, 1)
    profile = r.u(8)
    r.u(16)  # constraint flags, level
    r.ue()  # sps id
    chroma = 1
    if profile in _H264_HIGH_PROFILES:
        chroma = r.ue()
        if chroma == 3:
            r.u(1)
        r.ue()
        r.ue()
        r.u(1)
        if r.u(1):  # scaling matrices
            for i in range(12 if chroma == 3 else 8):
                if r.u(1):
                    last = nxt = 8
                    for _ in range(16 if i < 6 else 64):
                        if nxt:
                            nxt = (last + r.se()) % 256
                        last = nxt or last
    r.ue()  # log2_max_frame_num
    poc_type = r.ue()
    if poc_type == 0:
        r.ue()
    elif poc_type == 1:
        r.u(1)
        r.se()
        r.se()
        for _ in range(r.ue()):
            r.se()
    r.ue()  # max_num_ref_frames
    r.u(1)
    width_mbs = r.ue() + 1
    height_units = r.ue() + 1
    frame_mbs_only = r.u(1)
    if not frame_mbs_only:
        r.u(1)
    r.u(1)
    width, height = width_mbs * 16, height_units * 16 * (2 - frame_mbs_only)
    if r.u(1):  # cropping
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        cx = 1 if chroma in (0, 3) else 2
        cy = (1 if chroma in (0, 2, 3) else 2) * (2 - frame_mbs_only)
        width -= (left + right) * cx
        height -= (top + bottom) * cy
    return width, height


def _hevc_size(sps: bytes) -> tuple[int, int]:
    r = _Bits(sps, 2)
    r.u(4)
    sub_layers = r.u(3)
    r.u(1)
    r.u(88)  # general profile
    r.u(8)  # general level
    present = [(r.u(1), r.u(1)) for _ in range(sub_layers)]
    if sub_layers:
        for _ in range(sub_layers, 8):
            r.u(2)
    for profile, level in present:
        if profile:
            r.u(88)
        if level:
            r.u(8)
    r.ue()  # sps id
    chroma = r.ue()
    if chroma == 3:
        r.u(1)
    width, height = r.ue(), r.ue()
    if r.u(1):  # conformance window
        left, right, top, bottom = r.ue(), r.ue(), r.ue(), r.ue()
        cx = 2 if chroma in (1, 2) else 1
        cy = 2 if chroma == 1 else 1
        width -= (left + right) * cx
        height -= (top + bottom) * cy
    return width, height


def _find_sps(codec: str, data: bytes) -> bytes | None:
    for nal in split_annexb(data):
        if codec == "h264" and nal[0] & 0x1F == 7:
            return nal
        if codec == "hevc" and (nal[0] >> 1) & 0x3F == 33:
            return nal
    return None


def parameter_sets(codec: str, extradata: bytes) -> tuple[bytes, ...]:
    """The parameter set NAL units of ``extradata`` (Annex-B, avcC or hvcC), trailing zeros removed.

    Two extradata blobs that differ only in container framing compare equal here.
    """
    if extradata and extradata[0] == 1 and codec in ("h264", "hevc"):
        try:
            extradata = (_avcc_to_annexb if codec == "h264" else _hvcc_to_annexb)(extradata)[0]
        except (BitstreamError, IndexError):
            return (extradata,)
    return tuple(u.rstrip(b"\x00") for u in split_annexb(extradata))


def stream_info(codec: str, extradata: bytes, keyframe: bytes) -> StreamInfo:
    """Describe a stream from its ring header and its first keyframe's payload.

    Raises :class:`BitstreamError` for a codec other than H.264/H.265 or
    when no sequence parameter set can be found or parsed.
    """
    if codec not in ("h264", "hevc"):
        raise BitstreamError(f"codec {codec!r} is not supported for recording (h264, hevc)")
    size = 0
    annexb_extra = extradata
    if extradata and extradata[0] == 1:  # avcC / hvcC: length-prefixed packets
        annexb_extra, size = (_avcc_to_annexb if codec == "h264" else _hvcc_to_annexb)(extradata)
    key = length_prefixed_to_annexb(keyframe, size) if size else keyframe
    sps = _find_sps(codec, annexb_extra) or _find_sps(codec, key)
    if sps is None:
        raise BitstreamError(f"no {codec} sequence parameter set in the extradata or the keyframe")
    try:
        width, height = (_h264_size if codec == "h264" else _hevc_size)(sps)
    except IndexError as exc:
        raise BitstreamError(f"bad {codec} sequence parameter set: {exc}") from None
    if width <= 0 or height <= 0:
        raise BitstreamError(f"{codec} sequence parameter set gives size {width}x{height}")
    return StreamInfo(codec, width, height, annexb_extra, size)
