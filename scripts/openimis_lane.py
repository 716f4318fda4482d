#!/usr/bin/env python3
"""A real openIMIS backend for the test suite: PyPI modules, Debian's PostgreSQL, and
our own small Django site (scripts/openimis_site).

    python3 scripts/openimis_lane.py build --dir DIR   # venv, database, schema, seed
    python3 scripts/openimis_lane.py serve --dir DIR   # prints TEST_OPENIMIS_URL=... line
    python3 scripts/openimis_lane.py stop --dir DIR

`build` is idempotent: a second run on the same DIR reuses the venv, the database and
its schema, and only refreshes the seed. Exit status 3 (with one line on stderr) when
PostgreSQL cannot be installed or started; 1 on any other failure (details in
DIR/build.log or DIR/server.log). Standard library only: run it with the system python3.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

SITE = Path(__file__).resolve().parent / "openimis_site"

# Resolves cleanly together (`pip check`); the modules do not declare all they import,
# and unpinned pip would pick Django 5. The modules are pinned to the versions the
# lane was checked against (core/insuree/policy 1.11, contribution 1.10).
PACKAGES = [
    "django~=4.2.0",
    "djangorestframework<3.17",
    "django-simple-history==3.12.0",
    "django-dirtyfields==1.4.1",
    "graphene-django<3",
    "graphene-django-optimizer==0.8.0",
    "django-graphql-jwt==0.3.4",
    "PyJWT~=2.4.0",
    "django-filter~=22.1",
    "django-axes==6.4.0",
    "django-redis==5.4.0",
    "celery",
    "apscheduler==3.10.1",
    "django-apscheduler",
    "psycopg2-binary",
    "requests",
    "openimis-be-core==1.11.0",
    "openimis-be-report==1.7.1",
    "openimis-be-location==1.11.0",
    "openimis-be-medical==1.11.0",
    "openimis-be-medical-pricelist==1.8.0",
    "openimis-be-product==1.10.0",
    "openimis-be-insuree==1.11.0",
    "openimis-be-policy==1.11.0",
    "openimis-be-contribution==1.10.0",
    "openimis-be-payer==1.7.0",
    "openimis-be-claim==1.11.0",
    "openimis-be-claim-batch==1.11.0",
    "openimis-be-tools==1.11.0",
    "openimis-be-calculation==1.10.0",
    "openimis-be-contribution-plan==1.11.0",
    "openimis-be-invoice==1.11.0",
]
API_USERNAME = "gateway"
NO_POSTGRES = 3


class LaneError(Exception):
    """A failure reported as one line; `status` is the exit status."""

    def __init__(self, message: str, status: int = 1) -> None:
        super().__init__(message)
        self.status = status


def say(message: str) -> None:
    """Progress, on stdout (stderr carries only the one line of a failure)."""
    print(f"openIMIS lane: {message}", flush=True)


def run(command: list[str], log: Path | None = None, **kwargs) -> subprocess.CompletedProcess:
    """Run a command; its output goes to `log` (appended) or is captured."""
    if log is None:
        return subprocess.run(command, capture_output=True, text=True, **kwargs)
    with log.open("a") as out:
        out.write(f"$ {' '.join(command)}\n")
        out.flush()
        return subprocess.run(command, stdout=out, stderr=subprocess.STDOUT, text=True, **kwargs)


# ---- PostgreSQL -------------------------------------------------------------------------


def as_postgres(command: list[str]) -> list[str]:
    """PostgreSQL's client commands run as its `postgres` user (peer authentication)."""
    if os.geteuid() == 0:
        return ["runuser", "-u", "postgres", "--", *command]
    return command


def clusters() -> list[dict[str, str]]:
    if not shutil.which("pg_lsclusters"):
        return []
    listing = run(["pg_lsclusters", "--no-header"])
    if listing.returncode != 0:
        return []
    found = []
    for line in listing.stdout.splitlines():
        fields = line.split()
        if len(fields) >= 4:
            found.append(
                {"version": fields[0], "name": fields[1], "port": fields[2], "status": fields[3]}
            )
    return found


def install_postgres(log: Path) -> None:
    if shutil.which("pg_lsclusters") and shutil.which("pg_ctlcluster"):
        return
    if os.geteuid() != 0 or not shutil.which("apt-get"):
        raise LaneError(
            "PostgreSQL is not installed and apt-get cannot install it here", NO_POSTGRES
        )
    say("installing PostgreSQL with apt-get")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-qq", "postgresql"]
    if run(install, log, env=env).returncode != 0:
        run(["apt-get", "update", "-qq"], log, env=env)
        if run(install, log, env=env).returncode != 0:
            raise LaneError("apt-get could not install PostgreSQL", NO_POSTGRES)


def start_postgres(log: Path) -> dict[str, str]:
    """Start (creating it if needed) a PostgreSQL cluster; answer its description."""
    found = clusters()
    if not found:
        versions = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
        if not versions:
            raise LaneError("PostgreSQL's server is not installed", NO_POSTGRES)
        version = versions[-1].parent.parent.name
        run(["pg_createcluster", version, "main"], log)
        found = clusters()
        if not found:
            raise LaneError("could not create a PostgreSQL cluster", NO_POSTGRES)
    cluster = found[0]
    if cluster["status"] != "online":
        run(["pg_ctlcluster", cluster["version"], cluster["name"], "start"], log)
        cluster = next(
            (
                c
                for c in clusters()
                if c["version"] == cluster["version"] and c["name"] == cluster["name"]
            ),
            cluster,
        )
        if cluster["status"] != "online":
            raise LaneError("PostgreSQL did not start", NO_POSTGRES)
    return cluster


def psql(cluster: dict[str, str], sql: str, log: Path) -> str:
    command = as_postgres(
        ["psql", "-XqtA", "-v", "ON_ERROR_STOP=1", "-p", cluster["port"], "-d", "postgres"]
    )
    done = run(command, input=sql)  # on stdin: the passwords stay off the command line
    if done.returncode != 0:
        with log.open("a") as out:
            out.write(done.stdout + done.stderr)
        last = done.stderr.strip().splitlines()[-1:] or [f"status {done.returncode}"]
        raise LaneError(f"psql failed: {last[0]}")
    return done.stdout.strip()


def literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


LANE_PREFIX = "openimis_lane_"


def drop_stale_lanes(cluster: dict[str, str], log: Path) -> None:
    """Each lane directory has its own role and database, named after it; those whose
    directory is gone (an earlier CI run's) are dropped."""
    rows = psql(
        cluster,
        "SELECT datname, coalesce(shobj_description(oid, 'pg_database'), '') FROM pg_database "
        f"WHERE datname LIKE '{LANE_PREFIX}%'",
        log,
    )
    for row in filter(None, rows.splitlines()):
        name, _, owner_dir = row.partition("|")
        if owner_dir and not Path(owner_dir).exists():
            psql(cluster, f'DROP DATABASE IF EXISTS "{name}"', log)
            psql(cluster, f'DROP ROLE IF EXISTS "{name}"', log)


def ensure_database(cluster: dict[str, str], state: dict, lane_dir: Path, log: Path) -> None:
    """The login role (its password reset to ours) and its database; a database whose
    schema step never finished is dropped and made again."""
    drop_stale_lanes(cluster, log)
    user, name = state["db_user"], state["db_name"]
    role_exists = psql(cluster, f"SELECT 1 FROM pg_roles WHERE rolname = {literal(user)}", log)
    verb = "ALTER" if role_exists else "CREATE"
    psql(cluster, f'{verb} ROLE "{user}" LOGIN PASSWORD {literal(state["db_password"])}', log)
    marker = lane_dir / "schema.done"
    exists = psql(cluster, f"SELECT 1 FROM pg_database WHERE datname = {literal(name)}", log)
    if exists and marker.exists():
        return
    marker.unlink(missing_ok=True)
    if exists:
        psql(cluster, f'DROP DATABASE "{name}"', log)
    psql(cluster, f'CREATE DATABASE "{name}" OWNER "{user}"', log)
    psql(cluster, f'COMMENT ON DATABASE "{name}" IS {literal(str(lane_dir))}', log)


# ---- the backend ------------------------------------------------------------------------


def load_state(lane_dir: Path) -> dict:
    path = lane_dir / "lane.json"
    if path.exists():
        return json.loads(path.read_text())
    name = LANE_PREFIX + hashlib.sha256(str(lane_dir).encode()).hexdigest()[:12]
    state = {
        "db_name": name,
        "db_user": name,
        "db_password": secrets.token_urlsafe(18),
        "secret_key": secrets.token_urlsafe(40),
        "api_username": API_USERNAME,
        "api_password": secrets.token_urlsafe(18),
    }
    path.write_text(json.dumps(state, indent=1))
    path.chmod(0o600)
    return state


def site_env(state: dict, cluster: dict[str, str], **extra: str) -> dict[str, str]:
    return {
        **os.environ,
        "PYTHONDONTWRITEBYTECODE": "1",
        "DJANGO_SETTINGS_MODULE": "openIMIS.settings",
        "OPENIMIS_DB_NAME": state["db_name"],
        "OPENIMIS_DB_USER": state["db_user"],
        "OPENIMIS_DB_PASSWORD": state["db_password"],
        "OPENIMIS_DB_HOST": "127.0.0.1",
        "OPENIMIS_DB_PORT": cluster["port"],
        "OPENIMIS_SECRET_KEY": state["secret_key"],
        **extra,
    }


def python(lane_dir: Path) -> str:
    return str(lane_dir / "venv" / "bin" / "python")


def ensure_venv(lane_dir: Path, log: Path) -> None:
    venv = lane_dir / "venv"
    marker = venv / "lane-packages.json"
    if marker.exists() and json.loads(marker.read_text()) == PACKAGES:
        return
    say("installing the openIMIS modules into their own venv (about a minute)")
    if (
        not (venv / "bin" / "python").exists()
        and run([sys.executable, "-m", "venv", str(venv)], log).returncode
    ):
        raise LaneError(f"could not create a venv (see {log})")
    pip = [python(lane_dir), "-m", "pip", "install", "--quiet", "--disable-pip-version-check"]
    if (
        run([*pip, "-U", "pip", "wheel", "setuptools<70"], log).returncode
        or run([*pip, *PACKAGES], log).returncode
    ):
        raise LaneError(f"pip could not install the openIMIS modules (see {log})")
    marker.write_text(json.dumps(PACKAGES))


def manage(lane_dir: Path, args: list[str], env: dict[str, str], log: Path) -> None:
    if run([python(lane_dir), "manage.py", *args], log, cwd=SITE, env=env).returncode:
        raise LaneError(f"manage.py {' '.join(args)} failed (see {log})")


def ensure_schema(lane_dir: Path, env: dict[str, str], log: Path) -> None:
    """`migrate` alone stops in core's first migration (the old migrations never create
    the legacy tables): create every table from the models, then record the modules'
    migrations as applied."""
    marker = lane_dir / "schema.done"
    if marker.exists():
        return
    say("creating the schema")
    bare = {**env, "OPENIMIS_LANE_NO_MIGRATIONS": "1"}
    manage(lane_dir, ["migrate", "--no-input"], bare, log)
    manage(lane_dir, ["migrate", "--run-syncdb", "--no-input"], bare, log)
    manage(lane_dir, ["migrate", "--fake", "--no-input"], env, log)
    marker.write_text("ok\n")


def build(lane_dir: Path) -> None:
    lane_dir.mkdir(parents=True, exist_ok=True)
    log = lane_dir / "build.log"
    install_postgres(log)
    cluster = start_postgres(log)
    state = load_state(lane_dir)
    ensure_database(cluster, state, lane_dir, log)
    ensure_venv(lane_dir, log)
    env = site_env(state, cluster)
    ensure_schema(lane_dir, env, log)
    seed_env = {**env, "OPENIMIS_API_PASSWORD": state["api_password"]}
    manage(lane_dir, ["lane_base_seed", "--username", state["api_username"]], seed_env, log)
    say(f"built in {lane_dir}")


# ---- the server ---------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def answers(url: str) -> bool:
    request = urllib.request.Request(
        f"{url}/api/graphql",
        data=json.dumps({"query": "{ __typename }"}).encode(),
        headers={"Content-Type": "application/json"},
    )
    try:
        with urllib.request.urlopen(request, timeout=2) as response:
            return response.status == 200
    except (OSError, urllib.error.URLError):
        return False


def running_pid(lane_dir: Path) -> int | None:
    path = lane_dir / "server.pid"
    if not path.exists():
        return None
    pid = int(path.read_text().strip() or 0)
    try:
        os.kill(pid, 0)
    except (ProcessLookupError, PermissionError):
        return None
    return pid


def serve(lane_dir: Path) -> None:
    if not (lane_dir / "schema.done").exists():
        raise LaneError(f"not built: run `build --dir {lane_dir}` first")
    if running_pid(lane_dir):
        stop(lane_dir)
    log = lane_dir / "server.log"
    cluster = start_postgres(lane_dir / "build.log")
    state = load_state(lane_dir)
    port = free_port()
    env = site_env(state, cluster, OPENIMIS_LANE_TEST_GLUE="1")
    with log.open("a") as out:
        server = subprocess.Popen(
            [python(lane_dir), "manage.py", "runserver", "--noreload", f"127.0.0.1:{port}"],
            cwd=SITE,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    (lane_dir / "server.pid").write_text(f"{server.pid}\n")
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 90
    while not answers(url):
        if server.poll() is not None or time.monotonic() > deadline:
            stop(lane_dir)
            raise LaneError(f"the backend did not answer (see {log})")
        time.sleep(0.3)
    print(
        f"TEST_OPENIMIS_URL={url} TEST_OPENIMIS_USERNAME={state['api_username']} "
        f"TEST_OPENIMIS_PASSWORD={state['api_password']}",
        flush=True,
    )


def stop(lane_dir: Path) -> None:
    pid = running_pid(lane_dir)
    (lane_dir / "server.pid").unlink(missing_ok=True)
    if pid is None:
        return
    os.killpg(pid, signal.SIGTERM)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        try:
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                return
        except ChildProcessError:
            pass
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)
    os.killpg(pid, signal.SIGKILL)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("command", choices=["build", "serve", "stop"])
    parser.add_argument("--dir", required=True, type=Path, help="the lane's working directory")
    args = parser.parse_args(argv)
    lane_dir = args.dir.resolve()
    try:
        {"build": build, "serve": serve, "stop": stop}[args.command](lane_dir)
    except LaneError as error:
        print(f"openIMIS lane: {error}", file=sys.stderr)
        return error.status
    except OSError as error:
        print(f"openIMIS lane: {args.command} failed: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
