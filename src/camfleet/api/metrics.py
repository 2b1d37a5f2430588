"""Prometheus metrics from the node's status (a collector: computed when scraped)."""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.registry import Collector, CollectorRegistry

from camfleet.runtime.control import HealthState

from .hub import Hub
from .status_cache import StatusCache

STATES: tuple[HealthState, ...] = ("starting", "healthy", "degraded", "unresponsive", "restarting", "failed",
                                   "stopped", "ended")


class NodeCollector(Collector):
    """Per camera: state, rates, detector figures, restarts; per process: CPU and memory."""

    def __init__(self, status: StatusCache, hub: Hub) -> None:
        self.status = status
        self.hub = hub

    def collect(self) -> Iterator[Metric]:
        """The metrics, from a status snapshot at most the cache's TTL old."""
        st = self.status.get()
        state = GaugeMetricFamily("camfleet_camera_state", "1 for the camera's current health state",
                                  labels=["camera", "state"])
        gauges = {
            "decode_fps": GaugeMetricFamily("camfleet_camera_decode_fps", "frames decoded per second",
                                            labels=["camera"]),
            "processed_fps": GaugeMetricFamily("camfleet_camera_processed_fps",
                                               "frames analysed per second", labels=["camera"]),
            "skipped_fps": GaugeMetricFamily("camfleet_camera_skipped_fps",
                                             "frames the pipeline did not get to, per second",
                                             labels=["camera"]),
            "detector_rps": GaugeMetricFamily("camfleet_camera_detector_requests_per_second",
                                              "detector requests per second", labels=["camera"]),
            "corrupt_fps": GaugeMetricFamily("camfleet_camera_corrupt_fps",
                                             "frames per second decoded from damaged data",
                                             labels=["camera"]),
            "inference_ms": GaugeMetricFamily("camfleet_camera_inference_ms",
                                              "mean inference time of the camera's requests",
                                              labels=["camera"]),
        }
        restarts = CounterMetricFamily("camfleet_camera_restarts", "process restarts of the camera",
                                       labels=["camera"])
        cpu = GaugeMetricFamily("camfleet_process_cpu_percent", "CPU of one core, percent",
                                labels=["process", "kind"])
        rss = GaugeMetricFamily("camfleet_process_rss_bytes", "resident memory", labels=["process", "kind"])
        proc_restarts = CounterMetricFamily("camfleet_process_restarts", "restarts of the process",
                                            labels=["process", "kind"])
        up = GaugeMetricFamily("camfleet_process_up", "1 when the process is healthy or degraded",
                               labels=["process", "kind"])
        processes = dict(st.detectors)
        for cam in st.cameras.values():
            for s in STATES:
                state.add_metric([cam.name, s], 1.0 if cam.state == s else 0.0)
            for key, family in gauges.items():
                family.add_metric([cam.name], float(getattr(cam, key)))
            restarts.add_metric([cam.name], float(cam.restarts))
            processes.update({p.name: p for p in cam.processes.values()})
        for p in processes.values():
            labels = [p.name, p.kind]
            cpu.add_metric(labels, p.cpu_percent)
            rss.add_metric(labels, p.rss_mb * 1024 * 1024)
            proc_restarts.add_metric(labels, float(p.restarts))
            up.add_metric(labels, 1.0 if p.state in ("healthy", "degraded") else 0.0)
        yield state
        yield from gauges.values()
        yield from (restarts, cpu, rss, proc_restarts, up)
        outbox = st.outbox
        lag = GaugeMetricFamily("camfleet_outbox_lag", "outbox entries the slowest sink has still to take")
        lag.add_metric([], float(outbox.get("lag", 0)))
        yield lag
        for key, help_text in (("delivered", "outbox entries delivered to the sink"),
                               ("skipped", "outbox entries a sink refused (poisoned), logged and skipped"),
                               ("dropped", "outbox entries dropped undelivered: a sink lagged too far"),
                               ("retries", "outbox batches retried after a sink outage")):
            counter = CounterMetricFamily(f"camfleet_outbox_{key}", help_text)
            counter.add_metric([], float(outbox.get(key, 0)))
            yield counter
        yield from _sink_families(st.sinks)
        clients = GaugeMetricFamily("camfleet_api_websocket_clients", "connected WebSocket clients")
        clients.add_metric([], float(len(self.hub.clients)))
        yield clients
        dropped = CounterMetricFamily("camfleet_api_websocket_dropped", "slow WebSocket clients dropped")
        dropped.add_metric([], float(self.hub.dropped))
        yield dropped


def _sink_families(sinks: dict[str, dict[str, Any]]) -> list[GaugeMetricFamily]:
    """Per outbox sink (label ``sink``): lag, up, and each numeric counter it reports.

    A sink's own counter ``key`` becomes ``camfleet_sink_<key>`` (e.g. a webhook's ``delivered``).
    """
    lag = GaugeMetricFamily("camfleet_sink_lag", "outbox entries this sink has still to take",
                            labels=["sink"])
    up = GaugeMetricFamily("camfleet_sink_up", "1 while the sink takes deliveries, 0 during an outage",
                           labels=["sink"])
    own: dict[str, GaugeMetricFamily] = {}
    for name, row in sorted(sinks.items()):
        lag.add_metric([name], float(row.get("lag", 0)))
        up.add_metric([name], 0.0 if row.get("attempts") else 1.0)
        for key, value in row.items():
            if key in _SINK_BUILTIN or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            metric = "camfleet_sink_" + re.sub(r"[^a-zA-Z0-9_]", "_", key)
            if metric not in own:
                own[metric] = GaugeMetricFamily(metric, f"{key} (reported by the sink)", labels=["sink"])
            own[metric].add_metric([name], float(value))
    return [lag, up, *own.values()]


_SINK_BUILTIN = frozenset({"lag", "down_s", "attempts", "error"})


def registry(status: StatusCache, hub: Hub) -> CollectorRegistry:
    """A registry of its own (not the process-global one) holding the node collector."""
    reg = CollectorRegistry(auto_describe=False)
    reg.register(NodeCollector(status, hub))
    return reg
