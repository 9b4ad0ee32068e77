#!/usr/bin/env bash
# Build (and with --push, push) both images, tagged <version> and <version>-<git sha>.
# The version is the one `lmforge compile` pins (pyproject.toml); the registry is
# $LMFORGE_IMAGE_REGISTRY, as for components/shared/images.py.
#   docker/build.sh            # build locally
#   docker/build.sh --push     # build and push; prints the digests to pin with LMFORGE_IMAGE_DIGESTS
set -euo pipefail
cd "$(dirname "$0")/.."
VERSION=$(sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
GIT_SHA=$(git rev-parse --short=12 HEAD)
REGISTRY=${LMFORGE_IMAGE_REGISTRY:-ghcr.io/lmforge}
if [ -n "$(git status --porcelain -- components pipelines pyproject.toml constraints.txt docker)" ]; then
  echo "refusing to build: uncommitted changes in the image's sources (the tag would lie about them)" >&2
  exit 2
fi
PUSH=()
[ "${1:-}" = "--push" ] && PUSH=(--push)
export REGISTRY VERSION GIT_SHA
mkdir -p build
docker buildx bake -f docker/docker-bake.hcl "${PUSH[@]}" --metadata-file build/bake-metadata.json
if [ "${#PUSH[@]}" -gt 0 ]; then
  python3 - <<'PY'
import json
meta = json.load(open("build/bake-metadata.json"))
pairs = [f"{name}={meta[name]['containerimage.digest']}" for name in ("cpu", "train")]
print("pin these digests in the compiled pipeline:\n  export LMFORGE_IMAGE_DIGESTS=" + ",".join(pairs))
PY
fi
