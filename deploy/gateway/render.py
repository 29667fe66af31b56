"""Renders the gateway's nginx configuration for a local nginx master (deploy/local/gateway.sh,
the end-to-end tests) from the one template that docker-compose and Kubernetes use too.

    python deploy/gateway/render.py --state-dir .local/gateway --log-dir .local/logs

writes <state-dir>/gateway.conf and <state-dir>/nginx.conf and prints the latter's path.
Placeholders are `${GATEWAY_*}`, substituted exactly as the official nginx image's envsubst step
does with NGINX_ENVSUBST_FILTER=^GATEWAY_. Values come from the environment, with the local
defaults below (upstreams on 127.0.0.1 at the services' own *_HTTP_PORT settings). The main
configuration loads njs (GATEWAY_NJS_MODULE: Debian's libnginx-mod-http-js where it is found) and
finds identity.js in this directory. nginx itself needs JWT_SECRET in its environment.
Standard library only, so it runs before the workspace is installed.
"""

from __future__ import annotations

import argparse
import os
import re
import sys
from collections.abc import Mapping
from pathlib import Path

HERE = Path(__file__).resolve().parent
GATEWAY_TEMPLATE = HERE / "gateway.conf.template"
MAIN_TEMPLATE = HERE / "nginx.main.conf.template"
# Where distributions put njs's dynamic module (Debian's libnginx-mod-http-js first).
NJS_MODULES = (
    Path("/usr/lib/nginx/modules/ngx_http_js_module.so"),
    Path("/usr/share/nginx/modules/ngx_http_js_module.so"),
    Path("/etc/nginx/modules/ngx_http_js_module.so"),
    Path("/usr/lib64/nginx/modules/ngx_http_js_module.so"),
)
PLACEHOLDER = re.compile(r"\$\{(GATEWAY_[A-Z0-9_]+)\}")

# service -> (the service's port setting, its default); the same names as deploy/local/run.sh.
SERVICE_PORTS: dict[str, tuple[str, int]] = {
    "point": ("POINT_HTTP_PORT", 8001),
    "product": ("PRODUCT_HTTP_PORT", 8002),
    "coupon": ("COUPON_HTTP_PORT", 8003),
    "order": ("ORDER_HTTP_PORT", 8004),
    "ranking": ("RANKING_HTTP_PORT", 8005),
}
DEFAULT_PORT = 8000
# Per user (a token the gateway verified; the client address without one): steady rate and burst.
LIMITS = {
    "GATEWAY_ISSUE_RATE": "20r/s",
    "GATEWAY_ISSUE_BURST": "40",
    "GATEWAY_CHARGE_RATE": "10r/s",
    "GATEWAY_CHARGE_BURST": "20",
    "GATEWAY_ORDER_RATE": "10r/s",
    "GATEWAY_ORDER_BURST": "20",
    # Requests in flight per route, everybody together.
    "GATEWAY_IN_FLIGHT_MAX": "2048",
    # Requests in flight per client: a verified user, or the address of uploads without one.
    "GATEWAY_CLIENT_IN_FLIGHT_MAX": "16",
    # X-Forwarded-For is believed only from this CIDR ("unix:": from no TCP peer).
    "GATEWAY_TRUSTED_PROXIES": "unix:",
}


def placeholders(template: str) -> set[str]:
    return set(PLACEHOLDER.findall(template))


def substitute(template: str, values: Mapping[str, str]) -> str:
    missing = sorted(placeholders(template) - set(values))
    if missing:
        raise KeyError(f"no value for {', '.join(missing)}")
    return PLACEHOLDER.sub(lambda m: values[m.group(1)], template)


def upstream_variable(service: str) -> str:
    return f"GATEWAY_{service.upper()}_UPSTREAM"


def http_values(env: Mapping[str, str], *, access_log: str) -> dict[str, str]:
    """Values of gateway.conf.template for upstreams on this machine."""
    values = {
        "GATEWAY_HTTP_PORT": env.get("GATEWAY_HTTP_PORT", str(DEFAULT_PORT)),
        **{name: env.get(name, default) for name, default in LIMITS.items()},
        "GATEWAY_ACCESS_LOG": env.get("GATEWAY_ACCESS_LOG", access_log),
    }
    for service, (port_setting, default_port) in SERVICE_PORTS.items():
        variable = upstream_variable(service)
        values[variable] = env.get(
            variable, f"127.0.0.1:{env.get(port_setting, str(default_port))}"
        )
    return values


def njs_module(env: Mapping[str, str]) -> str:
    """The njs module to load: GATEWAY_NJS_MODULE, else the first one installed (else Debian's
    path, which `nginx -t` then reports as missing)."""
    if env.get("GATEWAY_NJS_MODULE"):
        return env["GATEWAY_NJS_MODULE"]
    return str(next((m for m in NJS_MODULES if m.exists()), NJS_MODULES[0]))


def render_local(
    state_dir: Path, log_dir: Path, env: Mapping[str, str], *, worker_processes: str = "auto"
) -> Path:
    """Writes gateway.conf and nginx.conf into state_dir; returns the nginx.conf to start with."""
    state_dir = state_dir.resolve()
    log_dir = log_dir.resolve()
    for sub in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"):
        (state_dir / "tmp" / sub).mkdir(parents=True, exist_ok=True)
    log_dir.mkdir(parents=True, exist_ok=True)
    values = http_values(env, access_log=str(log_dir / "gateway-access.log"))
    values |= {
        "GATEWAY_STATE_DIR": str(state_dir),
        "GATEWAY_ERROR_LOG": env.get("GATEWAY_ERROR_LOG", str(log_dir / "gateway-error.log")),
        "GATEWAY_WORKER_PROCESSES": env.get("GATEWAY_WORKER_PROCESSES", worker_processes),
        "GATEWAY_NJS_MODULE": njs_module(env),
        "GATEWAY_NJS_PATH": str(HERE),
    }
    (state_dir / "gateway.conf").write_text(
        substitute(GATEWAY_TEMPLATE.read_text(), values), encoding="utf-8"
    )
    main_conf = state_dir / "nginx.conf"
    main_conf.write_text(substitute(MAIN_TEMPLATE.read_text(), values), encoding="utf-8")
    return main_conf


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0] if __doc__ else None)
    parser.add_argument("--state-dir", type=Path, required=True)
    parser.add_argument("--log-dir", type=Path, required=True)
    args = parser.parse_args(argv)
    try:
        conf = render_local(args.state_dir, args.log_dir, os.environ)
    except KeyError as exc:
        print(f"render.py: {exc.args[0]}", file=sys.stderr)
        return 1
    print(conf)
    return 0


if __name__ == "__main__":
    sys.exit(main())
