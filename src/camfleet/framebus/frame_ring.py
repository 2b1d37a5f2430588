"""The frame ring: one publisher, up to 64 subscribers, zero-copy numpy frames.

How it stays correct
--------------------
* **Leases.** A subscriber takes a shared OFD lock on its byte of a slot before
  it returns a frame from that slot, and keeps it until the frame is released.
  The publisher writes a slot only after taking the slot's whole lock range
  exclusively, so it never writes under a held frame and a reader never sees a
  half-written one. The kernel drops the locks of a dead process at once.
* **Sequence checks.** After taking the lease the reader checks the slot still
  carries the sequence it chose; if the publisher got there first it looks
  again. No frame from a newer "epoch" is ever returned under an old number.
* **Revocation.** A lease older than ``max_hold`` may be revoked by a publisher
  that needs the slot: it marks the slot, checks (through the kernel) that only
  expired holders remain, and overwrites. The holder's next access to the frame
  raises :class:`LeaseRevoked`.
* **Waiting.** ``next()`` sleeps on a futex word the publisher bumps after each
  frame: no polling, microsecond wake-ups. A publisher's death is noticed
  through a pidfd and wakes the sleeper as well.

Thread-safety contract
----------------------
A :class:`FramePublisher` is used from one thread at a time. A
:class:`FrameSubscriber` may be shared between threads: its methods are
serialised by an internal lock (two threads calling ``next()`` each get
different frames). A :class:`Frame` may be handed to another thread and
released from there; its numpy views are valid only while it is held.

Modules
-------
The ring is split by job: :mod:`~camfleet.framebus.frame_slots` (the shared-memory
views and the lease rule both sides apply), :mod:`~camfleet.framebus.frame_publisher`
(writing) and :mod:`~camfleet.framebus.frame_subscriber` (reading). This module keeps
the guarantees above in one place and re-exports the ring's names, so
``from camfleet.framebus.frame_ring import ...`` keeps working.
"""

from __future__ import annotations

from .frame_publisher import FrameData, FramePublisher, Policy, PublisherStats, WritableFrame, copy_frame
from .frame_slots import WRITING, FrameFlags, RingViews, revoke_expired_leases
from .frame_subscriber import Frame, FrameSubscriber, Mode, SubscriberStats

__all__ = [
    "WRITING",
    "Frame",
    "FrameData",
    "FrameFlags",
    "FramePublisher",
    "FrameSubscriber",
    "Mode",
    "Policy",
    "PublisherStats",
    "RingViews",
    "SubscriberStats",
    "WritableFrame",
    "copy_frame",
    "revoke_expired_leases",
]
