#!/usr/bin/env bash
# The local base image the Docker tests build on (no Docker Hub here): Debian bookworm's minbase with Python 3.11,
# made by mmdebstrap from this machine's own apt sources and `docker import`ed. Kept between runs (by tag).
#   deploy/docker/base-image.sh [TAG [PACKAGES]]   default: ml-service-base:bookworm python3,python3-venv,ca-certificates
# The compose test also makes its Redis and Prometheus this way (PACKAGES=redis-server,prometheus,...).
set -euo pipefail
tag=${1:-ml-service-base:bookworm}
packages=${2:-python3,python3-venv,ca-certificates}
docker=${DOCKER:-docker}
if "$docker" image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag: cached"; exit 0
fi
command -v mmdebstrap >/dev/null || apt-get install -y -qq mmdebstrap >/dev/null
sources=/etc/apt/sources.list.d/debian.sources
[ -f "$sources" ] || sources=/etc/apt/sources.list
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
mmdebstrap --quiet --variant=minbase --include="$packages" bookworm "$tmp/base.tar" "$sources"
"$docker" import --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' "$tmp/base.tar" "$tag" >/dev/null
echo "base image $tag: made from $(basename "$sources") ($(du -h "$tmp/base.tar" | cut -f1))"
