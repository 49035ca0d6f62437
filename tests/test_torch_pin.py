"""scripts/torch_pin.py: the Makefile names torch==VERSION only where pip can see such a wheel."""
import os
import subprocess
import sys
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "scripts" / "torch_pin.py"


def pin(find_links: str, version: str = "2.13.0") -> str:
    # PIP_CONFIG_FILE=devnull hides this machine's own pip config, so only find_links counts.
    env = {**os.environ, "PIP_CONFIG_FILE": os.devnull, "PIP_FIND_LINKS": find_links}
    return subprocess.run([sys.executable, str(SCRIPT), version], env=env, capture_output=True,
                          text=True, check=True).stdout.strip()


def test_wheel_for_this_python_is_pinned(tmp_path):
    (tmp_path / "torch-2.13.0+cpu-py3-none-any.whl").touch()
    assert pin(str(tmp_path)) == "torch==2.13.0"
    assert pin(tmp_path.as_uri()) == "torch==2.13.0"


def test_no_wheel_other_version_or_other_platform_is_not_pinned(tmp_path):
    assert pin("") == ""
    assert pin(str(tmp_path / "missing")) == ""
    (tmp_path / "torch-2.12.0+cpu-py3-none-any.whl").touch()
    (tmp_path / "torch-2.13.0-cp27-cp27m-win32.whl").touch()
    assert pin(str(tmp_path)) == ""
    assert pin(f"https://example.invalid/wheels {tmp_path}") == ""
