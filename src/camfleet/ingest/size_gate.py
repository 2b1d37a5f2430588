"""Confirms a change of picture size before the frame ring is re-created for it."""

from __future__ import annotations


class SizeChangeGate:
    """Accepts a new picture size only once the stream has kept it for a whole group of pictures.

    A damaged parameter set makes the decoder emit pictures of a bogus size
    (a flipped bit in an H.264 SPS decodes as, say, 16x16) until the next
    keyframe brings a good one. Re-creating the frame ring for them would throw
    every subscriber off the camera, and again when the real size returns. A
    camera that really changes resolution keeps the new size across keyframes,
    so the change is taken at the second keyframe that carries it, or after
    ``confirm_s`` seconds of nothing else for streams that never mark one
    (intra refresh). Frames held back meanwhile are counted in ``dropped``.

    >>> gate = SizeChangeGate(confirm_s=10.0)
    >>> gate.accept((320, 180), key=True, now=0.0)
    True
    >>> [gate.accept((16, 16), key=True, now=0.1), gate.accept((16, 16), key=False, now=0.2)]
    [False, False]
    >>> gate.accept((320, 180), key=True, now=1.0)
    True
    >>> [gate.accept((640, 360), key=k, now=t) for k, t in [(True, 2.0), (False, 2.1), (True, 4.0)]]
    [False, False, True]
    """

    def __init__(self, confirm_s: float = 10.0) -> None:
        if confirm_s <= 0:
            raise ValueError("confirm_s must be positive")
        self._confirm_s = confirm_s
        self._current: tuple[int, int] | None = None
        self._candidate: tuple[int, int] | None = None
        self._since = 0.0
        self._keys = 0
        self.dropped = 0
        """Frames held back because their size was not (yet) confirmed."""

    def accept(self, size: tuple[int, int], *, key: bool, now: float) -> bool:
        """Say whether a decoded frame may be published.

        ``size`` is (width, height) in pixels, ``key`` whether the frame is a
        keyframe, ``now`` a monotonic time in seconds.
        """
        if self._current is None or size == self._current:
            self._current = size
            self._candidate = None
            return True
        if size != self._candidate:
            self._candidate, self._since, self._keys = size, now, 0
        self._keys += int(key)
        if self._keys >= 2 or now - self._since >= self._confirm_s:
            self._current, self._candidate = size, None
            return True
        self.dropped += 1
        return False
