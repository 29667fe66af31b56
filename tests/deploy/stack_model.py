"""The local stack as the code defines it, read from its sources of truth, so that the other ways
of running the shop (docker-compose.yml, deploy/k8s) can be checked against it:

- the processes and their readiness URLs: deploy/local/run.sh's PROCESSES table
  (plus deploy/local/processes.extra when it exists);
- the environment variables each process reads: its pydantic-settings `Settings` class (field
  names with the env prefix, or their validation aliases), or, for a process without one, the
  `os.environ` look-ups in its source;
- the infrastructure defaults: the `VAR="${VAR:-default}"` lines of deploy/local/stack.sh and of
  the parts it sources (deploy/local/stack/*.sh);
- which workspace package ships which module: the members' pyproject.toml files.
"""

from __future__ import annotations

import ast
import importlib
import inspect
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from pydantic import AliasChoices
from pydantic_settings import BaseSettings

from shopkit.ops import tracing

ROOT = Path(__file__).resolve().parents[2]
RUN_SH = ROOT / "deploy" / "local" / "run.sh"
PROCESSES_EXTRA = ROOT / "deploy" / "local" / "processes.extra"
STACK_SH = ROOT / "deploy" / "local" / "stack.sh"
STACK_PARTS = ROOT / "deploy" / "local" / "stack"
GATEWAY_TEMPLATE = ROOT / "deploy" / "gateway" / "gateway.conf.template"
# deploy/gateway's files that the official nginx image needs besides the template (its main
# configuration with njs loaded, and the script that verifies tokens), and where they go.
GATEWAY_IMAGE_FILES = {
    "nginx.image.conf": "/etc/nginx/nginx.conf",
    "identity.js": "/etc/nginx/njs/identity.js",
}

_ENTRY = re.compile(r'^\s*"([^"|]+)\|([^"|]+)\|([^"]+)"\s*$')
_URL = re.compile(r"^https?://[^:/]+:(?:\$\{(\w+):-(\d+)\}|(\d+))(/\S*)$")
_SHELL_DEFAULT = re.compile(r'^(\w+)="\$\{(\w+):-([^}]*)\}"', re.MULTILINE)
_PLACEHOLDER = re.compile(r"\$\{(GATEWAY_[A-Z0-9_]+)\}")
_UPSTREAM = re.compile(r"GATEWAY_([A-Z]+)_UPSTREAM")


@dataclass(frozen=True)
class LocalProcess:
    name: str
    module: str
    port_var: str | None = None
    port: int | None = None
    ready_path: str | None = None

    @property
    def host_var(self) -> str | None:
        """The bind-address setting beside the port one (POINT_HTTP_PORT → POINT_HTTP_HOST)."""
        return self.port_var.replace("PORT", "HOST") if self.port_var else None


@dataclass
class LocalStack:
    processes: list[LocalProcess]
    # module -> {environment variable: its default (None when it has none or it is unknown)}
    env: dict[str, dict[str, Any]]
    # module -> the workspace package (distribution name) that ships it
    packages: dict[str, str]
    stack_defaults: dict[str, str]
    gateway_placeholders: set[str] = field(default_factory=set)

    @property
    def modules(self) -> set[str]:
        return {p.module for p in self.processes}

    def process(self, module: str) -> LocalProcess | None:
        return next((p for p in self.processes if p.module == module), None)


@dataclass(frozen=True)
class Upstream:
    """A GATEWAY_<SERVICE>_UPSTREAM variable of the gateway: where it sends the service's routes."""

    var: str
    value: str  # host:port
    module: str  # the service's module, e.g. "coupon"
    host: str
    port: str


def gateway_upstreams(env: Mapping[str, str]) -> list[Upstream]:
    """The GATEWAY_<SERVICE>_UPSTREAM variables of a gateway's environment, by name."""
    upstreams = []
    for var, value in sorted(env.items()):
        if match := _UPSTREAM.fullmatch(var):
            host, _, port = value.partition(":")
            upstreams.append(Upstream(var, value, match.group(1).lower(), host, port))
    return upstreams


def parse_processes(run_sh: str, extra: str | None = None) -> list[LocalProcess]:
    """The entries of run.sh's PROCESSES=( … ) array and of processes.extra."""
    body = run_sh.split("PROCESSES=(", 1)[1].split("\n)", 1)[0] if "PROCESSES=(" in run_sh else ""
    lines = body.splitlines()
    if extra:
        lines += [f'"{line.strip()}"' for line in extra.splitlines() if line.strip()]
    processes = []
    for line in lines:
        if line.strip().startswith(("#", '"#')) or not line.strip():
            continue
        match = _ENTRY.match(line)
        if not match:
            raise ValueError(f"run.sh: cannot read the PROCESSES entry {line.strip()!r}")
        name, module, url = match.groups()
        if url == "-":
            processes.append(LocalProcess(name, module))
            continue
        parsed = _URL.match(url)
        if not parsed:
            raise ValueError(
                f"run.sh: {name}: readiness URL {url!r} is not http://host:${{VAR:-port}}/path"
                " or http://host:port/path"
            )
        port_var, default_port, literal_port, path = parsed.groups()
        processes.append(
            LocalProcess(name, module, port_var, int(default_port or literal_port), path)
        )
    return processes


def parse_shell_defaults(script: str) -> dict[str, str]:
    return {name: default for name, same, default in _SHELL_DEFAULT.findall(script) if name == same}


def stack_scripts() -> list[Path]:
    """stack.sh and the parts it sources (each part sets the defaults of its own variables)."""
    return [STACK_SH, *sorted(STACK_PARTS.glob("*.sh"))]


def stack_defaults() -> dict[str, str]:
    defaults: dict[str, str] = {}
    for script in stack_scripts():
        defaults |= parse_shell_defaults(script.read_text())
    return defaults


def settings_class(module: str) -> type[BaseSettings] | None:
    """The Settings class of `module`: the BaseSettings subclass defined in the nearest
    `<package>.config` up the dotted path (order.relay → order.relay.config, point → point.config)."""
    parts = module.split(".")
    for end in range(len(parts), 0, -1):
        name = ".".join([*parts[:end], "config"])
        try:
            config = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name and name.startswith(exc.name):
                continue
            raise
        found = [
            cls
            for _, cls in inspect.getmembers(config, inspect.isclass)
            if issubclass(cls, BaseSettings) and cls.__module__ == name
        ]
        if len(found) == 1:
            return found[0]
        if found:
            raise ValueError(f"{name} defines several settings classes: {found}")
    return None


def settings_env(cls: type[BaseSettings]) -> dict[str, Any]:
    """Every environment variable the class reads, upper-cased (pydantic-settings matches them
    case-insensitively), with the field's default."""
    prefix = str(cls.model_config.get("env_prefix", ""))
    names: dict[str, Any] = {}
    for field_name, info in cls.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, str):
            candidates = [alias]
        elif isinstance(alias, AliasChoices):
            candidates = [c for c in alias.choices if isinstance(c, str)]
        else:
            candidates = [f"{prefix}{field_name}"]
        for candidate in candidates:
            names[candidate.upper()] = info.default
    return names


def source_env(package_dir: Path) -> dict[str, Any]:
    """`os.environ.get("X", default)`, `os.getenv(…)` and `os.environ["X"]` in a package's source:
    the settings of a process that has no Settings class."""
    names: dict[str, Any] = {}
    for path in sorted(package_dir.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Call) and _is_environ_lookup(node.func) and node.args:
                key = node.args[0]
                if isinstance(key, ast.Constant) and isinstance(key.value, str):
                    default = node.args[1] if len(node.args) > 1 else None
                    names[key.value] = default.value if isinstance(default, ast.Constant) else None
            elif (
                isinstance(node, ast.Subscript)
                and _dotted(node.value) == "os.environ"
                and isinstance(node.slice, ast.Constant)
                and isinstance(node.slice.value, str)
            ):
                names[node.slice.value] = None
    return names


def _dotted(node: ast.expr) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return f"{_dotted(node.value)}.{node.attr}"
    return ""


def _is_environ_lookup(func: ast.expr) -> bool:
    return _dotted(func) in {"os.environ.get", "os.getenv", "environ.get", "getenv"}


def workspace_packages(root: Path = ROOT) -> dict[str, tuple[str, Path]]:
    """Top-level module → (distribution name, source dir) for every workspace member."""
    workspace = tomllib.loads((root / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]
    found: dict[str, tuple[str, Path]] = {}
    for pattern in workspace["members"]:
        for member in sorted(root.glob(pattern)):
            pyproject = member / "pyproject.toml"
            if not pyproject.is_file():
                continue
            meta = tomllib.loads(pyproject.read_text())
            wheel = meta.get("tool", {}).get("hatch", {}).get("build", {}).get("targets", {})
            for package in wheel.get("wheel", {}).get("packages", []):
                source = member / package
                found[source.name] = (meta["project"]["name"], source)
    return found


def module_env(module: str, packages: Mapping[str, tuple[str, Path]]) -> dict[str, Any]:
    cls = settings_class(module)
    if cls is not None:
        return settings_env(cls) | dict.fromkeys(tracing.ENVIRONMENT)
    top = module.split(".")[0]
    if top not in packages:
        raise LookupError(f"{module}: no workspace package ships it")
    return source_env(packages[top][1])


def load_local_stack(root: Path = ROOT) -> LocalStack:
    extra = PROCESSES_EXTRA.read_text() if PROCESSES_EXTRA.is_file() else None
    processes = parse_processes(RUN_SH.read_text(), extra)
    packages = workspace_packages(root)
    env: dict[str, dict[str, Any]] = {}
    owners: dict[str, str] = {}
    for process in processes:
        env[process.module] = module_env(process.module, packages)
        owners[process.module] = packages.get(process.module.split(".")[0], ("?", root))[0]
    return LocalStack(
        processes=[with_port_var(p, env[p.module]) for p in processes],
        env=env,
        packages=owners,
        stack_defaults=stack_defaults(),
        gateway_placeholders=set(_PLACEHOLDER.findall(GATEWAY_TEMPLATE.read_text())),
    )


def with_port_var(process: LocalProcess, known: Mapping[str, Any]) -> LocalProcess:
    """processes.extra lines are read, not run by bash, so their readiness URLs carry a literal
    port: the setting it stands for is the module's one *PORT variable with that default."""
    if process.port is None or process.port_var is not None:
        return process
    candidates = [
        name
        for name, default in known.items()
        if name.endswith("PORT") and str(default) == str(process.port)
    ]
    if len(candidates) != 1:
        return process  # the checks report a process whose port no setting explains
    return replace(process, port_var=candidates[0])


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?-([^}]*)|:?\?[^}]*)?\}")


def resolve(value: object) -> str:
    """A compose value with `${VAR:-default}` interpolated to its default (a required
    `${VAR:?message}` to nothing)."""
    return _INTERPOLATION.sub(lambda m: m.group(2) or "", str(value))
