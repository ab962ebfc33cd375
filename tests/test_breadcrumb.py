"""A worker's breadcrumb names the sample it is making, and outlives the worker: its supervisor
reads it after a crash (issue 12; :mod:`zerofeed.producer.crashes`)."""

from __future__ import annotations

import mmap
import os
import signal
import subprocess
import sys
from pathlib import Path

from zerofeed.producer.crashes import Breadcrumb, last_sample

NON_UTF8 = os.fsdecode(b"img/caf\xe9-\xff.jpg")


def test_the_breadcrumb_names_the_sample_being_made_and_none_once_it_is_done(
    tmp_path: Path,
) -> None:
    path = tmp_path / "crumb"
    crumb = Breadcrumb(path)
    try:
        assert last_sample(path) is None
        crumb.begin("img/a.jpg")
        assert last_sample(path) == "img/a.jpg"
        crumb.end()
        assert last_sample(path) is None
        longest = "s3://bucket/" + "d" * (2 * mmap.PAGESIZE) + ".tar#123+456"  # three pages
        for sample in (NON_UTF8, longest, "b.jpg"):  # a longer name, then a shorter one
            crumb.begin(sample)
            assert last_sample(path) == sample
    finally:
        crumb.close()


def test_the_breadcrumb_outlives_a_worker_killed_in_the_middle_of_a_sample(tmp_path: Path) -> None:
    path = tmp_path / "crumb"
    script = (
        "import os, pathlib, signal, sys\n"
        "from zerofeed.producer.crashes import Breadcrumb\n"
        "crumb = Breadcrumb(pathlib.Path(sys.argv[1]))\n"
        "crumb.begin('img/first.jpg')\n"
        "crumb.end()\n"
        "crumb.begin(sys.argv[2])\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    child = subprocess.run(
        [sys.executable, "-c", script, str(path), NON_UTF8], capture_output=True, timeout=60
    )
    assert child.returncode == -signal.SIGKILL, child.stderr.decode(errors="replace")
    assert last_sample(path) == NON_UTF8
