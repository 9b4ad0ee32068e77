"""Container images of this project version: the one place components take `base_image` from.

Tags equal the project version, so a compiled pipeline pins exactly the images built from the
same commit (`docker/build.sh`). LMFORGE_IMAGE_REGISTRY points at another registry;
LMFORGE_IMAGE_DIGESTS ("cpu=sha256:...,train=sha256:...", printed by `docker/build.sh --push`)
pins them by digest as well (`name:version@sha256:...`): a re-pushed tag then cannot change a run.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from components.shared.settings import image_digests, image_registry

try:
    VERSION = version("lmforge")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0.0.0"

REGISTRY = image_registry()
DIGESTS = image_digests()


def _pinned(name: str, kind: str) -> str:
    ref = f"{REGISTRY}/{name}:{VERSION}"
    return f"{ref}@{DIGESTS[kind]}" if kind in DIGESTS else ref


CPU_IMAGE = _pinned("lmforge-cpu", "cpu")  # data stages and registration
GPU_IMAGE = _pinned("lmforge-train", "train")  # pretrain, finetune, evaluate (CUDA)
IMAGES = {"cpu": CPU_IMAGE, "train": GPU_IMAGE}
