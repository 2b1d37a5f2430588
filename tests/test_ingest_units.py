"""Pure logic of ingest: URL masking, error classes, back-off, rate limiting, synthetic URLs."""

from __future__ import annotations

import errno
import itertools
import logging

import av
import pytest

from camfleet.cli.logs import MaskCredentials
from camfleet.ingest import Backoff, ErrorKind, IngestError, SourceKind, classify
from camfleet.ingest.convert import RateLimiter
from camfleet.ingest.size_gate import SizeChangeGate
from camfleet.ingest.synthetic import SyntheticSpec
from camfleet.ingest.url import split_credentials
from camfleet.redact import mask_text, mask_url
from camfleet.urlkinds import source_kind

pytestmark = pytest.mark.unit


@pytest.mark.parametrize(
    ("url", "masked"),
    [
        ("rtsp://admin:s3cr3t@10.0.0.5:554/live", "rtsp://***:***@10.0.0.5:554/live"),
        ("rtsp://admin@cam/live", "rtsp://***@cam/live"),
        ("http://u:p%40ss@[::1]:8080/x.mjpg?a=1", "http://***:***@[::1]:8080/x.mjpg?a=1"),
        ("rtsp://cam/live", "rtsp://cam/live"),
        ("/dev/video0", "/dev/video0"),
    ],
)
def test_mask_url(url: str, masked: str) -> None:
    assert mask_url(url) == masked


def test_mask_text_scrubs_urls_inside_messages() -> None:
    text = "Server returned 401 for 'rtsp://admin:hunter2@cam:554/s' and http://x:y@h/z"
    out = mask_text(text)
    assert "hunter2" not in out and "x:y" not in out and "rtsp://***:***@cam:554/s" in out


def test_split_credentials() -> None:
    assert split_credentials("rtsp://a:b@h:1/p") == ("rtsp://h:1/p", "a", "b")
    assert split_credentials("rtsp://h/p") == ("rtsp://h/p", None, None)


@pytest.mark.parametrize(
    ("url", "kind"),
    [
        ("rtsp://h/x", SourceKind.RTSP), ("rtsps://h/x", SourceKind.RTSP),
        ("https://h/x.m3u8", SourceKind.HTTP), ("/tmp/a.mp4", SourceKind.FILE),
        ("file:///tmp/a.mp4", SourceKind.FILE), ("/dev/video2", SourceKind.V4L2),
        ("synthetic://cam1", SourceKind.SYNTHETIC),
    ],
)
def test_source_kind(url: str, kind: SourceKind) -> None:
    assert source_kind(url) == kind


def test_unknown_scheme_is_refused_without_leaking_password() -> None:
    with pytest.raises(ValueError, match=r"unsupported camera URL 'ftp://\*\*\*:\*\*\*@h/x'") as err:
        source_kind("ftp://u:topsecret@h/x")
    assert "topsecret" not in str(err.value)


URL = "rtsp://admin:pw123@cam:554/s"


@pytest.mark.parametrize(
    ("exc", "kind"),
    [
        (av.error.HTTPUnauthorizedError(-825242872, "Server returned 401 Unauthorized", URL),
         ErrorKind.UNAUTHORIZED),
        (av.error.HTTPNotFoundError(-875574520, "Server returned 404 Not Found", URL), ErrorKind.NOT_FOUND),
        (av.error.ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused", URL), ErrorKind.REFUSED),
        (av.error.InvalidDataError(-1094995529, "Invalid data found", URL), ErrorKind.CORRUPT),
        (OSError(errno.EHOSTUNREACH, "No route to host"), ErrorKind.UNREACHABLE),
        (TimeoutError("timed out"), ErrorKind.TIMEOUT),
        (OSError(errno.ENOENT, "No such file or directory"), ErrorKind.NO_SUCH_FILE),
        (RuntimeError("weird"), ErrorKind.OTHER),
    ],
)
def test_classify(exc: BaseException, kind: ErrorKind) -> None:
    err = classify(exc, URL)
    assert err.kind == kind
    assert "pw123" not in str(err) and "rtsp://***:***@cam:554/s" in str(err)


def test_ingest_error_masks_detail_text() -> None:
    err = IngestError(ErrorKind.OTHER, URL, f"failed on {URL}")
    assert "pw123" not in str(err)


def test_backoff_grows_caps_jitters_and_resets() -> None:
    b = Backoff(initial=0.5, maximum=4, factor=2, jitter=0.2)
    delays = [b.next_delay() for _ in range(6)]
    for d, base in zip(delays, [0.5, 1, 2, 4, 4, 4], strict=True):
        assert base * 0.8 <= d <= base * 1.2
    b.reset()
    assert 0.4 <= b.next_delay() <= 0.6
    with pytest.raises(ValueError):
        Backoff(initial=5, maximum=1)


def test_rate_limiter_keeps_exact_rate() -> None:
    lim = RateLimiter(5)
    kept = [i for i in range(300) if lim.keep(i / 30)]  # 10 s of a 30 fps camera
    assert len(kept) == 50
    assert all(b - a == 6 for a, b in itertools.pairwise(kept))
    assert all(RateLimiter(None).keep(i) for i in range(10))


def test_rate_limiter_reanchors_after_clock_jump() -> None:
    lim = RateLimiter(10)
    assert lim.keep(100.0)
    assert lim.keep(0.0)  # the stream restarted (a looping file): start again


def test_synthetic_spec_parse_and_errors() -> None:
    s = SyntheticSpec.parse("synthetic://cam3?width=640&height=360&fps=10&objects=person,cat&seed=4")
    got = (s.name, s.width, s.height, s.fps, s.objects, s.seed)
    assert got == ("cam3", 640, 360, 10.0, ("person", "cat"), 4)
    with pytest.raises(IngestError, match="unknown parameter"):
        SyntheticSpec.parse("synthetic://c?widht=3")
    with pytest.raises(IngestError, match="invalid URL"):
        SyntheticSpec.parse("synthetic://c?fps=0")


def test_log_filter_masks_credentials(caplog: pytest.LogCaptureFixture) -> None:
    logger = logging.getLogger("camfleet.test.mask")
    logger.addFilter(MaskCredentials())
    with caplog.at_level(logging.INFO, logger="camfleet.test.mask"):
        logger.info("opening %s", "rtsp://root:toor@10.1.1.1/live")
    assert "toor" not in caplog.text and "rtsp://***:***@10.1.1.1/live" in caplog.text


@pytest.mark.parametrize("url", ["rtsp://admin:s3cret@host:abc/x", "rtsp://admin:s3cret@[::1:80/x",
                                 "rtsp://admin:s3cret@h@k:99999999/x"])
def test_mask_url_never_raises_and_never_leaks_on_malformed_urls(url: str) -> None:
    masked = mask_url(url)
    assert "s3cret" not in masked and "admin" not in masked, masked


def test_a_bogus_size_until_the_next_keyframe_is_dropped_but_a_lasting_new_size_is_taken() -> None:
    gate = SizeChangeGate(confirm_s=10.0)
    assert gate.accept((320, 180), key=True, now=0.0)
    # a damaged SPS: one group of pictures decodes at a bogus size, then a good keyframe
    assert not any(gate.accept((16, 16), key=i == 0, now=0.1 * i) for i in range(30))
    assert gate.accept((320, 180), key=True, now=3.0)
    assert gate.dropped == 30
    # a real change of resolution is taken at its second keyframe
    seen = [gate.accept((640, 360), key=i % 20 == 0, now=4 + 0.1 * i) for i in range(21)]
    assert seen == [False] * 20 + [True]
    assert gate.accept((640, 360), key=False, now=6.5)
    # a stream that never marks a keyframe changes after confirm_s
    assert not gate.accept((1280, 720), key=False, now=7.0)
    assert not gate.accept((1280, 720), key=False, now=16.9)
    assert gate.accept((1280, 720), key=False, now=17.0)
    # alternating odd sizes never confirm one another
    assert not any(gate.accept(s, key=True, now=18.0) for s in [(16, 16), (32, 32), (16, 16), (32, 32)])
    with pytest.raises(ValueError):
        SizeChangeGate(confirm_s=0)
