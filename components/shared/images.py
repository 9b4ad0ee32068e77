"""Container images of this project version: the one place components take `base_image` from.

Tags equal the project version, so a compiled pipeline pins exactly the images built from the
same commit (`docker/`). LMFORGE_IMAGE_REGISTRY points at another registry.
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version

from components.shared.settings import image_registry

try:
    VERSION = version("lmforge")
except PackageNotFoundError:  # running from a source tree that was never installed
    VERSION = "0.0.0"

REGISTRY = image_registry()
CPU_IMAGE = f"{REGISTRY}/lmforge-cpu:{VERSION}"  # data stages and registration
GPU_IMAGE = f"{REGISTRY}/lmforge-train:{VERSION}"  # pretrain, finetune, evaluate (CUDA)
IMAGES = {"cpu": CPU_IMAGE, "train": GPU_IMAGE}
