# docker buildx bake -f docker/docker-bake.hcl --push
# VERSION and GIT_SHA come from docker/build.sh (the project version in pyproject.toml and the commit).
variable "REGISTRY" { default = "ghcr.io/lmforge" }
variable "VERSION" { default = "0.0.0" }
variable "GIT_SHA" { default = "unknown" }

group "default" {
  targets = ["cpu", "train"]
}

target "_common" {
  context   = "."
  platforms = ["linux/amd64"]
  labels = {
    "org.opencontainers.image.version"  = "${VERSION}"
    "org.opencontainers.image.revision" = "${GIT_SHA}"
    "org.opencontainers.image.source"   = "https://github.com/lmforge/lmforge"
  }
}

target "cpu" {
  inherits   = ["_common"]
  dockerfile = "docker/Dockerfile.cpu"
  tags       = ["${REGISTRY}/lmforge-cpu:${VERSION}", "${REGISTRY}/lmforge-cpu:${VERSION}-${GIT_SHA}"]
}

target "train" {
  inherits   = ["_common"]
  dockerfile = "docker/Dockerfile.train"
  tags       = ["${REGISTRY}/lmforge-train:${VERSION}", "${REGISTRY}/lmforge-train:${VERSION}-${GIT_SHA}"]
}
