"""Multi-object tracking metrics against ground truth, and how many events each true object made.

The CLEAR (ID switches, fragmentations, MOTA) and identity (IDF1) metrics come from
roboflow ``trackers.eval`` (TrackEval's definitions, already a camfleet dependency);
this module turns per-frame boxes into its inputs and adds what camfleet users see:
events per true object and the shortest event.

Ground truth a tracker cannot be asked to see (a walker mostly hidden: ``visible`` below
``min_visible``) is left out, and a tracker box that matches such a walker is not counted
as a false positive (MOTChallenge's treatment of heavily occluded people).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from trackers.eval import (
    aggregate_clear_metrics,
    aggregate_identity_metrics,
    box_iou,
    compute_clear_metrics,
    compute_identity_metrics,
)

__all__ = ["FrameBoxes", "Sequence_", "summarise"]

BoxT = tuple[float, float, float, float]


@dataclass
class FrameBoxes:
    """One frame: ground truth ``(id, box, visible)`` and tracker output ``(id, box)``, boxes in pixels."""

    truth: list[tuple[int, BoxT, float]] = field(default_factory=list)
    tracks: list[tuple[int, BoxT]] = field(default_factory=list)


@dataclass
class Sequence_:  # noqa: N801 - "Sequence" is taken by collections.abc
    """One scene's frames and the events it produced.

    Events are ``(event_id, start_s, end_s, object)``, ``object`` the ground-truth id the
    event shows (its best box's match), None for none.
    """

    name: str
    frames: list[FrameBoxes] = field(default_factory=list)
    events: list[tuple[str, float, float, int | None]] = field(default_factory=list)

    def _inputs(self, iou: float, min_visible: float) -> tuple[list[np.ndarray], list[np.ndarray],
                                                             list[np.ndarray]]:
        gt_ids: list[np.ndarray] = []
        tr_ids: list[np.ndarray] = []
        sims: list[np.ndarray] = []
        for f in self.frames:
            seen = [(i, b) for i, b, v in f.truth if v >= min_visible]
            hidden = [b for _i, b, v in f.truth if 0 < v < min_visible]
            tracks = f.tracks
            if hidden and tracks:
                # a box on a mostly hidden walker is neither right nor wrong: leave it out
                over = _iou([b for _i, b in tracks], hidden).max(axis=1)
                matched_seen = (_iou([b for _i, b in tracks], [b for _i, b in seen]).max(axis=1)
                                if seen else np.zeros(len(tracks)))
                tracks = [t for t, o, s in zip(tracks, over, matched_seen, strict=True)
                          if not (o >= iou and s < iou)]
            gt_ids.append(np.array([i for i, _b in seen], int))
            tr_ids.append(np.array([i for i, _b in tracks], int))
            sims.append(_iou([b for _i, b in seen], [b for _i, b in tracks]))
        return gt_ids, tr_ids, sims

    def metrics(self, iou: float = 0.5, min_visible: float = 0.5) -> dict[str, Any]:
        """CLEAR and identity metrics of this sequence (``trackers.eval`` dictionaries, merged)."""
        gt, tr, sim = self._inputs(iou, min_visible)
        return {**compute_clear_metrics(gt, tr, sim, threshold=iou),
                **compute_identity_metrics(gt, tr, sim, threshold=iou)}

    def true_objects(self, min_visible: float = 0.5) -> set[int]:
        """The walkers that were ever visible enough to be asked for."""
        return {i for f in self.frames for i, _b, v in f.truth if v >= min_visible}

    def match(self, frame: int, box: BoxT, iou: float = 0.5) -> int | None:
        """The ground-truth id whose box in ``frame`` overlaps ``box`` best (at least ``iou``)."""
        truth = self.frames[frame].truth if 0 <= frame < len(self.frames) else []
        if not truth:
            return None
        overlaps = _iou([box], [b for _i, b, _v in truth])[0]
        k = int(np.argmax(overlaps))
        return truth[k][0] if overlaps[k] >= iou else None


def _iou(a: Sequence[BoxT], b: Sequence[BoxT]) -> np.ndarray:
    if not a or not b:
        return np.zeros((len(a), len(b)))
    out: np.ndarray = box_iou(np.asarray(a, float), np.asarray(b, float))
    return out


def summarise(seqs: Sequence[Sequence_], iou: float = 0.5, min_visible: float = 0.5) -> dict[str, Any]:
    """What the benchmark reports over ``seqs``.

    IDF1, IDSW, Frag, MOTA, events per true object, the shortest event (seconds), how many
    events lasted under 2 s, and how events and objects pair up (objects without an event,
    with several, events on no object).
    """
    per = [s.metrics(iou, min_visible) for s in seqs]
    clear = aggregate_clear_metrics(per)
    ident = aggregate_identity_metrics(per)
    objects = sum(len(s.true_objects(min_visible)) for s in seqs)
    durations = [end - start for s in seqs for _e, start, end, _o in s.events]
    without = several = 0
    for s in seqs:
        shown = [o for *_rest, o in s.events if o is not None]
        without += sum(1 for o in s.true_objects(min_visible) if o not in shown)
        several += sum(1 for o in set(shown) if shown.count(o) > 1)
    return {
        "idf1": float(ident["IDF1"]), "idsw": int(clear["IDSW"]), "frag": int(clear["Frag"]),
        "mota": float(clear["MOTA"]), "recall": float(clear["CLR_Re"]),
        "true_objects": objects, "events": len(durations),
        "events_per_object": len(durations) / objects if objects else None,
        "shortest_event_s": min(durations) if durations else None,
        "events_under_2s": sum(1 for d in durations if d < 2.0),
        "objects_without_event": without, "objects_with_several_events": several,
        "events_on_no_object": sum(1 for s in seqs for *_rest, o in s.events if o is None),
    }
