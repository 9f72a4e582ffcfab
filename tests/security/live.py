"""A throwaway PostgreSQL and a real server process (gunicorn) on loopback, for the fault tests
and bench/soak.py: the same approach as scripts/test.sh (initdb as `postgres`, or nobody, when
root; pg_ctl on a free port), with start/stop under the caller's control."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

from tests.testenv import TEST_ENV

ROOT = Path(__file__).resolve().parents[2]
PG_BIN = Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))

# Production mode with the fixed, test-only keys of tests/testenv.py.
SERVER_ENV = {"DJANGO_SETTINGS_MODULE": "config.settings", **TEST_ENV, "LOG_LEVEL": "ERROR"}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def postgres_available() -> bool:
    return (PG_BIN / "initdb").exists() and (PG_BIN / "pg_ctl").exists()


class ThrowawayPostgres:
    """A PostgreSQL cluster in a temporary folder: start(), stop(), start() again, destroy()."""

    def __init__(self, *, max_connections: int = 100):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="exchange-live-pg."))
        self.dir.chmod(0o755)
        self.data = self.dir / "data"
        self.max_connections = max_connections
        self._prefix: list[str] = []
        if os.geteuid() == 0:
            user = "postgres" if _user_exists("postgres") else "nobody"
            shutil.chown(self.dir, user)
            self._prefix = ["runuser", "-u", user, "--"]

    @property
    def url(self) -> str:
        return f"postgres://exchange:exchange@127.0.0.1:{self.port}/exchange"

    def _run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run([*self._prefix, *args], capture_output=True, text=True, check=check, timeout=60)

    def create(self) -> ThrowawayPostgres:
        self._run(str(PG_BIN / "initdb"), "-D", str(self.data), "-U", "postgres", "-A", "trust", "-E", "UTF8")
        self.start()
        self.psql(
            "CREATE ROLE exchange LOGIN CREATEDB PASSWORD 'exchange';",
            "CREATE DATABASE exchange OWNER exchange;",
        )
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off "
            f"-c full_page_writes=off -c max_connections={self.max_connections}"
        )
        log = str(self.dir / "log")
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-l", log, "-w", "-o", options, "start")

    def stop(self, mode: str = "immediate") -> None:
        self._run(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop", check=False)

    def psql(self, *statements: str, database: str = "postgres") -> str:
        args = [str(PG_BIN / "psql"), "-h", "127.0.0.1", "-p", str(self.port), "-U", "postgres", "-d", database]
        args += ["-v", "ON_ERROR_STOP=1", "-qAt"]
        for statement in statements:
            args += ["-c", statement]
        return subprocess.run(args, capture_output=True, text=True, check=True, timeout=60).stdout

    def destroy(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


def _user_exists(name: str) -> bool:
    import pwd

    try:
        pwd.getpwnam(name)
    except KeyError:
        return False
    return True


def manage(*args: str, env: dict[str, str], timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, str(ROOT / "manage.py"), *args],
        cwd=ROOT,
        env={**os.environ, **SERVER_ENV, **env},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def create_member(code: str, env: dict[str, str]) -> str:
    result = manage("create_member", code, "--name", f"Member {code}", "--kind", "bank", env=env)
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)["api_key"]


class Server:
    """gunicorn serving config.wsgi on a free loopback port."""

    def __init__(
        self,
        env: dict[str, str],
        *,
        workers: int = 2,
        threads: int = 4,
        log: Path | None = None,
        extra_args: tuple[str, ...] = (),
    ):
        self.port = free_port()
        self.base = f"http://127.0.0.1:{self.port}"
        self.log = log or Path(tempfile.mkstemp(prefix="exchange-live-server.", suffix=".log")[1])
        command = [
            sys.executable,
            "-m",
            "gunicorn",
            "config.wsgi:application",
            "--bind",
            f"127.0.0.1:{self.port}",
            "--workers",
            str(workers),
            "--threads",
            str(threads),
            "--timeout",
            "60",
            "--graceful-timeout",
            "5",
            "--no-control-socket",
            *extra_args,
        ]
        self._log_file = self.log.open("wb")
        self.process = subprocess.Popen(
            command, cwd=ROOT, env={**os.environ, **SERVER_ENV, **env}, stdout=self._log_file, stderr=subprocess.STDOUT
        )

    def wait_ready(self, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"server exited: {self.log.read_text()[-2000:]}")
            try:
                with urllib.request.urlopen(self.base + "/healthz", timeout=2) as response:  # noqa: S310
                    if response.status == 200:
                        return
            except OSError:
                time.sleep(0.2)
        raise RuntimeError("server did not come up")

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log_file.close()


def redis_available() -> bool:
    return shutil.which("redis-server") is not None


class ThrowawayRedis:
    """A redis-server on a free loopback port in a temporary folder, nothing saved to disk."""

    def __init__(self):
        self.port = free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="exchange-live-redis."))
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> ThrowawayRedis:
        command = [shutil.which("redis-server") or "redis-server", "--port", str(self.port), "--bind", "127.0.0.1"]
        command += ["--dir", str(self.dir), "--save", "", "--appendonly", "no", "--protected-mode", "yes"]
        self.process = subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return self
            except OSError:
                time.sleep(0.05)
        self.destroy()
        raise RuntimeError("redis-server did not come up")

    def destroy(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        shutil.rmtree(self.dir, ignore_errors=True)


def call(
    base: str, method: str, path: str, *, key: str | None = None, body: object = None, headers=None, timeout=30
) -> tuple[int, dict, dict, float]:
    """One HTTP request: (status, headers, JSON body or {}, seconds). Status 0: no answer at all."""
    data = None if body is None else json.dumps(body).encode()
    request = urllib.request.Request(base + path, data=data, method=method)  # noqa: S310 - loopback
    if data is not None:
        request.add_header("Content-Type", "application/json")
    if key:
        request.add_header("Authorization", f"Bearer {key}")
    for name, value in (headers or {}).items():
        request.add_header(name, value)
    started = time.monotonic()
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:  # noqa: S310
            status, answer_headers, raw = response.status, dict(response.headers), response.read()
    except urllib.error.HTTPError as exc:
        status, answer_headers, raw = exc.code, dict(exc.headers), exc.read()
    except OSError:
        return 0, {}, {}, time.monotonic() - started
    elapsed = time.monotonic() - started
    try:
        parsed = json.loads(raw) if raw else {}
    except ValueError:
        parsed = {"_raw": raw[:200].decode("utf-8", "replace")}
    return status, answer_headers, parsed, elapsed
