#!/usr/bin/env bash
# Prepare everything the demo and the tests need on a fresh Linux machine with Python 3.11:
# the virtualenv with the project and its extras, and the real kubectl and helm binaries.
# Idempotent and cheap when nothing changed: a stamp records what was installed.
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON=${PYTHON:-python3.11}
command -v "$PYTHON" >/dev/null 2>&1 || PYTHON=python3
EXTRAS=${EXTRAS:-dev,worker,local}

stamp_of() { cat pyproject.toml scripts/bootstrap.sh scripts/install_tools.py | sha256sum | cut -c1-16; echo "$EXTRAS"; }

if [ ! -x .venv/bin/python ]; then
  echo "bootstrap: creating .venv with $($PYTHON --version)"
  "$PYTHON" -m venv .venv
fi
want=$(stamp_of)
if [ "$(cat .venv/.modelops-stamp 2>/dev/null)" != "$want" ]; then
  echo "bootstrap: installing modelops[$EXTRAS] into .venv"
  .venv/bin/python -m pip install -q --upgrade pip
  .venv/bin/python -m pip install -q -e ".[$EXTRAS]"
  echo "$want" > .venv/.modelops-stamp
fi

# Debian packages the demo and tests use: openssl makes the local API server's certificates,
# lua5.4 runs the Argo CD health checks, wrk is the HTTP client of bench/apiserver_bench.py,
# prometheus gives promtool (checks and unit-tests the alert rules) and the server of the alerts e2e test,
# chromium is the browser tests/console and bench/console_bench.py drive with Playwright (their tests
# fail, never skip, without it); nghttp2-client gives h2load, the HTTP/2 (gRPC) load generator of
# bench/serve_bench.py. podman, buildah, runc and uidmap build and run the images (`make images`, tests/images)
# and the local plane's container runtime; mmdebstrap builds their Debian base (scripts/podman_env.py
# sets podman up; the image stage fails, never skips, without them).
APT_PACKAGES=(openssl lua5.4 wrk prometheus chromium nghttp2-client podman buildah mmdebstrap runc uidmap)
missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg -s "$pkg" >/dev/null 2>&1 || missing+=("$pkg")
done
if [ ${#missing[@]} -gt 0 ]; then
  if [ "$(id -u)" = 0 ]; then sudo=""; elif command -v sudo >/dev/null 2>&1; then sudo="sudo -n"; else sudo=none; fi
  if [ "$sudo" != none ] && command -v apt-get >/dev/null 2>&1; then
    echo "bootstrap: installing ${missing[*]} with apt-get"
    { $sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${missing[@]}" >/dev/null; } \
      || echo "bootstrap: apt-get could not install ${missing[*]}; the tests and stages that use them will fail"
  else
    echo "bootstrap: cannot install ${missing[*]} (need apt-get and root); the tests and stages that use them will fail"
  fi
fi

if [ ! -x .tools/bin/kubectl ] || [ ! -x .tools/bin/helm ]; then
  echo "bootstrap: installing kubectl and helm into .tools/bin"
  .venv/bin/python scripts/install_tools.py .tools/bin
fi
