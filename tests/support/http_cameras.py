"""Real HTTP camera servers on loopback for tests: MJPEG (multipart) and HLS."""

from __future__ import annotations

import contextlib
import http.server
import threading
from collections.abc import Iterator
from fractions import Fraction
from functools import partial
from pathlib import Path

import av
import numpy as np

BOUNDARY = "camfleetframe"


def jpeg_frames(n: int, width: int = 320, height: int = 240) -> list[bytes]:
    """``n`` JPEG images (a moving bar) encoded with FFmpeg's mjpeg encoder."""
    enc = av.CodecContext.create("mjpeg", "w")
    enc.width, enc.height, enc.pix_fmt = width, height, "yuvj420p"
    enc.time_base = Fraction(1, 25)
    out = []
    for i in range(n):
        img = np.zeros((height, width, 3), np.uint8)
        img[:, (i * 7) % width : (i * 7) % width + 10] = 255
        frame = av.VideoFrame.from_ndarray(img, format="rgb24").reformat(format="yuvj420p")
        frame.pts = i
        out.extend(bytes(p) for p in enc.encode(frame))
    return out


class _MjpegHandler(http.server.BaseHTTPRequestHandler):
    frames: tuple[bytes, ...] = ()
    stop: threading.Event

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", f"multipart/x-mixed-replace;boundary={BOUNDARY}")
        self.end_headers()
        i = 0
        with contextlib.suppress(OSError):
            while not self.stop.wait(0.04):  # 25 fps, like a camera
                jpg = self.frames[i % len(self.frames)]
                self.wfile.write(
                    f"--{BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(jpg)}\r\n\r\n".encode()
                    + jpg + b"\r\n"
                )
                i += 1

    def log_message(self, *_args: object) -> None:
        pass


@contextlib.contextmanager
def mjpeg_server() -> Iterator[str]:
    """Serve an endless MJPEG stream; yields its URL."""
    stop = threading.Event()
    handler = type("H", (_MjpegHandler,), {"frames": tuple(jpeg_frames(25)), "stop": stop})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}/video.mjpg"
    finally:
        stop.set()
        server.shutdown()
        server.server_close()
        thread.join(5)


def write_hls(directory: Path, seconds: int = 4, fps: int = 15) -> Path:
    """Encode a short H.264 HLS stream (1 s segments) into ``directory``; returns the playlist."""
    playlist = directory / "index.m3u8"
    out = av.open(str(playlist), "w", format="hls", options={"hls_time": "1", "hls_list_size": "0"})
    stream = out.add_stream("libx264", rate=fps, options={"g": str(fps)})
    stream.width, stream.height, stream.pix_fmt = 320, 240, "yuv420p"
    for i in range(seconds * fps):
        img = np.full((240, 320, 3), (i * 3) % 255, np.uint8)
        for packet in stream.encode(av.VideoFrame.from_ndarray(img, format="rgb24")):
            out.mux(packet)
    for packet in stream.encode():
        out.mux(packet)
    out.close()
    return playlist


class _QuietFiles(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *_args: object) -> None:
        pass


@contextlib.contextmanager
def file_server(directory: Path) -> Iterator[str]:
    """Serve ``directory`` over HTTP; yields the base URL."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), partial(_QuietFiles, directory=str(directory)))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)
