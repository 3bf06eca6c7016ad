"""PostgreSQL from Debian's packages, a private cluster for the Hive metastore's database."""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import subprocess
from pathlib import Path

from cryptopipe_testbed import paths, process, versions
from cryptopipe_testbed.components.base import Component, Health

HOST = "127.0.0.1"
PORT = 15432
DAEMON = "postgres"
METASTORE_DB = "metastore"
METASTORE_USER = "hive"
METASTORE_PASSWORD = "hive"  # noqa: S105 - a throwaway local database on loopback


def bin_dir() -> Path:
    return Path(f"/usr/lib/postgresql/{versions.POSTGRES_MAJOR}/bin")


def _server_user() -> str | None:
    """PostgreSQL refuses to run as root: run it as the `postgres` account when we are root."""
    return "postgres" if os.geteuid() == 0 else None


class Postgres(Component):
    name = "postgres"
    version = versions.POSTGRES_MAJOR

    def install(self) -> None:
        if (bin_dir() / "postgres").exists():
            return
        if os.geteuid() != 0:
            raise process.StartError(
                f"PostgreSQL {self.version} is missing: apt-get install postgresql-{self.version}"
            )
        log = paths.log_dir() / "install-postgres.log"
        env = {"DEBIAN_FRONTEND": "noninteractive"}
        wait = ["-o", "DPkg::Lock::Timeout=600"]  # the images or node install may run apt-get too
        process.run(["apt-get", *wait, "update"], log=log, env=env)
        process.run(
            [
                "apt-get",
                *wait,
                "install",
                "-y",
                "--no-install-recommends",
                f"postgresql-{self.version}",
            ],
            log=log,
            env=env,
        )

    def _data_dir(self) -> Path:
        return paths.component_run(self.name) / "data"

    def start(self) -> None:
        run = paths.component_run(self.name)
        data = self._data_dir()
        socket_dir = run / "socket"
        socket_dir.mkdir(exist_ok=True)
        user = _server_user()
        if user is not None:
            account = pwd.getpwnam(user)
            for path in (run, socket_dir):
                os.chown(path, account.pw_uid, account.pw_gid)
        if not (data / "PG_VERSION").exists():
            shutil.rmtree(data, ignore_errors=True)
            process.run(
                [
                    str(bin_dir() / "initdb"),
                    "-D",
                    str(data),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--no-sync",
                ],
                log=paths.log_dir() / "postgres-initdb.log",
                user=user,
            )
        process.start(
            process.Daemon(
                DAEMON,
                [
                    str(bin_dir() / "postgres"),
                    "-D",
                    str(data),
                    "-p",
                    str(PORT),
                    "-h",
                    HOST,
                    "-k",
                    str(socket_dir),
                    "-c",
                    "fsync=off",
                    "-c",
                    "shared_buffers=32MB",
                ],
                user=user,
                stop_signal=signal.SIGINT,
            )
        )
        process.wait_until(
            lambda: self._accepts_connections(), what="postgres", logs=[DAEMON], timeout=60
        )
        self._ensure_metastore_database()

    def query(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(bin_dir() / "psql"),
                "-h",
                HOST,
                "-p",
                str(PORT),
                "-U",
                "postgres",
                "-d",
                database,
                "-tAc",
                sql,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def _accepts_connections(self) -> bool:
        result = subprocess.run(
            [str(bin_dir() / "pg_isready"), "-h", HOST, "-p", str(PORT)],
            capture_output=True,
            check=False,
        )
        return result.returncode == 0

    def _ensure_metastore_database(self) -> None:
        # Constants of this module only, never outside input.
        if not self.query(f"SELECT 1 FROM pg_roles WHERE rolname = '{METASTORE_USER}'"):  # noqa: S608
            self.query(f"CREATE ROLE {METASTORE_USER} LOGIN PASSWORD '{METASTORE_PASSWORD}'")
        if not self.query(f"SELECT 1 FROM pg_database WHERE datname = '{METASTORE_DB}'"):  # noqa: S608
            self.query(f"CREATE DATABASE {METASTORE_DB} OWNER {METASTORE_USER}")

    def stop(self) -> None:
        process.stop(DAEMON, stop_signal=signal.SIGINT)

    def health(self) -> Health:
        if process.running_pid(DAEMON) is None:
            return Health(False, "not running")
        if not self._accepts_connections():
            return Health(False, "not accepting connections")
        return Health(True, f"database {METASTORE_DB} for the metastore")

    def address(self) -> str:
        return f"{HOST}:{PORT}"

    def env(self) -> dict[str, str]:
        return {"CRYPTOPIPE_POSTGRES_URL": f"postgresql://postgres@{HOST}:{PORT}/postgres"}


def jdbc_url() -> str:
    return f"jdbc:postgresql://{HOST}:{PORT}/{METASTORE_DB}"
