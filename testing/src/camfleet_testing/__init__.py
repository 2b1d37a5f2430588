"""camfleet's development harnesses: never imported by the product, installed by the test set-up.

* :mod:`camfleet_testing.sim`: simulated RTSP cameras with fault injection
  (GStreamer's RTSP server), also behind ``camfleet sim`` for demos;
* :mod:`camfleet_testing.pgserver`: a throw-away PostgreSQL server for tests
  and benchmarks.

Install it from a camfleet checkout with ``pip install -e ./testing``
(``scripts/setup.sh`` does).
"""
