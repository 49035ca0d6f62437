"""Print ``torch==VERSION`` when pip's find-links hold a torch VERSION wheel for this Python.

Used by the Makefile (``make demo``, ``make test``). This project's machine images carry the
CPU wheel of torch 2.13.0 on disk, and naming ``torch==2.13.0`` in the same pip command makes
pip take it (1.5 GB installed) instead of PyPI's default CUDA build (several GB). Elsewhere this
prints nothing and pip installs the default build. Reads pip's own configuration (config files
and PIP_FIND_LINKS) and never touches the network.

    python3 scripts/torch_pin.py 2.13.0
"""
from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path
from urllib.parse import unquote, urlparse


def find_links() -> list[Path]:
    """Local folders pip reads wheels from (its config files, then PIP_FIND_LINKS)."""
    values = []
    listed = subprocess.run([sys.executable, "-m", "pip", "config", "list"],
                            capture_output=True, text=True, check=False).stdout
    for line in listed.splitlines():
        match = re.match(r"^\S*find-links='(.*)'$", line.strip())
        if match:
            values.append(match.group(1))
    values.append(os.environ.get("PIP_FIND_LINKS", ""))
    folders = []
    for value in values:
        for item in value.split():
            parsed = urlparse(item)
            if parsed.scheme in ("", "file"):
                folder = Path(unquote(parsed.path) if parsed.scheme else item)
                if folder.is_dir() and folder not in folders:
                    folders.append(folder)
    return folders


def installable(wheel: Path) -> bool:
    """Whether this interpreter can install the wheel (its tags match)."""
    try:
        from pip._vendor.packaging.tags import sys_tags
        from pip._vendor.packaging.utils import parse_wheel_filename
    except ImportError:  # a pip without its vendored packaging: trust the name's cpXY tag
        return f"-cp{sys.version_info.major}{sys.version_info.minor}-" in wheel.name
    return bool(set(parse_wheel_filename(wheel.name)[3]) & set(sys_tags()))


def main(version: str) -> None:
    for folder in find_links():
        for wheel in sorted(folder.glob(f"torch-{version}*.whl")):
            if installable(wheel):
                print(f"torch=={version}")
                return


if __name__ == "__main__":
    main(sys.argv[1] if len(sys.argv) > 1 else "2.13.0")
