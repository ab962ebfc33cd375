"""Driver for tests/test_leftovers.py: run inside ``unshare --mount`` as root.

Mounts a private tmpfs on /dev/shm (as a memory-backed volume that outlives container restarts)
and uses a private TMPDIR, then starts a trainer ten times, each as PID 1 of a fresh PID namespace
(as a restarted container's), and ends each with the signal given; an eleventh run closes its feed
normally. Prints one JSON line: what /dev/shm and TMPDIR held at the start, after each run and at
the end, and each trainer's pid in its namespace and exit code.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tempfile
import time

import psutil

TRAINER = """
import json, sys
from zerofeed.consumer import Feed
from zerofeed.consumer.engine import DataConfig, ServingConfig
feed = Feed(sys.argv[1], data=DataConfig(batch_size=10, image_size=(12, 10)),
            serving=ServingConfig(local_producers=1, timeout=60))
feed.get(0, 0)
print(json.dumps({"pid": __import__("os").getpid()}), flush=True)
if sys.argv[2] == "close":
    feed.close()
    sys.exit(0)
while True:
    for epoch in range(1, 10**6):
        for batch in range(len(feed)):
            feed.get(epoch, batch)
"""


def listing(tmp: str) -> list[str]:
    return sorted(os.listdir("/dev/shm")) + sorted(f"tmp/{n}" for n in os.listdir(tmp))


def run(manifest: str, tmp: str, mode: str, signum: int | None) -> dict[str, object]:
    command = ["unshare", "--pid", "--fork", "--mount-proc", sys.executable, "-c", TRAINER]
    environment = {**os.environ, "TMPDIR": tmp}
    process = subprocess.Popen(
        [*command, manifest, mode], stdout=subprocess.PIPE, text=True, env=environment
    )
    assert process.stdout is not None
    inside = json.loads(process.stdout.readline())
    if signum is not None:
        trainer = psutil.Process(process.pid).children()[0]  # PID 1 of the new namespace
        trainer.send_signal(signum)
    code = process.wait(timeout=60)
    time.sleep(0.2)  # the namespace's other processes are gone with its PID 1
    return {"pid": inside["pid"], "code": code, "after": listing(tmp)}


def main() -> None:
    manifest, signame = sys.argv[1], sys.argv[2]
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "tmpfs", "/dev/shm"], check=True)
    tmp = tempfile.mkdtemp(dir="/dev/shm", prefix="tmpdir-")
    start = listing(tmp)
    signum = signal.Signals[signame]
    runs = [run(manifest, tmp, "loop", signum) for _ in range(10)]
    runs.append(run(manifest, tmp, "close", None))
    print(json.dumps({"start": start, "runs": runs, "tmp": os.path.basename(tmp)}), flush=True)


if __name__ == "__main__":
    main()
