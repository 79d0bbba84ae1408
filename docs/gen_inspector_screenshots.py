"""Regenerate the inspector's screenshots in docs/img/ (docs/inspector.md): runs the browser
test (tests/inspector/test_inspector_browser.py) with ``QUANTA_INSPECTOR_SHOTS`` pointing
here. Needs chromium (``apt-get install -y chromium``) and ``pip install playwright``."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> int:
    env = dict(os.environ, QUANTA_INSPECTOR_SHOTS=str(ROOT / "docs" / "img"), CI="1")
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), env.get("PYTHONPATH", "")])
    test = "tests/inspector/test_inspector_browser.py"
    return subprocess.call([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", test], cwd=ROOT, env=env)


if __name__ == "__main__":
    sys.exit(main())
