"""Exceptions raised by the framebus.

Every error names the ring (its key) and, where there is one, the segment path,
so a message read in a log says what went wrong and where.
"""

from __future__ import annotations


class FramebusError(Exception):
    """Base class of every framebus error."""


class InvalidKey(FramebusError, ValueError):
    """A ring key does not match ``[A-Za-z0-9_-]{1,63}``."""


class InvalidFormat(FramebusError, ValueError):
    """A frame format, ring size or option is invalid."""


class SegmentError(FramebusError):
    """A shared-memory segment is missing, foreign, truncated or unusable."""


class LayoutMismatch(SegmentError):
    """The segment was written by a camfleet with another layout version."""


class NotOwner(SegmentError, PermissionError):
    """The segment belongs to another user; it is never opened."""


class AlreadyRunning(FramebusError):
    """A live publisher already owns the ring key."""

    def __init__(self, key: str, pid: int) -> None:
        super().__init__(f"ring {key!r}: publisher already running (pid {pid})")
        self.key = key
        self.pid = pid


class PublisherGone(FramebusError):
    """The publisher died or closed the ring; subscribe again to reconnect."""


class FormatChanged(PublisherGone):
    """The publisher closed the ring to re-create it with another frame format.

    Subscribe again (with a ``connect_timeout``) to receive the new format.
    """


class NotFound(FramebusError):
    """No ring with a live publisher exists under the key (within the timeout)."""


class SubscriberLimit(FramebusError):
    """The ring has no free subscriber entry or not enough slots to lease."""


class DuplicateSubscriber(FramebusError):
    """A live subscriber with the same name is already registered."""


class FrameTimeout(FramebusError, TimeoutError):
    """No new frame or packet arrived within the timeout."""


class Overrun(FramebusError):
    """A sequential subscriber fell behind and frames were overwritten.

    ``lost`` is the number of frames that can no longer be read. The next call
    continues with the oldest frame still in the ring.
    """

    def __init__(self, key: str, lost: int, resume_seq: int) -> None:
        super().__init__(
            f"ring {key!r}: overrun, {lost} frame(s) lost; resuming at sequence {resume_seq}"
        )
        self.key = key
        self.lost = lost
        self.resume_seq = resume_seq


class Evicted(FramebusError):
    """The publisher evicted this subscriber for not keeping up (``wait`` policy)."""


class LeaseRevoked(FramebusError):
    """A frame was held longer than ``max_hold`` and the publisher reclaimed it."""


class LeaseLimit(FramebusError):
    """The subscriber already holds its maximum number of frames."""
