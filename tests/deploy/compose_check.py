"""Checks docker-compose.yml against the local stack (stack_model): every process, port,
environment variable, database and gateway route of one must be in the other. Returns the
problems as sentences, so a test can show them all at once and a mutation test can look for one."""

from __future__ import annotations

import ipaddress
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from .stack_model import GATEWAY_IMAGE_FILES, ROOT, LocalStack, gateway_upstreams, resolve

POSTGRES_INIT = ROOT / "deploy" / "docker" / "postgres-init"
_CREATE_DATABASE = re.compile(r"CREATE\s+DATABASE\s+\"?(\w+)\"?", re.IGNORECASE)
INFRA = {"kafka", "postgres", "redis"}
# What compose may publish on every interface (service -> container ports): the gateway, the only
# way in, and the UIs. Every other published port must be bound to a loopback address.
PUBLIC_PORTS = {"gateway": {8000}, "tracing": {16686}, "grafana": {3000}}
# A required interpolation, `${VAR:?message}`: compose stops while VAR is unset or empty.
_REQUIRED = re.compile(r"\$\{(\w+):\?[^}]*\}")
_SHELL_VAR = re.compile(r"\$\$\{?(\w+)\}?")
_REQUIREPASS = re.compile(r"--requirepass\s+(\"[^\"]*\"|'[^']*'|\$\{[^}]*\}|\S+)")
_SECRET_NAME = re.compile(r"PASSWORD|SECRET")
# What the gateway's main configuration in the official image (deploy/gateway/nginx.image.conf)
# passes to nginx's workers besides the template's placeholders.
PASSED_TO_NGINX = {"JWT_SECRET"}


def app_services(doc: dict[str, Any]) -> dict[str, str]:
    """compose service → the module it runs with `python -m`."""
    found = {}
    for name, service in doc.get("services", {}).items():
        command = service.get("command")
        if isinstance(command, list) and command[:2] == ["python", "-m"] and len(command) > 2:
            found[name] = str(command[2])
    return found


def raw_environment(service: dict[str, Any]) -> dict[str, str]:
    """A service's environment as written, interpolations and all."""
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) if "=" in item else (item, "") for item in env)
    return {str(k): str(v) for k, v in env.items()}


def environment(service: dict[str, Any]) -> dict[str, str]:
    return {k: resolve(v) for k, v in raw_environment(service).items()}


@dataclass(frozen=True)
class Binding:
    address: str | None  # None: every interface
    host: int | None  # None: a port Docker picks
    container: int

    @property
    def loopback_only(self) -> bool:
        if self.address is None:
            return False
        try:
            return ipaddress.ip_address(self.address.strip("[]")).is_loopback
        except ValueError:
            return self.address == "localhost"


def port_bindings(service: dict[str, Any]) -> list[Binding]:
    """A service's published ports, short ("[ADDRESS:][HOST:]CONTAINER") or long syntax."""
    bindings = []
    for entry in service.get("ports") or []:
        if isinstance(entry, dict):
            published = entry.get("published")
            bindings.append(
                Binding(
                    entry.get("host_ip") or None,
                    int(published) if published else None,
                    int(entry["target"]),
                )
            )
            continue
        rest, _, container = str(entry).rpartition(":")
        address, _, host = rest.rpartition(":") if rest else ("", "", "")
        bindings.append(
            Binding(address or None, int(host) if host else None, int(container.split("/")[0]))
        )
    return bindings


def published_ports(service: dict[str, Any]) -> set[tuple[int | None, int]]:
    return {(b.host, b.container) for b in port_bindings(service)}


def required_variable(raw: str) -> str | None:
    """VAR when a compose value is exactly `${VAR:?message}`, taken from the environment or .env."""
    match = _REQUIRED.fullmatch(raw.strip())
    return match.group(1) if match else None


def url_password_variable(raw: str) -> str | None:
    """The variable a URL's password comes from (`scheme://user:${VAR:?…}@host`); None when the
    URL has no password or an inline one."""
    symbolic = _REQUIRED.sub(lambda m: f"__required_{m.group(1)}__", raw)
    password = urlsplit(resolve(symbolic)).password or ""
    match = re.fullmatch(r"__required_(\w+)__", password)
    return match.group(1) if match else None


def requirepass_variable(service: dict[str, Any]) -> str | None:
    """The compose variable Redis's `--requirepass` comes from, directly (`${VAR:?…}`) or through
    the container's environment (`"$$NAME"`, NAME: ${VAR:?…}); None without --requirepass."""
    command = service.get("command") or ""
    parts = [str(part) for part in command] if isinstance(command, list) else [str(command)]
    if "--requirepass" in parts[:-1]:  # exec form: the next item, as it is
        value = parts[parts.index("--requirepass") + 1]
    elif match := _REQUIREPASS.search(" ".join(parts)):  # a shell command line
        value = match.group(1).strip("\"'")
    else:
        return None
    if shell := _SHELL_VAR.fullmatch(value):
        value = raw_environment(service).get(shell.group(1), "")
    return required_variable(value) or ""


def healthcheck_text(service: dict[str, Any]) -> str:
    test = (service.get("healthcheck") or {}).get("test") or []
    return " ".join(str(part) for part in test) if isinstance(test, list) else str(test)


def depends_healthy(service: dict[str, Any], dependency: str) -> bool:
    depends = service.get("depends_on") or {}
    if isinstance(depends, list):
        return False
    return (depends.get(dependency) or {}).get("condition") == "service_healthy"


def database_names(sql_dir: Path = POSTGRES_INIT) -> set[str]:
    return {
        name
        for path in sorted(sql_dir.glob("*.sql"))
        for name in _CREATE_DATABASE.findall(path.read_text())
    }


def _port(url: str, default: int) -> int:
    return urlsplit(url if "://" in url else f"tcp://{url}").port or default


def check_compose(
    doc: dict[str, Any], stack: LocalStack, init_databases: set[str] | None = None
) -> list[str]:
    problems: list[str] = []
    services: dict[str, dict[str, Any]] = doc.get("services", {})
    apps = app_services(doc)
    defaults = stack.stack_defaults
    kafka_port = _port(defaults.get("KAFKA_BOOTSTRAP_SERVERS", "localhost:9092"), 9092)
    pg_port = int(defaults.get("PGPORT", "5432"))
    redis_port = _port(defaults.get("REDIS_URL", "redis://localhost:6379/0"), 6379)
    pg_user = defaults.get("SHOP_PG_USER", "shop")

    # Infrastructure on the local stack's ports.
    for name, port in (("kafka", kafka_port), ("postgres", pg_port), ("redis", redis_port)):
        if name not in services:
            problems.append(f"compose has no {name} service")
        elif port not in {host for host, _ in published_ports(services[name])}:
            problems.append(f"compose {name} is not published on the local stack's port {port}")
    pg_password: str | None = None
    if "postgres" in services:
        pg_env = raw_environment(services["postgres"])
        if resolve(pg_env.get("POSTGRES_USER", "")) != pg_user:
            problems.append(
                f"compose postgres user differs from stack.sh's SHOP_PG_USER ({pg_user})"
            )
        pg_password = required_variable(pg_env.get("POSTGRES_PASSWORD", ""))
        if "POSTGRES_PASSWORD" not in pg_env:
            problems.append("compose postgres: POSTGRES_PASSWORD is not set")
        if resolve(pg_env.get("POSTGRES_HOST_AUTH_METHOD", "")) == "trust":
            problems.append("compose postgres: POSTGRES_HOST_AUTH_METHOD=trust lets anyone in")
    redis_password: str | None = None
    if "redis" in services:
        redis_password = requirepass_variable(services["redis"])
        if redis_password is None:
            problems.append("compose redis: no --requirepass, so it answers anyone who reaches it")
    problems += check_exposure(services)
    problems += check_secrets(services)

    # The same processes.
    for module in sorted(stack.modules - set(apps.values())):
        process = stack.process(module)
        assert process is not None
        problems.append(
            f"local process {process.name!r} (python -m {module}) has no compose service"
        )
    for name, module in sorted(apps.items()):
        if module not in stack.modules:
            problems.append(
                f"compose service {name!r} runs python -m {module}, which the local stack (run.sh PROCESSES) does not run"
            )

    # Per process: variables, ports, health, databases, dependencies.
    expected_databases: set[str] = set()
    for name, module in sorted(apps.items()):
        service = services[name]
        known = stack.env.get(module)
        process = stack.process(module)
        if known is None or process is None:
            continue  # reported above as a process the local stack does not run
        env = environment(service)
        build_args = (service.get("build") or {}).get("args") or {}
        if build_args.get("SERVICE") != stack.packages.get(module):
            problems.append(
                f"compose {name}: build arg SERVICE={build_args.get('SERVICE')!r}, but {module} ships in package {stack.packages.get(module)!r}"
            )
        for var in sorted(set(env) - set(known)):
            problems.append(
                f"compose {name}: {var} is not a setting of {module} (it reads {', '.join(sorted(known))})"
            )
        if process.port is not None and process.port_var is None:
            problems.append(
                f"run.sh waits for {process.name} on port {process.port}, which no *PORT setting of {module} defaults to"
            )
        if process.port_var is not None and process.port is not None:
            port, port_var, host_var = process.port, process.port_var, process.host_var
            if port_var not in known:
                problems.append(
                    f"run.sh waits for {process.name} on {port_var}, which is not a setting of {module}"
                )
            elif known[port_var] is not None and str(known[port_var]) != str(port):
                problems.append(
                    f"{module}'s {port_var} defaults to {known[port_var]}, run.sh's readiness URL to {port}"
                )
            if env.get(port_var) != str(port):
                problems.append(
                    f"compose {name}: {port_var} should be {port} (the local port), is {env.get(port_var)!r}"
                )
            if host_var and host_var in known and env.get(host_var) != "0.0.0.0":
                problems.append(f"compose {name}: {host_var} must be 0.0.0.0 inside a container")
            if (port, port) not in published_ports(service):
                problems.append(f"compose {name}: port {port} is not published as {port}:{port}")
            if f":{port}{process.ready_path}" not in healthcheck_text(service):
                problems.append(
                    f"compose {name}: healthcheck must probe :{port}{process.ready_path} like run.sh does"
                )
        elif not service.get("healthcheck") and process.port_var is not None:
            problems.append(f"compose {name}: no healthcheck")
        for var, default in sorted(known.items()):
            if not var.endswith("DATABASE_URL"):
                continue
            if var not in env:
                problems.append(f"compose {name}: {var} is missing")
                continue
            url = urlsplit(env[var].replace("+asyncpg", ""))
            want_db = urlsplit(str(default)).path.lstrip("/") if default else None
            have_db = url.path.lstrip("/")
            expected_databases.add(have_db)
            if want_db and have_db != want_db:
                problems.append(
                    f"compose {name}: {var} names database {have_db!r}, the local default is {want_db!r}"
                )
            if (url.hostname, url.port, url.username) != ("postgres", pg_port, pg_user):
                problems.append(
                    f"compose {name}: {var} must point at postgres:{pg_port} as {pg_user}"
                )
            raw = raw_environment(service)[var]
            if pg_password and url_password_variable(raw) != pg_password:
                problems.append(
                    f"compose {name}: {var} must carry PostgreSQL's password, ${{{pg_password}}}"
                )
            if not depends_healthy(service, "postgres"):
                problems.append(f"compose {name}: must depend on postgres being healthy")
        if "KAFKA_BOOTSTRAP_SERVERS" in known:
            if env.get("KAFKA_BOOTSTRAP_SERVERS") != f"kafka:{kafka_port}":
                problems.append(
                    f"compose {name}: KAFKA_BOOTSTRAP_SERVERS must be kafka:{kafka_port}"
                )
            if not depends_healthy(service, "kafka"):
                problems.append(f"compose {name}: must depend on kafka being healthy")
        if "REDIS_URL" in known:
            redis_url = urlsplit(env.get("REDIS_URL", ""))
            if (redis_url.hostname, redis_url.port) != ("redis", redis_port):
                problems.append(f"compose {name}: REDIS_URL must point at redis:{redis_port}")
            raw = raw_environment(service).get("REDIS_URL", "")
            if redis_password and url_password_variable(raw) != redis_password:
                problems.append(
                    f"compose {name}: REDIS_URL must carry Redis's password, ${{{redis_password}}}"
                )
            if not depends_healthy(service, "redis"):
                problems.append(f"compose {name}: must depend on redis being healthy")

    # One database per service, created by the init script and by stack.sh alike.
    local_databases = set(defaults.get("SHOP_PG_DATABASES", "").split())
    init = database_names() if init_databases is None else init_databases
    if init != local_databases:
        problems.append(
            f"deploy/docker/postgres-init creates {sorted(init)}, stack.sh SHOP_PG_DATABASES is {sorted(local_databases)}"
        )
    for missing in sorted(expected_databases - init):
        problems.append(f"compose services use database {missing!r}, which no init script creates")

    problems += _check_gateway(services, apps, stack)
    return problems


def check_exposure(services: dict[str, dict[str, Any]]) -> list[str]:
    """Only the gateway and the UIs are published beyond this host: everything else would be a
    way around the gateway (PostgreSQL, Redis, Kafka, the services' own ports)."""
    problems = []
    for name, service in sorted(services.items()):
        for binding in port_bindings(service):
            if binding.loopback_only or binding.container in PUBLIC_PORTS.get(name, set()):
                continue
            where = (
                "every interface"
                if binding.address in {None, "0.0.0.0", "::", "[::]"}
                else binding.address
            )
            problems.append(
                f"compose {name}: port {binding.container} is published on {where}; bind it to 127.0.0.1"
            )
    return problems


def check_secrets(services: dict[str, dict[str, Any]]) -> list[str]:
    """No password or secret is written in docker-compose.yml: each is a required variable,
    `${VAR:?…}`, set in the environment or .env, with no default anyone could know."""
    problems = []
    for name, service in sorted(services.items()):
        for var, raw in sorted(raw_environment(service).items()):
            if _SECRET_NAME.search(var) and required_variable(raw) is None:
                problems.append(
                    f"compose {name}: {var} is written in the file; take it from .env as ${{VAR:?…}}"
                )
            inline = "://" in raw and urlsplit(resolve(raw)).password
            if inline and url_password_variable(raw) is None:
                problems.append(
                    f"compose {name}: {var} has a password written in the file; take it from .env as ${{VAR:?…}}"
                )
        if requirepass_variable(service) == "":
            problems.append(
                f"compose {name}: --requirepass is written in the file; take it from .env as ${{VAR:?…}}"
            )
    return problems


def _check_gateway(
    services: dict[str, dict[str, Any]], apps: dict[str, str], stack: LocalStack
) -> list[str]:
    gateway = services.get("gateway")
    if gateway is None:
        return ["compose has no gateway service"]
    problems = []
    env = environment(gateway)
    for var in sorted(stack.gateway_placeholders - set(env)):
        problems.append(
            f"compose gateway: {var} (a placeholder of the gateway template) is not set"
        )
    for var in sorted(
        set(env) - stack.gateway_placeholders - {"NGINX_ENVSUBST_FILTER", *PASSED_TO_NGINX}
    ):
        problems.append(f"compose gateway: {var} is not a placeholder of the gateway template")
    # The gateway verifies tokens with the services' own key (nginx.image.conf: env JWT_SECRET).
    services_secret = {raw_environment(services[app]).get("JWT_SECRET") for app in apps}
    if raw_environment(gateway).get("JWT_SECRET") not in services_secret - {None}:
        problems.append("compose gateway: JWT_SECRET must be the services' own")
    if env.get("NGINX_ENVSUBST_FILTER") != "^GATEWAY_":
        problems.append("compose gateway: NGINX_ENVSUBST_FILTER must be ^GATEWAY_")
    port = env.get("GATEWAY_HTTP_PORT", "")
    if not port.isdigit() or (int(port), int(port)) not in published_ports(gateway):
        problems.append(f"compose gateway: GATEWAY_HTTP_PORT {port!r} is not published as itself")
    mounts = " ".join(str(v) for v in gateway.get("volumes") or [])
    if "deploy/gateway/gateway.conf.template:/etc/nginx/templates/" not in mounts:
        problems.append("compose gateway: must mount deploy/gateway/gateway.conf.template")
    for source, target in GATEWAY_IMAGE_FILES.items():
        if f"deploy/gateway/{source}:{target}" not in mounts:
            problems.append(f"compose gateway: must mount deploy/gateway/{source} at {target}")
    for up in gateway_upstreams(env):
        process = stack.process(up.module)
        if apps.get(up.host) != up.module:
            problems.append(
                f"compose gateway: {up.var}={up.value} but compose service {up.host!r} does not run {up.module}"
            )
        elif process is None:
            problems.append(
                f"compose gateway: {up.var} routes to {up.module}, which the local stack does not run"
            )
        elif str(process.port) != up.port:
            problems.append(
                f"compose gateway: {up.var}={up.value} but {up.module} listens on {process.port if process else '?'}"
            )
        if not depends_healthy(gateway, up.host):
            problems.append(f"compose gateway: must depend on {up.host} being healthy")
    return problems
