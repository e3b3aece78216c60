"""The distributed topology on one machine, started by one command (`make run-distributed`):

    PostgreSQL      participants DB + Dagster instance  (unless DATABASE_URL and DAGSTER_PG_URL are given)
    redis-server    Celery broker and result store       (unless CELERY_BROKER_URL is given)
    event-pipeline init, dagster instance migrate        (once, before anything else starts)
    dagster code-server start                            the code location, gRPC on 127.0.0.1
    dagster-webserver, dagster-daemon                    reading deploy/workspace.yaml
    dagster-celery worker start  x N                     worker-1 ... worker-N, each its own name
    event-pipeline webhook serve                         SendGrid's signed events (with its key set)

Every process listens on 127.0.0.1 only, logs to $EVENT_PIPELINE_HOME/logs/<name>.log and runs in
its own process group. SIGINT/SIGTERM (Ctrl-C, `make stop`) stops them in reverse order and waits
for each; the pid of this supervisor is in $EVENT_PIPELINE_HOME/topology.pid while it runs, and
$EVENT_PIPELINE_HOME/topology.json says what runs where (ports, pids; never a URL, which may hold
a password). A process that dies later (a killed worker) is reported, not restarted: on several
machines that is the service manager's job.

Configuration is the environment: EVENT_PIPELINE_HOME (var dir, the shared upload store),
DAGSTER_HOME (default $EVENT_PIPELINE_HOME/dagster_home), DATABASE_URL, DAGSTER_PG_URL,
CELERY_BROKER_URL; ports and counts by option or variable: --port/PORT (webserver, 3000),
--code-server-port/EVENT_PIPELINE_CODE_SERVER_PORT (4000), --pg-port, --redis-port (a free port),
--workers/EVENT_PIPELINE_WORKERS (2), --webhook-port/WEBHOOK_PORT (3001), --celery-config
(deploy/celery.yaml). Plain Python on
purpose: it only starts programs.
"""

from __future__ import annotations

import argparse
import contextlib
import glob
import hashlib
import json
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType

REPO = Path(__file__).resolve().parents[1]
DEPLOY = REPO / "deploy"
BIN = Path(sys.executable).parent
HOST = "127.0.0.1"
PG_SUPERUSER = "postgres"
DATABASES = {
    "DATABASE_URL": ("participants", "postgresql+psycopg"),
    "DAGSTER_PG_URL": ("dagster", "postgresql+psycopg2"),
}
LOCATION = "event_pipeline"
STOP_TIMEOUT_S = 30.0
START_TIMEOUT_S = 120.0


class TopologyError(Exception):
    """Something could not be started; said in one line."""


@dataclass
class Child:
    name: str
    proc: subprocess.Popen[bytes]
    log: Path
    port: int | None = None
    stop: Callable[[], None] | None = None  # for servers stopped by their own tool (pg_ctl)


@dataclass
class Topology:
    var: Path
    env: dict[str, str]
    children: list[Child] = field(default_factory=list)
    # Where things live that are not a process (the PostgreSQL cluster), for topology.json.
    places: dict[str, str] = field(default_factory=dict)

    @property
    def logs(self) -> Path:
        return self.var / "logs"

    def start(self, name: str, argv: Sequence[str], *, port: int | None = None) -> Child:
        log = self.logs / f"{name}.log"
        with log.open("ab") as out:
            proc = subprocess.Popen(
                list(argv),
                cwd=REPO,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                # Its own group: Ctrl-C reaches only this supervisor, which stops the children in
                # order, and one signal to the group takes a child's own subprocesses with it.
                start_new_session=True,
            )
        child = Child(name, proc, log, port)
        self.children.append(child)
        self.write_state()
        say(f"started {name} (pid {proc.pid}{f', port {port}' if port else ''}), log {log}")
        return child

    def stop_all(self) -> None:
        for child in reversed(self.children):
            stop_child(child)
        self.children.clear()

    def write_state(self, *, ready: bool = False) -> None:
        state = {
            "pid": os.getpid(),
            "ready": ready,
            **self.places,
            "processes": [
                {"name": c.name, "pid": c.proc.pid, "pgid": c.proc.pid, "port": c.port, "log": str(c.log)}
                for c in self.children
            ],
        }
        tmp = self.var / ".topology.json.tmp"
        tmp.write_text(json.dumps(state, indent=2), encoding="utf-8")
        os.replace(tmp, self.var / "topology.json")


def say(message: str) -> None:
    print(f"topology: {message}", flush=True)


def stop_child(child: Child) -> None:
    if child.stop is not None:
        child.stop()
    if child.proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(child.proc.pid, signal.SIGTERM)
        try:
            child.proc.wait(timeout=STOP_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            say(f"{child.name} did not stop within {STOP_TIMEOUT_S:.0f} s: killed")
    # Whatever the group still holds (a pool process, a run worker) goes too.
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(child.proc.pid, signal.SIGKILL)
    with contextlib.suppress(subprocess.TimeoutExpired):
        child.proc.wait(timeout=10)
    say(f"stopped {child.name}")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def wait_until(what: str, ready: Callable[[], bool], child: Child | None, timeout_s: float = START_TIMEOUT_S) -> None:
    deadline = time.monotonic() + timeout_s
    while not ready():
        if child is not None and child.proc.poll() is not None:
            raise TopologyError(f"{child.name} exited ({child.proc.returncode}) while starting; see {child.log}")
        if time.monotonic() > deadline:
            raise TopologyError(f"{what} not ready after {timeout_s:.0f} s; see {child.log if child else 'the logs'}")
        time.sleep(0.2)


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(1)
        return sock.connect_ex((HOST, port)) == 0


def run_once(topology: Topology, name: str, argv: Sequence[str]) -> None:
    log = topology.logs / f"{name}.log"
    with log.open("ab") as out:
        done = subprocess.run(list(argv), cwd=REPO, env=topology.env, stdout=out, stderr=subprocess.STDOUT, check=False)
    if done.returncode != 0:
        raise TopologyError(f"{' '.join(argv[:3])} failed ({done.returncode}); see {log}")
    say(f"{name} done")


# -- PostgreSQL ---------------------------------------------------------------------------------


def pg_bin(name: str) -> Path:
    found = shutil.which(name)
    if found:
        return Path(found)
    versions = sorted(
        glob.glob(f"/usr/lib/postgresql/*/bin/{name}"), key=lambda p: int(Path(p).parts[-3]), reverse=True
    )
    if not versions:
        raise TopologyError(
            f"{name} not found (apt-get install -y postgresql), or give DATABASE_URL and DAGSTER_PG_URL"
        )
    return Path(versions[0])


def pg_account() -> str | None:
    """PostgreSQL refuses to run as root: then it runs as the distribution's `postgres` account."""
    if os.geteuid() != 0:
        return None
    try:
        pwd.getpwnam(PG_SUPERUSER)
    except KeyError:
        raise TopologyError(
            "running as root without a 'postgres' account; install postgresql or run as a user"
        ) from None
    return PG_SUPERUSER


def as_account(account: str | None, argv: Sequence[str]) -> list[str]:
    return list(argv) if account is None else ["runuser", "-u", account, "--", *argv]


def pg_cluster_dir(var: Path, account: str | None) -> Path:
    """The cluster lives in the var dir, unless the server's account cannot reach it there (a
    root-owned 0700 var dir): then in /var/tmp, under a name derived from the var dir."""
    wanted = var / "postgres"
    if account is None:
        return wanted
    probe = subprocess.run(as_account(account, ["test", "-x", str(var)]), check=False)
    if probe.returncode == 0:
        return wanted
    digest = hashlib.sha256(str(var).encode()).hexdigest()[:16]
    return Path("/var/tmp/event-pipeline-pg") / digest  # noqa: S108 - a fixed, private (0700) place


def start_postgres(topology: Topology, port: int) -> None:
    account = pg_account()
    cluster = pg_cluster_dir(topology.var, account)
    topology.places["postgres_cluster"] = str(cluster)
    data = cluster / "data"
    cluster.mkdir(parents=True, exist_ok=True)
    cluster.chmod(0o700)
    if account is not None:
        info = pwd.getpwnam(account)
        if cluster.parent != topology.var:
            cluster.parent.chmod(0o711)
        os.chown(cluster, info.pw_uid, info.pw_gid)
    if not (data / "PG_VERSION").exists():
        run_once(
            topology,
            "initdb",
            as_account(
                account,
                [
                    str(pg_bin("initdb")),
                    "-D",
                    str(data),
                    "--auth=trust",
                    f"--username={PG_SUPERUSER}",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                ],
            ),
        )
    # Loopback TCP only (no socket file: var dir paths can exceed a socket's 108 bytes).
    options = f"-p {port} -c listen_addresses={HOST} -c unix_socket_directories= -c max_connections=200"
    postgres = topology.start(
        "postgres", as_account(account, [str(pg_bin("postgres")), "-D", str(data), *options.split()]), port=port
    )
    postgres.stop = lambda: pg_stop(postgres, account, data)
    wait_until("PostgreSQL", lambda: pg_ready(port), postgres)
    for _, (dbname, _driver) in DATABASES.items():
        exists = psql(topology, port, f"SELECT 1 FROM pg_database WHERE datname = '{dbname}'")
        if exists != "1":
            psql(topology, port, f'CREATE DATABASE "{dbname}"')
    for variable, (dbname, driver) in DATABASES.items():
        topology.env[variable] = f"{driver}://{PG_SUPERUSER}@{HOST}:{port}/{dbname}"
    say(f"PostgreSQL cluster {data}: databases {', '.join(d for d, _ in DATABASES.values())}")


def pg_ready(port: int) -> bool:
    done = subprocess.run(
        [str(pg_bin("pg_isready")), "-q", "-h", HOST, "-p", str(port), "-U", PG_SUPERUSER], check=False
    )
    return done.returncode == 0


def pg_stop(child: Child, account: str | None, data: Path) -> None:
    # `fast`: sessions are ended and the cluster is checkpointed, so the next start is quick.
    subprocess.run(
        as_account(account, [str(pg_bin("pg_ctl")), "stop", "-D", str(data), "-m", "fast", "-w", "-t", "60"]),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        check=False,
    )


def psql(topology: Topology, port: int, sql: str) -> str:
    done = subprocess.run(
        [str(pg_bin("psql")), "-h", HOST, "-p", str(port), "-U", PG_SUPERUSER, "-d", "postgres", "-tAc", sql],
        capture_output=True,
        text=True,
        check=False,
    )
    if done.returncode != 0:
        raise TopologyError(f"psql failed: {done.stderr.strip()}")
    return done.stdout.strip()


# -- Redis --------------------------------------------------------------------------------------


def start_redis(topology: Topology, port: int) -> None:
    server = shutil.which("redis-server")
    if server is None:
        raise TopologyError("redis-server not found (apt-get install -y redis-server), or give CELERY_BROKER_URL")
    workdir = topology.var / "redis"
    workdir.mkdir(mode=0o700, exist_ok=True)
    # No persistence: queued tasks belong to runs whose state is in PostgreSQL, and a run that
    # lost its tasks with the broker is failed by run monitoring and retried.
    argv = [server, "--bind", HOST, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)]
    redis = topology.start("redis", argv, port=port)
    wait_until("redis-server", lambda: redis_ping(port), redis)
    topology.env["CELERY_BROKER_URL"] = f"redis://{HOST}:{port}/0"


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection((HOST, port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(16).startswith(b"+PONG")
    except OSError:
        return False


# -- Dagster ------------------------------------------------------------------------------------


def init_var_dir(topology: Topology) -> None:
    instance_yaml = Path(topology.env["DAGSTER_HOME"]) / "dagster.yaml"
    template = DEPLOY / "dagster.yaml"
    if instance_yaml.is_file() and instance_yaml.read_bytes() != template.read_bytes():
        # Never replace an instance someone set up (it may be `make run`'s SQLite one).
        raise TopologyError(
            f"{instance_yaml} is not deploy/dagster.yaml; use another EVENT_PIPELINE_HOME or DAGSTER_HOME"
        )
    topology.env["EVENT_PIPELINE_DAGSTER_YAML"] = str(template)
    # init creates the var dir, copies the instance YAML and applies the participants migrations.
    run_once(topology, "init", [str(BIN / "event-pipeline"), "init"])
    # Dagster's own schema, once, before several processes would race to create it.
    run_once(topology, "dagster-migrate", [str(BIN / "dagster"), "instance", "migrate"])


def worker_argv(name: str, celery_yaml: Path) -> list[str]:
    """One named Celery worker on Dagster's queue; `--` passes the rest to `celery worker`."""
    dagster_celery = [
        str(BIN / "dagster-celery"),
        "worker",
        "start",
        "-A",
        "dagster_celery.app",
        "-y",
        str(celery_yaml),
    ]
    return [*dagster_celery, "--name", name, "-q", "dagster", "-l", "INFO", "--", "--pool", "solo"]


def celery_ready(worker: Child) -> Callable[[], bool]:
    """Celery logs `<name>@<host> ready.` once it consumes from the queue."""
    return lambda: b" ready." in worker.log.read_bytes()


def forget_celery_config(dagster_home: Path) -> None:
    """`dagster-celery worker start` writes the broker URL, credentials included, into a fresh
    DAGSTER_HOME/dagster_celery/config/<uuid>/ module at every start and never removes it. A
    ready worker has imported it (dagster_celery.app reads it at import), so it goes: secrets
    stay out of DAGSTER_HOME, and the folders no longer pile up."""
    shutil.rmtree(dagster_home / "dagster_celery" / "config", ignore_errors=True)


def start_dagster(topology: Topology, *, web_port: int, code_port: int, workers: int, celery_yaml: Path) -> None:
    # Where deploy/workspace.yaml finds the code server.
    topology.env["EVENT_PIPELINE_CODE_SERVER_HOST"] = HOST
    topology.env["EVENT_PIPELINE_CODE_SERVER_PORT"] = str(code_port)
    code = topology.start(
        "code-server",
        [
            str(BIN / "dagster"),
            "code-server",
            "start",
            "-h",
            HOST,
            "-p",
            str(code_port),
            "-m",
            "event_pipeline.defs",
            "-a",
            "defs",
            "--location-name",
            LOCATION,
        ],
        port=code_port,
    )
    health = [str(BIN / "dagster"), "api", "grpc-health-check", "-h", HOST, "-p", str(code_port)]
    wait_until(
        "code server",
        lambda: subprocess.run(health, capture_output=True, env=topology.env, check=False).returncode == 0,
        code,
    )
    workspace = DEPLOY / "workspace.yaml"
    # `--pool solo`: the worker runs one step at a time in its own process. Celery's default
    # prefork pool runs tasks in daemonic processes, which may not start the mail step's
    # dispatcher processes ("daemonic processes are not allowed to have children").
    started = [topology.start(f"worker-{i}", worker_argv(f"worker-{i}", celery_yaml)) for i in range(1, workers + 1)]
    for worker in started:  # started together: each takes seconds to import Dagster and Celery
        wait_until(worker.name, celery_ready(worker), worker)
    forget_celery_config(Path(topology.env["DAGSTER_HOME"]))
    web = topology.start(
        "webserver",
        [str(BIN / "dagster-webserver"), "-h", HOST, "-p", str(web_port), "-w", str(workspace)],
        port=web_port,
    )
    wait_until("webserver", lambda: port_open(web_port), web)
    topology.start("daemon", [str(BIN / "dagster-daemon"), "run", "-w", str(workspace)])


def start_webhook(topology: Topology, port: int) -> None:
    """The Event Webhook receiver: with it, a crash between SendGrid's 202 and our write repeats
    no mail (docs/email.md). Without its key there is nothing it could verify."""
    if not topology.env.get("SENDGRID_WEBHOOK_PUBLIC_KEY"):
        say("webhook receiver not started: SENDGRID_WEBHOOK_PUBLIC_KEY is not set")
        return
    argv = [str(BIN / "event-pipeline"), "webhook", "serve", "--host", HOST, "--port", str(port)]
    hook = topology.start("webhook", argv, port=port)
    wait_until("webhook receiver", lambda: port_open(port), hook)


# -- the command --------------------------------------------------------------------------------


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    env = os.environ
    parser = argparse.ArgumentParser(description="Start the distributed topology on this machine.")
    parser.add_argument("--workers", type=int, default=int(env.get("EVENT_PIPELINE_WORKERS", "2")))
    parser.add_argument("--port", type=int, default=int(env.get("PORT", "3000")), help="webserver port")
    parser.add_argument("--webhook-port", type=int, default=int(env.get("WEBHOOK_PORT", "3001")))
    parser.add_argument("--code-server-port", type=int, default=int(env.get("EVENT_PIPELINE_CODE_SERVER_PORT", "4000")))
    parser.add_argument(
        "--redis-port", type=int, default=int(env.get("EVENT_PIPELINE_REDIS_PORT", "0")), help="0: a free port"
    )
    parser.add_argument(
        "--pg-port", type=int, default=int(env.get("EVENT_PIPELINE_PG_PORT", "0")), help="0: a free port"
    )
    parser.add_argument(
        "--celery-config",
        type=Path,
        default=Path(env.get("EVENT_PIPELINE_CELERY_YAML", str(DEPLOY / "celery.yaml"))),
        help="dagster-celery worker config (-y)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    var = Path(os.environ.get("EVENT_PIPELINE_HOME") or REPO / "var").expanduser().resolve()
    env = {**os.environ, "EVENT_PIPELINE_HOME": str(var)}
    env.setdefault("DAGSTER_HOME", str(var / "dagster_home"))
    # `dagster-celery` runs `celery`, the code server runs `dagster api execute_run`: both by name.
    env["PATH"] = f"{BIN}{os.pathsep}{env.get('PATH', '')}"
    # Files the children write for themselves (dagster-celery's config module with the broker URL,
    # compute logs) are private too.
    os.umask(0o077)
    var.mkdir(mode=0o700, parents=True, exist_ok=True)
    (var / "logs").mkdir(mode=0o700, exist_ok=True)
    pid_file = var / "topology.pid"
    if pid_file.is_file():
        old = pid_file.read_text().strip()
        if old.isdigit() and Path(f"/proc/{old}").exists():
            say(f"already running (pid {old}); `make stop` stops it")
            return 1
    pid_file.write_text(f"{os.getpid()}\n", encoding="utf-8")
    topology = Topology(var, env)

    def on_signal(signum: int, _frame: FrameType | None) -> None:
        raise KeyboardInterrupt(signal.Signals(signum).name)

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        if not (env.get("DATABASE_URL") and env.get("DAGSTER_PG_URL")):
            if env.get("DATABASE_URL") or env.get("DAGSTER_PG_URL"):
                raise TopologyError("give both DATABASE_URL and DAGSTER_PG_URL, or neither (a local server)")
            start_postgres(topology, args.pg_port or free_port())
        if not env.get("CELERY_BROKER_URL"):
            start_redis(topology, args.redis_port or free_port())
        init_var_dir(topology)
        start_dagster(
            topology,
            web_port=args.port,
            code_port=args.code_server_port,
            workers=args.workers,
            celery_yaml=args.celery_config.resolve(),
        )
        start_webhook(topology, args.webhook_port)
        topology.write_state(ready=True)
        say(f"ready: http://{HOST}:{args.port} ({args.workers} workers); Ctrl-C or `make stop` stops it")
        reported: set[str] = set()
        while True:
            for child in topology.children:
                if child.proc.poll() is not None and child.name not in reported:
                    reported.add(child.name)
                    say(f"{child.name} exited ({child.proc.returncode}); not restarted, see {child.log}")
            time.sleep(1)
    except KeyboardInterrupt:
        say("stopping")
        return_code = 0
    except TopologyError as exc:
        say(f"error: {exc}")
        return_code = 1
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        topology.stop_all()
        with contextlib.suppress(FileNotFoundError):
            (var / "topology.json").unlink()
        pid_file.unlink(missing_ok=True)
    say("stopped")
    return return_code


if __name__ == "__main__":
    sys.exit(main())
