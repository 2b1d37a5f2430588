"""RTSP server process of the camera simulator: GStreamer's gst-rtsp-server driven through PyGObject.

This file is not imported by camfleet: :class:`camfleet_testing.sim.SimServer` runs it
as a script under Debian's ``/usr/bin/python3`` (which has ``python3-gi``; the
project's virtualenv does not need PyGObject). It uses only the standard
library and ``gi``, never camfleet or numpy.

Protocol with the parent (all lines are UTF-8, one message per line):

* stdin, first line: the JSON configuration (cameras, bind address, port,
  credentials, and for RTSP over TLS the paths of a PEM certificate and key).
  Credentials travel here, never in ``argv``, so that ``ps`` does not show them.
* stdin, then: JSON commands ``{"id": N, "cmd": "corrupt", "camera": NAME,
  "fraction": F}`` or ``{"id": N, "cmd": "stats", "camera": NAME}``; each is
  answered with ``ACK N {json counters}`` on stdout. End of stdin (the parent
  is gone) shuts the server down.
* stdout: ``READY <port>`` once the RTSP socket listens, ``ERROR <text>`` before
  exiting on a fatal problem, anything else is a log line.
* one pipe per camera (an inherited file descriptor): frames, each a 16-byte
  header ``b"CFS1"`` + width + height + frame index (uint32 little-endian) and
  then ``width * height * 3 / 2`` bytes of I420. The server pushes every frame
  as it arrives (the parent paces them), so a resolution change is atomic with
  the frame that carries it.
* replay mode (a camera whose configuration names a ``clip`` and no ``fd``): the
  parent encoded the camera's stream once into a clip file (see :func:`read_clip`
  for its layout); the server loads it and pushes its access units itself, at the
  camera's frame rate, looping from the first (a keyframe). Nothing is encoded here:
  it costs a fraction of live mode's CPU. Command ``{"id": N, "cmd": "stall",
  "camera": NAME, "stalled": BOOL}`` pauses and resumes it (after a pause, and when
  a first client arrives, it goes back to the start of the current GOP so that the
  client decodes from a keyframe).
"""

from __future__ import annotations

import json
import os
import random
import signal
import struct
import sys
import threading
import time
from fractions import Fraction
from typing import Any, NoReturn

APT_PACKAGES = (
    "gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good "
    "gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly python3-gi"
)
APT_HINT = f"apt-get install -y --no-install-recommends {APT_PACKAGES}"
TLS_APT_HINT = "apt-get install -y --no-install-recommends glib-networking"
"""What RTSP over TLS needs besides :data:`APT_HINT`: GLib's TLS backend (GnuTLS)."""
HEADER = struct.Struct("<4sIII")
MAGIC = b"CFS1"
EXIT_MISSING = 3  # something to install is missing
EXIT_BIND = 4  # the RTSP port could not be bound
EXIT_PROTOCOL = 5  # the parent sent something we do not understand
CLIP_MAGIC = b"CFC1"
CLIP_HEADER = struct.Struct("<4sIII")  # magic, width, height, number of access units
AU_HEADER = struct.Struct("<IB")  # bytes of the access unit that follows, flags
AU_KEY = 1  # flag: the access unit is a keyframe (IDR, with SPS/PPS in front)
_CATCH_UP = 2.0  # s: a replayed camera further behind its clock than this skips ahead instead of bursting

# GStreamer elements per codec, and the Debian package that ships each.
ELEMENTS = {
    "common": {
        "appsrc": "gstreamer1.0-plugins-base",
        "queue": "libgstreamer1.0-0",
    },
    "h264": {
        "x264enc": "gstreamer1.0-plugins-ugly",
        "h264parse": "gstreamer1.0-plugins-bad",
        "rtph264pay": "gstreamer1.0-plugins-good",
    },
    "h265": {
        "x265enc": "gstreamer1.0-plugins-bad",
        "h265parse": "gstreamer1.0-plugins-bad",
        "rtph265pay": "gstreamer1.0-plugins-good",
    },
}

# Encoders: bitrate is in kbit/s, key-int-max is the GOP in frames. Baseline H.264 and zerolatency (no
# B-frames, no look-ahead) so that every client decodes frame by frame with no reordering delay.
ENCODERS = {
    "h264": (
        "x264enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate} key-int-max={gop} "
        "bframes=0 threads=1 ! video/x-h264,profile=baseline ! h264parse "
        "! rtph264pay name=pay0 pt=96 config-interval=-1"
    ),
    "h265": (
        "x265enc tune=zerolatency speed-preset=ultrafast bitrate={bitrate} key-int-max={gop} "
        "option-string=pools=1 ! h265parse ! rtph265pay name=pay0 pt=96 config-interval=-1"
    ),
}
# Replay: already encoded H.264 access units (Annex B), one per buffer, straight to the payloader. The queue
# is long (a whole second or two) and leaks only when a client stops reading altogether: a dropped access unit
# breaks decoding until the next keyframe, as it would on a real camera's congested link.
REPLAY = (
    "appsrc name=src is-live=true format=time do-timestamp=true block=false max-buffers=30 "
    "leaky-type=downstream caps={caps} ! h264parse ! rtph264pay name=pay0 pt=96 config-interval=-1"
)


def read_clip(path: str) -> tuple[int, int, list[tuple[bytes, bool]]]:
    """Load a replay clip: ``(width, height, [(access unit, is keyframe), ...])``.

    Layout: :data:`CLIP_HEADER` (``b"CFC1"``, width, height, count; uint32
    little-endian), then ``count`` times :data:`AU_HEADER` (length, flags) and
    the access unit's bytes (H.264 Annex B). The first access unit is a
    keyframe. Raises ``ValueError`` naming what is wrong with a malformed file.
    """
    with open(path, "rb") as f:
        raw = f.read()
    if len(raw) < CLIP_HEADER.size:
        raise ValueError(f"clip {path}: truncated header")
    magic, width, height, count = CLIP_HEADER.unpack_from(raw, 0)
    if magic != CLIP_MAGIC or not count:
        raise ValueError(f"clip {path}: not a clip (magic {magic!r}) or empty")
    units: list[tuple[bytes, bool]] = []
    at = CLIP_HEADER.size
    for i in range(count):
        if at + AU_HEADER.size > len(raw):
            raise ValueError(f"clip {path}: truncated at access unit {i} of {count}")
        size, flags = AU_HEADER.unpack_from(raw, at)
        at += AU_HEADER.size
        if not size or at + size > len(raw):
            raise ValueError(f"clip {path}: access unit {i} of {count} is empty or truncated")
        units.append((raw[at : at + size], bool(flags & AU_KEY)))
        at += size
    if at != len(raw):
        raise ValueError(f"clip {path}: {len(raw) - at} trailing bytes")
    if not units[0][1]:
        raise ValueError(f"clip {path}: the first access unit is not a keyframe")
    return width, height, units


def say(line: str) -> None:
    """Write one protocol line to stdout (the parent reads it line by line)."""
    sys.stdout.write(line.replace("\n", " ") + "\n")
    sys.stdout.flush()


def fail(message: str, code: int) -> NoReturn:
    """Report a fatal error to the parent and exit at once."""
    say("ERROR " + message)
    os._exit(code)  # threads may be blocked in reads: do not wait for them


def load_gi() -> tuple[Any, Any, Any, Any]:
    """Import GLib, Gst, GstRtsp and GstRtspServer, or exit saying what to install."""
    try:
        import gi  # type: ignore[import-not-found]  # noqa: PLC0415  (only here, to say what is missing)
    except ImportError:
        fail(f"{sys.executable} has no PyGObject (gi); install the simulator's packages with: {APT_HINT}",
             EXIT_MISSING)
    try:
        gi.require_version("Gst", "1.0")
        gi.require_version("GstRtsp", "1.0")
        gi.require_version("GstRtspServer", "1.0")
    except ValueError as exc:
        fail(f"GStreamer introspection data missing ({exc}); install with: {APT_HINT}", EXIT_MISSING)
    from gi.repository import (  # type: ignore[import-not-found]  # noqa: PLC0415
        GLib,
        Gst,
        GstRtsp,
        GstRtspServer,
    )

    return GLib, Gst, GstRtsp, GstRtspServer


def check_elements(gst: Any, codecs: set[str]) -> None:
    """Exit naming the packages to install when a GStreamer element the cameras need is missing."""
    missing: dict[str, str] = {}
    for group in ("common", *sorted(codecs)):
        for element, package in ELEMENTS[group].items():
            if gst.ElementFactory.find(element) is None:
                missing[element] = package
    if missing:
        names = ", ".join(f"{e} ({p})" for e, p in sorted(missing.items()))
        fail(f"GStreamer elements missing: {names}; install with: {APT_HINT}", EXIT_MISSING)


def load_certificate(tls: dict[str, str]) -> Any:
    """The server's ``Gio.TlsCertificate`` (certificate and key from PEM files), or exit saying why not."""
    from gi.repository import Gio  # noqa: PLC0415  (only a TLS server needs it)

    if not Gio.TlsBackend.get_default().supports_tls():
        fail(f"GLib has no TLS backend for rtsps://; install with: {TLS_APT_HINT}", EXIT_MISSING)
    try:
        return Gio.TlsCertificate.new_from_files(tls["cert"], tls["key"])
    except Exception as exc:  # GLib.Error: unreadable or malformed PEM
        fail(f"bad TLS certificate or key: {exc}", EXIT_PROTOCOL)


def read_exact(fd: int, view: memoryview) -> bool:
    """Fill ``view`` from ``fd``; False on end of file (the parent closed the pipe)."""
    got = 0
    while got < len(view):
        n = os.readv(fd, [view[got:]])
        if n == 0:
            return False
        got += n
    return True


class Camera:
    """One mount point: its encoder pipeline, the frames it receives and its fault state."""

    def __init__(self, cfg: dict[str, Any], gst: Any, clip: tuple[int, int, list[tuple[bytes, bool]]] | None
                 ) -> None:
        """``clip``: the loaded replay clip when ``cfg`` names one (cameras alike share one copy)."""
        self.gst = gst
        self.name: str = cfg["name"]
        self.codec: str = cfg["codec"]
        self.size: tuple[int, int] = (int(cfg["width"]), int(cfg["height"]))
        rate = Fraction(cfg["fps"]).limit_denominator(1001)
        self.framerate = f"{rate.numerator}/{rate.denominator}"
        self.bitrate = int(cfg["bitrate_kbps"])
        self.gop = int(cfg["gop"])
        self.fps = float(cfg["fps"])
        self.fd: int | None = None if cfg.get("fd") is None else int(cfg["fd"])
        self.clip: list[tuple[bytes, bool]] = []
        if clip is not None:
            if self.codec != "h264":
                fail(f"{self.name}: replay needs an h264 camera, got {self.codec}", EXIT_PROTOCOL)
            width, height, self.clip = clip
            self.size = (width, height)
        self.stalled = bool(cfg.get("stalled", False))
        self.resync = True  # replay: the next access unit pushed is the start of its GOP
        self.skipped = 0  # replay: access units skipped because this process fell behind its clock
        self.loops = 0  # replay: times the clip wrapped around
        self.corrupt_fraction = float(cfg.get("corrupt", 0.0))
        self.random = random.Random()
        self.lock = threading.Lock()  # guards appsrc and caps_size (GLib main loop vs frame reader)
        self.appsrc: Any = None
        self.caps_size = self.size
        self.received = 0
        self.pushed = 0
        self.corrupted = 0
        self.medias = 0

    def caps(self, width: int, height: int) -> str:
        """Raw-video caps of the appsrc for a frame size."""
        return f"video/x-raw,format=I420,width={width},height={height},framerate={self.framerate}"

    def launch(self) -> str:
        """The gst-launch description of this camera's media pipeline."""
        w, h = self.size
        if self.clip:
            caps = (f"video/x-h264,stream-format=byte-stream,alignment=au,width={w},height={h},"
                    f"framerate={self.framerate}")
            return f"( {REPLAY.format(caps=caps)} )"
        encoder = ENCODERS[self.codec].format(bitrate=self.bitrate, gop=self.gop)
        # A live appsrc timestamps buffers on arrival; leaky queues keep a slow encoder from building latency.
        return (
            f"( appsrc name=src is-live=true format=time do-timestamp=true block=false max-buffers=2 "
            f"leaky-type=downstream caps={self.caps(w, h)} ! queue max-size-buffers=2 leaky=downstream ! "
            f"{encoder} )"
        )

    # -- gst-rtsp-server callbacks (GLib main loop) -------------------------------------------------
    def on_media_configure(self, _factory: Any, media: Any) -> None:
        """A client made the (shared) media: hook the appsrc and the corruption probe."""
        gst = self.gst
        element = media.get_element()
        appsrc = element.get_by_name("src")
        pay = element.get_by_name("pay0")
        pay.get_static_pad("src").add_probe(
            gst.PadProbeType.BUFFER | gst.PadProbeType.BUFFER_LIST, self.on_rtp
        )
        media.connect("unprepared", self.on_unprepared)
        with self.lock:
            if not self.clip:
                # The launch line has the configured size; the frames may have been resized since.
                appsrc.set_property("caps", gst.Caps.from_string(self.caps(*self.size)))
            self.caps_size = self.size
            self.appsrc = appsrc
            self.resync = True  # a new client decodes from a keyframe
            self.medias += 1
        say(f"LOG {self.name}: media configured ({self.size[0]}x{self.size[1]} {self.codec})")

    def on_unprepared(self, _media: Any) -> None:
        """The last client left: the shared media is torn down until the next one comes."""
        with self.lock:
            self.appsrc = None
        say(f"LOG {self.name}: media unprepared")

    def _mangle(self, buf: Any) -> Any:
        """Return ``buf`` or, with probability ``corrupt_fraction``, a copy with payload bytes flipped."""
        if self.random.random() >= self.corrupt_fraction:
            return buf
        raw = bytearray(buf.extract_dup(0, buf.get_size()))
        # Keep the 12-byte RTP header and the NAL/FU headers after it, so the packet still parses as RTP
        # and reaches the decoder: the damage lands in the coded slice data.
        if len(raw) > 16:
            for _ in range(8):
                raw[self.random.randrange(16, len(raw))] ^= 0xFF
        new = self.gst.Buffer.new_wrapped(bytes(raw))
        new.pts, new.dts, new.duration = buf.pts, buf.dts, buf.duration
        self.corrupted += 1
        return new

    def on_rtp(self, pad: Any, info: Any) -> Any:
        """Pad probe on the payloader's output: corrupt a fraction of the RTP packets.

        PyGObject cannot make a buffer writable in place, so a corrupted packet
        is sent on as a new buffer chained to the peer pad, and the original is
        dropped. Payloaders push single buffers or buffer lists, so both are handled.
        """
        probe = self.gst.PadProbeReturn
        if self.corrupt_fraction <= 0.0:
            return probe.OK
        peer = pad.get_peer()
        if peer is None:
            return probe.OK
        if info.type & self.gst.PadProbeType.BUFFER_LIST:
            buffers = info.get_buffer_list()
            out = self.gst.BufferList.new()
            changed = False
            for i in range(buffers.length()):
                original = buffers.get(i)
                mangled = self._mangle(original)
                changed = changed or mangled is not original
                out.insert(-1, mangled)
            if not changed:
                return probe.OK
            peer.chain_list(out)
            return probe.DROP
        original = info.get_buffer()
        mangled = self._mangle(original)
        if mangled is original:
            return probe.OK
        peer.chain(mangled)
        return probe.DROP

    # -- frame reader (own thread) ----------------------------------------------------------------
    def read_frames(self) -> None:
        """Read frames from the parent's pipe and push each to the appsrc while a client is connected."""
        fd = self.fd
        if fd is None:
            fail(f"{self.name}: neither a frame pipe nor a clip", EXIT_PROTOCOL)
        header = bytearray(HEADER.size)
        while True:
            if not read_exact(fd, memoryview(header)):
                say(f"LOG {self.name}: frame pipe closed")
                return
            magic, width, height, _index = HEADER.unpack(header)
            bad_size = width % 2 or height % 2 or not 16 <= width <= 16384 or not 16 <= height <= 16384
            if magic != MAGIC or bad_size:
                fail(f"{self.name}: bad frame header {bytes(header)!r}", EXIT_PROTOCOL)
            data = bytearray(width * height * 3 // 2)
            if not read_exact(fd, memoryview(data)):
                say(f"LOG {self.name}: frame pipe closed")
                return
            self.received += 1
            with self.lock:
                self.size = (width, height)
                appsrc = self.appsrc
                if appsrc is not None and self.caps_size != self.size:
                    # Renegotiate: the encoder restarts at the new size with a keyframe and new SPS/PPS.
                    appsrc.set_property("caps", self.gst.Caps.from_string(self.caps(width, height)))
                    self.caps_size = self.size
            if appsrc is None:
                continue  # nobody is watching: the frame is dropped, as a camera's would be
            appsrc.emit("push-buffer", self.gst.Buffer.new_wrapped(bytes(data)))
            self.pushed += 1

    # -- replay (own thread) -----------------------------------------------------------------------
    def play_clip(self) -> None:
        """Push the clip's access units at the camera's frame rate, forever, looping from its keyframe.

        The clip position follows the clock whether or not a client watches (a camera does not wait
        for its viewers); a first client, or a resume after a stall, starts at the current GOP's
        keyframe. Timestamps are the arrival times (appsrc do-timestamp): continuous across loops.
        """
        units = self.clip
        period = 1.0 / self.fps
        epoch = time.monotonic()
        tick = 0
        pos = 0
        while True:
            due = epoch + tick * period
            delay = due - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            behind = int((time.monotonic() - due) / period)
            if behind * period > _CATCH_UP:  # stopped for a while (e.g. SIGSTOP): skip, do not burst
                tick += behind
                pos = (pos + behind) % len(units)
                self.skipped += behind
                self.resync = True
            with self.lock:
                appsrc = None if self.stalled else self.appsrc
                if appsrc is not None and self.resync:
                    while not units[pos][1]:
                        pos -= 1  # back to the GOP's keyframe: the first access unit is one
                    self.resync = False
                elif appsrc is None:
                    self.resync = True
            data, key = units[pos]
            pos += 1
            if pos == len(units):
                pos = 0
                self.loops += 1
            tick += 1
            self.received += 1
            if appsrc is None:
                continue  # nobody is watching, or stalled: the access unit is dropped, as a camera's would be
            buf = self.gst.Buffer.new_wrapped(data)
            if not key:
                buf.set_flags(self.gst.BufferFlags.DELTA_UNIT)
            appsrc.emit("push-buffer", buf)
            self.pushed += 1

    def stats(self) -> dict[str, Any]:
        """Counters reported to the parent."""
        return {
            "received": self.received,
            "pushed": self.pushed,
            "corrupted": self.corrupted,
            "medias": self.medias,
            "width": self.size[0],
            "height": self.size[1],
            "corrupt_fraction": self.corrupt_fraction,
            "mode": "replay" if self.clip else "live",
            "stalled": self.stalled,
            "skipped": self.skipped,
            "loops": self.loops,
            "clip_frames": len(self.clip),
        }


def main() -> None:
    """Read the configuration, check the installation, serve until told to stop."""
    # Ignore Ctrl-C meant for the parent's terminal until the main loop handles signals itself.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    line = sys.stdin.readline()
    try:
        cfg = json.loads(line)
    except ValueError:
        fail("the first line on stdin must be the JSON configuration", EXIT_PROTOCOL)
    glib, gst, gst_rtsp, gst_rtsp_server = load_gi()
    gst.init(None)
    check_elements(gst, {c["codec"] for c in cfg["cameras"]})

    server = gst_rtsp_server.RTSPServer()
    server.set_address(cfg["host"])
    server.set_service(str(cfg["port"]))
    mounts = server.get_mount_points()
    user, password = cfg.get("user"), cfg.get("password")
    tls = cfg.get("tls")
    # TLS and credentials both live in the server's RTSPAuth: with a certificate set, every connection
    # is wrapped in TLS (its "check connect" hook hands the certificate to the connection's
    # GTlsServerConnection), so the same port speaks rtsps:// only. Interleaved RTP then travels in the
    # TLS stream too; UDP would not, so a TLS server offers TCP only, like rtsps cameras do.
    secured = user is not None or tls is not None
    if secured:
        auth = gst_rtsp_server.RTSPAuth()
        token = gst_rtsp_server.RTSPToken()
        token.set_string("media.factory.role", "camfleet-sim")
        if user is None:
            auth.set_default_token(token)  # TLS without credentials: anonymous clients get the role
        elif cfg.get("auth") == "digest":
            auth.set_supported_methods(gst_rtsp.RTSPAuthMethod.DIGEST)
            auth.add_digest(user, password, token)
        else:
            auth.add_basic(gst_rtsp_server.RTSPAuth.make_basic(user, password), token)
        if tls is not None:
            auth.set_tls_certificate(load_certificate(tls))
        server.set_auth(auth)
    protocols = gst_rtsp.RTSPLowerTrans.TCP
    if tls is None:
        protocols |= gst_rtsp.RTSPLowerTrans.UDP

    cameras: dict[str, Camera] = {}
    clips: dict[str, tuple[int, int, list[tuple[bytes, bool]]]] = {}
    for cam_cfg in cfg["cameras"]:
        path = cam_cfg.get("clip")
        if path is not None and path not in clips:
            try:
                clips[path] = read_clip(path)
            except (OSError, ValueError) as exc:
                fail(f"{cam_cfg['name']}: cannot load its replay clip: {exc}", EXIT_PROTOCOL)
        cam = Camera(cam_cfg, gst, clips.get(path) if path is not None else None)
        factory = gst_rtsp_server.RTSPMediaFactory()
        factory.set_launch(cam.launch())
        factory.set_shared(True)  # one encoder per camera whatever the number of clients, like a camera
        factory.set_latency(0)
        factory.set_protocols(protocols)
        if secured:
            factory.add_role_from_structure(gst.Structure.new_from_string(
                "camfleet-sim, media.factory.access=(boolean)true, media.factory.construct=(boolean)true"
            ))
        factory.connect("media-configure", cam.on_media_configure)
        mounts.add_factory("/" + cam.name, factory)
        cameras[cam.name] = cam

    if server.attach(None) == 0:
        fail(f"could not listen on {cfg['host']}:{cfg['port']} (address in use?)", EXIT_BIND)
    for cam in cameras.values():
        target = cam.play_clip if cam.clip else cam.read_frames
        threading.Thread(target=target, name=f"frames-{cam.name}", daemon=True).start()

    loop = glib.MainLoop()

    def quit_loop() -> bool:
        loop.quit()
        return False

    glib.unix_signal_add(glib.PRIORITY_DEFAULT, signal.SIGTERM, quit_loop)
    glib.unix_signal_add(glib.PRIORITY_DEFAULT, signal.SIGINT, quit_loop)

    def control() -> None:
        for raw in sys.stdin:
            if not raw.strip():
                continue
            try:
                msg = json.loads(raw)
                cam = cameras[msg["camera"]]
                if msg["cmd"] == "corrupt":
                    cam.corrupt_fraction = min(1.0, max(0.0, float(msg["fraction"])))
                elif msg["cmd"] == "stall":
                    with cam.lock:
                        cam.stalled = bool(msg["stalled"])
                elif msg["cmd"] != "stats":
                    raise KeyError(msg["cmd"])
            except (ValueError, KeyError, TypeError) as exc:
                fail(f"bad command {raw.strip()[:200]!r}: {exc!r}", EXIT_PROTOCOL)
            say(f"ACK {msg['id']} {json.dumps(cam.stats())}")
        glib.idle_add(quit_loop)  # stdin closed: the parent is gone, so are we

    threading.Thread(target=control, name="control", daemon=True).start()
    say(f"READY {server.get_bound_port()}")
    loop.run()
    say("LOG exiting")
    # GStreamer pipelines and reader threads need no orderly teardown: the process is going away.
    os._exit(0)


if __name__ == "__main__":
    main()
