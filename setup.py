"""Build hook: copy the recording format (the top-level storage/ folder) into the package.

storage/ stays the one home of the format (migrations, views, named queries, their docs);
a built wheel carries a copy at cri_proxy/store/storage/, where cri_proxy.store.sql looks
first. An editable install reads the checkout's storage/ directly.
"""

from __future__ import annotations

import shutil
from pathlib import Path

from setuptools import setup
from setuptools.command.build_py import build_py

STORAGE = Path(__file__).resolve().parent / "storage"


class BuildWithStorage(build_py):
    def run(self) -> None:
        super().run()
        if getattr(self, "editable_mode", False):
            return  # the checkout's storage/ is found as it is
        target = Path(self.build_lib) / "cri_proxy" / "store" / "storage"
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(STORAGE, target, ignore=shutil.ignore_patterns("*~", ".*"))


setup(cmdclass={"build_py": BuildWithStorage})
