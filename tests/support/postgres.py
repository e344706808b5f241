"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl from Debian's `postgresql`
package, on a Unix socket in a temp dir, stopped (and deleted) after. `tests/conftest.py`
starts one per session (`pg_cluster`) and gives each test an empty database (`pg_url`).

initdb refuses to run as root, so as root the cluster belongs to the `postgres` user and its
commands run as that user. `stop(immediate=True)` is `pg_ctl stop -m immediate` (what a crash
looks like to clients); `start()` brings the same data back.
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path


def server_bin_dir() -> Path | None:
    """Where initdb and pg_ctl are: PATH first, then Debian's /usr/lib/postgresql/*/bin.
    GPUCTL_TEST_NO_POSTGRES=1 pretends there are none (to test the skip itself)."""
    if os.environ.get("GPUCTL_TEST_NO_POSTGRES"):
        return None
    found = shutil.which("pg_ctl")
    if found and shutil.which("initdb"):
        return Path(os.path.realpath(found)).parent
    for candidate in sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True):
        if (Path(candidate) / "initdb").exists() and (Path(candidate) / "pg_ctl").exists():
            return Path(candidate)
    return None


class PgCluster:
    """One cluster: `url` is a libpq URL for database `gpuctl` as superuser `postgres` (trust)."""

    def __init__(self, bin_dir: Path) -> None:
        self.bin_dir = bin_dir
        self.root = Path(tempfile.mkdtemp(prefix="gpuctl-pg-"))
        self.data = self.root / "data"
        self.socket_dir = self.root / "sock"
        self.socket_dir.mkdir()
        self.log = self.root / "server.log"
        self._as_user: tuple[int, int] | None = None
        if os.geteuid() == 0:
            pw = pwd.getpwnam("postgres")
            self._as_user = (pw.pw_uid, pw.pw_gid)
            for path in (self.root, self.socket_dir):
                os.chown(path, pw.pw_uid, pw.pw_gid)
        self.port = 5432  # a Unix socket only: the port names the socket file, no TCP

    @property
    def url(self) -> str:
        return f"postgresql://postgres@/gpuctl?host={self.socket_dir}&port={self.port}"

    def _run(self, *args: str) -> subprocess.CompletedProcess[str]:
        def demote() -> None:
            if self._as_user is not None:
                os.setgid(self._as_user[1])
                os.setuid(self._as_user[0])

        return subprocess.run(
            [str(self.bin_dir / args[0]), *args[1:]],
            check=True, capture_output=True, text=True, preexec_fn=demote,
            env={"PATH": os.environ.get("PATH", ""), "LC_ALL": "C.UTF-8", "LANG": "C.UTF-8"},
            cwd=self.root,
        )

    def init(self) -> PgCluster:
        self._run("initdb", "-D", str(self.data), "-U", "postgres", "--auth=trust", "-E", "UTF8",
                  "--no-sync", "--locale=C")
        self.start()
        self._run("createdb", "-h", str(self.socket_dir), "-p", str(self.port), "-U", "postgres", "gpuctl")
        return self

    def start(self) -> None:
        # fsync off: a test cluster need not survive the machine's crash. synchronous_commit
        # stays on, so a commit survives the server's (`stop(immediate=True)`), as in production.
        opts = (f"-c listen_addresses='' -c unix_socket_directories='{self.socket_dir}' -p {self.port} "
                "-c fsync=off -c full_page_writes=off -c max_connections=100")
        self._run("pg_ctl", "-D", str(self.data), "-l", str(self.log), "-o", opts, "-w", "-t", "60", "start")

    def stop(self, *, immediate: bool = False) -> None:
        self._run("pg_ctl", "-D", str(self.data), "-m", "immediate" if immediate else "fast", "-w", "stop")

    def reset(self) -> None:
        """An empty database `gpuctl` again (faster than a new cluster or database per test)."""
        import psycopg

        with psycopg.connect(self.url, autocommit=True) as conn:
            conn.execute("SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                         " WHERE datname = 'gpuctl' AND pid <> pg_backend_pid()")
            conn.execute("DROP SCHEMA public CASCADE")
            conn.execute("CREATE SCHEMA public")

    def destroy(self) -> None:
        with contextlib.suppress(subprocess.CalledProcessError):  # already stopped
            self.stop(immediate=True)
        shutil.rmtree(self.root, ignore_errors=True)


SKIP_REASON = "PostgreSQL tests skipped: no initdb/pg_ctl here (apt-get install postgresql to run them)"
CI_MISSING = "PostgreSQL server binaries (initdb, pg_ctl) are missing in CI: .ci/run installs Debian's postgresql"


def in_ci() -> bool:
    return os.environ.get("CI", "").lower() not in ("", "0", "false", "no")
