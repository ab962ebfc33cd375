"""Real storage servers on loopback, for the storage tests and the storage rows of ``./dev bench``: moto's S3 server
and nginx, each started as its own process and stopped by ``close()``."""

from __future__ import annotations

import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

__all__ = ["MotoServer", "Nginx", "free_port"]

_START_SECONDS = 20.0
_POLICY = '{"Version":"2012-10-17","Statement":[{"Effect":"Allow","Action":"s3:*","Resource":"*"}]}'


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_for(url: str, process: subprocess.Popen, what: str) -> None:
    deadline = time.monotonic() + _START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited at start with code {process.returncode}")
        try:
            urllib.request.urlopen(url, timeout=1).close()
            return
        except urllib.error.HTTPError:
            return  # it answers
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{what} did not answer at {url} within {_START_SECONDS:.0f} s")


class MotoServer:
    """moto's standalone S3 server with authentication on: requests need the keys of the IAM
    user made at start (:attr:`credentials`), so wrong keys get a real 403."""

    def __init__(self) -> None:
        self.port = free_port()
        self.endpoint = f"http://127.0.0.1:{self.port}"
        self._process = subprocess.Popen(
            [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(self.port)],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            env={"INITIAL_NO_AUTH_ACTION_COUNT": "3", "PATH": "/usr/bin:/bin"},
        )
        _wait_for(self.endpoint + "/moto-api/", self._process, "moto_server")
        import boto3

        anonymous = {"aws_access_key_id": "setup", "aws_secret_access_key": "setup"}
        iam = boto3.client("iam", endpoint_url=self.endpoint, region_name="us-east-1", **anonymous)
        iam.create_user(UserName="zerofeed")
        iam.put_user_policy(UserName="zerofeed", PolicyName="all", PolicyDocument=_POLICY)
        key = iam.create_access_key(UserName="zerofeed")["AccessKey"]
        self.credentials = {
            "AWS_ACCESS_KEY_ID": key["AccessKeyId"],
            "AWS_SECRET_ACCESS_KEY": key["SecretAccessKey"],
            "AWS_REGION": "us-east-1",
            "AWS_ENDPOINT_URL": self.endpoint,
        }
        self.client = boto3.client(
            "s3",
            endpoint_url=self.endpoint,
            region_name="us-east-1",
            aws_access_key_id=key["AccessKeyId"],
            aws_secret_access_key=key["SecretAccessKey"],
        )

    def upload(self, bucket: str, folder: Path, prefix: str = "") -> None:
        """Every file below ``folder`` to ``s3://bucket/prefix...`` (the bucket made if new)."""
        existing = {b["Name"] for b in self.client.list_buckets().get("Buckets", [])}
        if bucket not in existing:
            self.client.create_bucket(Bucket=bucket)
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                key = prefix + path.relative_to(folder).as_posix()
                self.client.put_object(Bucket=bucket, Key=key, Body=path.read_bytes())

    def pause(self) -> None:
        """Stop answering (SIGSTOP): requests hang, as with a stalled store."""
        self._process.send_signal(19)

    def resume(self) -> None:
        self._process.send_signal(18)

    def close(self) -> None:
        self.resume()
        self._process.terminate()
        self._process.wait(10)


class Nginx:
    """nginx serving ``root`` on a loopback port (Range requests included), restartable on the
    same port. ``/forbidden/`` answers 403 and ``/slow/`` sends 1 KB/s."""

    def __init__(self, root: Path, work: Path) -> None:
        binary = shutil.which("nginx") or "/usr/sbin/nginx"
        if not Path(binary).exists():
            raise FileNotFoundError("nginx is not installed (apt-get install nginx; .ci/run does)")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        work.mkdir(parents=True, exist_ok=True)
        (work / "tmp").mkdir(exist_ok=True)
        temp = work / "tmp"
        self._config = work / "nginx.conf"
        self._config.write_text(
            f"""daemon off;
master_process off;
pid {work}/nginx.pid;
error_log {work}/error.log;
events {{}}
http {{
  access_log {work}/access.log;
  client_body_temp_path {temp}; proxy_temp_path {temp}; fastcgi_temp_path {temp};
  uwsgi_temp_path {temp}; scgi_temp_path {temp};
  server {{
    listen 127.0.0.1:{self.port};
    root {root};
    location /forbidden/ {{ return 403; }}
    location /slow/ {{ limit_rate 1k; alias {root}/; }}
  }}
}}
"""
        )
        self._command = [binary, "-c", str(self._config), "-p", str(work)]
        self._work = work
        self._process: subprocess.Popen | None = None
        self.start()

    def start(self) -> None:
        self._process = subprocess.Popen(
            self._command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
        )
        _wait_for(self.url + "/", self._process, "nginx")

    def stop(self) -> None:
        if self._process is not None:
            self._process.terminate()
            self._process.wait(10)
            self._process = None

    def requests(self) -> int:
        """Requests logged so far."""
        log = self._work / "access.log"
        return len(log.read_text().splitlines()) if log.exists() else 0

    def close(self) -> None:
        self.stop()
