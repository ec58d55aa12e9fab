#!/usr/bin/env bash
# Wheelhouses for offline image builds (a build here has no trusted route to the package index): every wheel the
# images install, built or downloaded on the host with its Python (3.11, as the images' base), completed for the
# image's exact Python version.
#   deploy/docker/wheelhouse.sh [cpu|gpu|backend]...    default: cpu backend
set -euo pipefail
cd "$(dirname "$0")/../.."
pip=${PIP:-.venv/bin/pip}
for which in "${@:-cpu backend}"; do
  for w in $which; do
    case $w in
      cpu) dir=ml-service/wheelhouse; reqs=("./ml-service[vertex]") ;;
      gpu) dir=ml-service/wheelhouse-gpu; reqs=("./ml-service[gpu,vertex]" onnxruntime-gpu) ;;
      backend) dir=backend/wheelhouse
        reqs=($(.venv/bin/python -c "import tomllib; print(' '.join(tomllib.load(open('backend/pyproject.toml', 'rb'))['project']['dependencies']))")) ;;
      *) echo "unknown wheelhouse: $w" >&2; exit 2 ;;
    esac
    mkdir -p "$dir"
    "$pip" wheel -q --disable-pip-version-check -c ml-service/constraints.txt -w "$dir" "${reqs[@]}"
    # the image's Python (Debian bookworm's 3.11.2; python:3.11-slim is newer) may need what the host's does not
    "$(dirname "$pip")/python" deploy/docker/wheelhouse_markers.py "$dir" "${IMAGE_PYTHON:-3.11.2}"
    echo "$dir: $(ls "$dir" | wc -l) wheels, $(du -sh "$dir" | cut -f1)"
  done
done
