"""The fleet's small pure parts: hardware tool parsers, the node id file, NATS URLs, server configurations."""

from __future__ import annotations

import json
import os
import stat
import threading
from pathlib import Path

import pytest

from camfleet.cluster.connection import parse_urls
from camfleet.cluster.hardware import Gpu, parse_nvidia_smi, parse_vainfo
from camfleet.cluster.identity import IdentityError, load_or_create_id
from camfleet.cluster.kv import _ttl_header
from camfleet.cluster.server import cluster_specs, render_config

pytestmark = pytest.mark.unit

VAINFO = """\
libva info: VA-API version 1.20.0
vainfo: VA-API version: 1.20 (libva 2.12.0)
vainfo: Driver version: Intel iHD driver for Intel(R) Gen Graphics - 24.1.0 ()
vainfo: Supported profile and entrypoints
      VAProfileNone                   :\tVAEntrypointVideoProc
      VAProfileMPEG2Simple            :\tVAEntrypointVLD
      VAProfileH264Main               :\tVAEntrypointVLD
      VAProfileH264Main               :\tVAEntrypointEncSliceLP
      VAProfileHEVCMain10             :\tVAEntrypointVLD
      VAProfileVP9Profile0            :\tVAEntrypointVLD
      VAProfileAV1Profile0            :\tVAEntrypointVLD
      VAProfileJPEGBaseline           :\tVAEntrypointVLD
      VAProfileVP8Version0_3          :\tVAEntrypointEncSlice
"""


def test_nvidia_smi_lines_become_gpus_and_junk_is_skipped() -> None:
    out = ("NVIDIA H100 80GB HBM3, 81559, GPU-5e1f-aa\n"
           "Tesla T4, 15360, GPU-77\n"
           "\n"
           "No devices were found\n"
           "Odd, n/a, GPU-9\n")
    assert parse_nvidia_smi(out) == [Gpu("NVIDIA H100 80GB HBM3", 81559, "GPU-5e1f-aa"),
                                     Gpu("Tesla T4", 15360, "GPU-77"), Gpu("Odd", 0, "GPU-9")]


def test_vainfo_decode_profiles_only() -> None:
    driver, codecs = parse_vainfo(VAINFO)
    assert driver.startswith("Intel iHD driver")
    assert codecs == ("av1", "h264", "hevc", "mjpeg", "mpeg2", "vp9")  # vp8 encodes only: not listed
    assert parse_vainfo("") == ("", ())


def test_node_id_is_created_once_owner_only_and_agreed_on_by_racing_starts(tmp_path: Path) -> None:
    ids: list[str] = []
    threads = [threading.Thread(target=lambda: ids.append(load_or_create_id(tmp_path / "d")))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(ids)) == 1 and len(ids[0]) == 32
    path = tmp_path / "d" / "node-id"
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    assert sorted(p.name for p in (tmp_path / "d").iterdir()) == ["node-id"]  # no temporary file left
    assert load_or_create_id(tmp_path / "d") == ids[0]


def test_a_damaged_node_id_is_refused_with_the_file_named(tmp_path: Path) -> None:
    (tmp_path / "node-id").write_text("../../etc/passwd\n")
    with pytest.raises(IdentityError, match=r"node-id: .*not an id"):
        load_or_create_id(tmp_path)


def test_nats_urls_are_checked_and_credentials_never_shown() -> None:
    assert parse_urls("nats://a:4222, tls://b:4223") == ["nats://a:4222", "tls://b:4223"]
    with pytest.raises(ValueError, match="not a NATS URL") as bad:
        parse_urls("http://user:hunter2@a:80")
    assert "hunter2" not in str(bad.value)
    with pytest.raises(ValueError, match="bad port") as port:
        parse_urls("nats://user:hunter2@a:99999")
    assert "hunter2" not in str(port.value)
    with pytest.raises(ValueError, match="no URL"):
        parse_urls(" , ")


def test_cluster_configs_route_to_every_other_server_and_keep_monitoring_local(tmp_path: Path) -> None:
    specs = cluster_specs(3, tmp_path, ports=[(1, 2, 3), (4, 5, 6), (7, 8, 9)])
    confs = [json.loads(render_config(s)) for s in specs]
    assert [c["server_name"] for c in confs] == ["camfleet-n1", "camfleet-n2", "camfleet-n3"]
    assert confs[1]["cluster"]["routes"] == ["nats-route://127.0.0.1:3", "nats-route://127.0.0.1:9"]
    assert confs[0]["http"] == "127.0.0.1:2" and confs[0]["port"] == 1
    assert len({c["jetstream"]["store_dir"] for c in confs}) == 3
    single = json.loads(render_config(cluster_specs(1, tmp_path)[0]))
    assert "cluster" not in single and single["port"] == 4222
    with pytest.raises(ValueError, match="at least 1"):
        cluster_specs(0, tmp_path)
    # a path with quotes or braces stays one string in the configuration
    odd = cluster_specs(1, tmp_path / 'we"ird {dir}')[0]
    assert json.loads(render_config(odd))["jetstream"]["store_dir"].endswith('we"ird {dir}/n1')


def test_ttl_header_is_whole_milliseconds_and_at_least_a_second() -> None:
    assert _ttl_header(4.0) == "4000ms"
    assert _ttl_header(1.2345) == "1234ms" or _ttl_header(1.2345) == "1235ms"
    assert _ttl_header(0.1) == "1000ms"
