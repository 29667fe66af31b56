"""docker-compose.yml runs the same system as the local stack: the same processes, ports,
environment variable names, databases and gateway routes. Docker cannot run here, so the file is
checked against the sources of truth of the local stack (stack_model); the mutation tests prove
the check notices a rename on either side."""

import copy
import re
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .compose_check import (
    PUBLIC_PORTS,
    Binding,
    check_compose,
    environment,
    port_bindings,
    requirepass_variable,
    url_password_variable,
)
from .stack_model import (
    ROOT,
    RUN_SH,
    LocalStack,
    parse_processes,
    settings_class,
    settings_env,
    source_env,
    with_port_var,
    workspace_packages,
)

COMPOSE = ROOT / "docker-compose.yml"
ENV_EXAMPLE = ROOT / ".env.example"
Mutation = Callable[[dict[str, Any]], None]


@pytest.fixture(scope="module")
def compose() -> dict[str, Any]:
    doc = yaml.safe_load(COMPOSE.read_text())
    assert isinstance(doc, dict)
    return doc


def test_compose_runs_the_same_system_as_the_local_stack(
    compose: dict[str, Any], stack: LocalStack
) -> None:
    problems = check_compose(compose, stack)
    assert problems == [], "\n".join(problems)


# ---------------------------------------------------------------- the check notices drift


def _rename_env(service: str, old: str, new: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        env = doc["services"][service]["environment"]
        env[new] = env.pop(old)

    return mutate


def _set_env(service: str, var: str, value: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["services"][service]["environment"][var] = value

    return mutate


def _drop_service(service: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        del doc["services"][service]

    return mutate


def _set_ports(service: str, ports: list[str]) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["services"][service]["ports"] = ports

    return mutate


def _drop_env(service: str, var: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        del doc["services"][service]["environment"][var]

    return mutate


def _set_command(service: str, command: list[str]) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        doc["services"][service]["command"] = command

    return mutate


def _drop_volume(service: str, containing: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        volumes = doc["services"][service]["volumes"]
        doc["services"][service]["volumes"] = [v for v in volumes if containing not in str(v)]

    return mutate


def _drop_dependency(service: str, dependency: str) -> Mutation:
    def mutate(doc: dict[str, Any]) -> None:
        depends = dict(doc["services"][service]["depends_on"])
        del depends[dependency]
        doc["services"][service]["depends_on"] = depends

    return mutate


def _assert_reported(
    compose: dict[str, Any], stack: LocalStack, mutate: Mutation, expected: str
) -> None:
    """The check reports `expected` of docker-compose.yml once `mutate` changed it, and not
    before."""
    assert not any(expected in problem for problem in check_compose(compose, stack))
    changed = copy.deepcopy(compose)
    mutate(changed)
    problems = check_compose(changed, stack)
    assert any(expected in problem for problem in problems), "\n".join(problems)


@pytest.mark.parametrize(
    ("service", "old", "new", "expected"),
    [
        (
            "order",
            "ORDER_DATABASE_URL",
            "ORDER_DB_URL",
            "compose order: ORDER_DB_URL is not a setting of order",
        ),
        (
            "order",
            "ORDER_DATABASE_URL",
            "ORDER_DB_URL",
            "compose order: ORDER_DATABASE_URL is missing",
        ),
        (
            "coupon",
            "REDIS_URL",
            "COUPON_REDIS_ADDRESS",
            "compose coupon: COUPON_REDIS_ADDRESS is not a setting of coupon",
        ),
        (
            "gateway",
            "GATEWAY_ISSUE_BURST",
            "GATEWAY_BURST",
            "compose gateway: GATEWAY_ISSUE_BURST (a placeholder of the gateway template) is not set",
        ),
    ],
)
def test_a_variable_renamed_in_compose_is_reported(
    compose: dict[str, Any], stack: LocalStack, service: str, old: str, new: str, expected: str
) -> None:
    _assert_reported(compose, stack, _rename_env(service, old, new), expected)


@pytest.mark.parametrize(
    ("service", "variable", "value", "expected"),
    [
        (
            "point",
            "POINT_DATABASE_URL",
            "postgresql+asyncpg://shop:shop@postgres:5432/points",
            "names database 'points', the local default is 'shop_point'",
        ),
        (
            "gateway",
            "GATEWAY_ORDER_UPSTREAM",
            "order:8005",
            "compose gateway: GATEWAY_ORDER_UPSTREAM=order:8005 but order listens on 8004",
        ),
        ("point", "POINT_HTTP_PORT", "8011", "compose point: POINT_HTTP_PORT should be 8001"),
    ],
)
def test_a_value_changed_in_compose_is_reported(
    compose: dict[str, Any],
    stack: LocalStack,
    service: str,
    variable: str,
    value: str,
    expected: str,
) -> None:
    _assert_reported(compose, stack, _set_env(service, variable, value), expected)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            _drop_dependency("coupon", "redis"),
            "compose coupon: must depend on redis being healthy",
            id="dependency-dropped",
        ),
        pytest.param(
            _set_ports("product", ["18002:8002"]),
            "compose product: port 8002 is not published as 8002:8002",
            id="published-port-changed",
        ),
        pytest.param(
            _drop_service("point"),
            "local process 'point' (python -m point) has no compose service",
            id="process-missing-from-compose",
        ),
        pytest.param(
            _drop_env("gateway", "JWT_SECRET"),
            "compose gateway: JWT_SECRET must be the services' own",
            id="gateway-cannot-verify-tokens",
        ),
        pytest.param(
            _drop_volume("gateway", "nginx.image.conf"),
            "compose gateway: must mount deploy/gateway/nginx.image.conf at /etc/nginx/nginx.conf",
            id="gateway-without-njs",
        ),
    ],
)
def test_a_service_changed_in_compose_is_reported(
    compose: dict[str, Any], stack: LocalStack, mutate: Mutation, expected: str
) -> None:
    _assert_reported(compose, stack, mutate, expected)


def _settings_of(module: str) -> type[BaseSettings]:
    found = settings_class(module)
    assert found is not None, module
    return found


def _with_settings(stack: LocalStack, module: str, settings: type[BaseSettings]) -> LocalStack:
    """The local stack as it would be with `settings` as the Settings of `module`."""
    drifted = copy.deepcopy(stack)
    drifted.env[module] = settings_env(settings)
    return drifted


def test_a_renamed_env_prefix_in_the_settings_is_reported(
    compose: dict[str, Any], stack: LocalStack
) -> None:
    class Renamed(_settings_of("point")):  # type: ignore[misc]
        model_config = SettingsConfigDict(env_prefix="POINTS_")

    problems = check_compose(compose, _with_settings(stack, "point", Renamed))
    assert "compose point: POINT_DATABASE_URL is not a setting of point" in "\n".join(problems)
    assert any("POINTS_DATABASE_URL is missing" in p for p in problems), problems


def test_a_renamed_alias_in_the_settings_is_reported(
    compose: dict[str, Any], stack: LocalStack
) -> None:

    class Renamed(_settings_of("coupon")):  # type: ignore[misc]
        redis_url: str = Field(default="redis://localhost:6379/0", validation_alias="COUPON_REDIS")

    problems = check_compose(compose, _with_settings(stack, "coupon", Renamed))
    assert any(
        p.startswith("compose coupon: REDIS_URL is not a setting of coupon") for p in problems
    )


def _with_run_sh(stack: LocalStack, old: str, new: str) -> LocalStack:
    """The local stack as it would be with `old` in run.sh replaced by `new`."""
    drifted = copy.deepcopy(stack)
    drifted.processes = parse_processes(RUN_SH.read_text().replace(old, new))
    return drifted


def test_a_renamed_port_variable_in_run_sh_is_reported(
    compose: dict[str, Any], stack: LocalStack
) -> None:
    drifted = _with_run_sh(stack, "${POINT_HTTP_PORT:-8001}", "${POINT_PORT:-8001}")
    problems = check_compose(compose, drifted)
    assert "run.sh waits for point on POINT_PORT, which is not a setting of point" in problems


def test_a_process_renamed_in_run_sh_is_reported(
    compose: dict[str, Any], stack: LocalStack
) -> None:
    drifted = _with_run_sh(stack, '"product|product|', '"product|product.api|')
    problems = "\n".join(check_compose(compose, drifted))
    assert "(python -m product.api) has no compose service" in problems
    assert "compose service 'product' runs python -m product, which the local stack" in problems


def test_a_database_missing_from_the_init_script_is_reported(
    compose: dict[str, Any], stack: LocalStack
) -> None:
    init = set(stack.stack_defaults["SHOP_PG_DATABASES"].split()) - {"shop_coupon"}
    problems = "\n".join(check_compose(compose, stack, init_databases=init))
    assert "compose services use database 'shop_coupon', which no init script creates" in problems


# ---------------------------------------------------------------- the readers themselves


def test_run_sh_entries_are_read_with_their_readiness_port() -> None:
    processes = parse_processes(
        'PROCESSES=(\n  "point|point|http://127.0.0.1:${POINT_HTTP_PORT:-8001}/readyz"\n'
        '  "worker|ranking.worker|-"\n)\n',
        "# extra\nstandin|dataplatform_standin|http://127.0.0.1:${STANDIN_PORT:-8090}/healthz\n",
    )
    assert [(p.name, p.module, p.port_var, p.port, p.ready_path) for p in processes] == [
        ("point", "point", "POINT_HTTP_PORT", 8001, "/readyz"),
        ("worker", "ranking.worker", None, None, None),
        ("standin", "dataplatform_standin", "STANDIN_PORT", 8090, "/healthz"),
    ]
    assert processes[2].host_var == "STANDIN_HOST"


def test_a_literal_readiness_port_is_matched_to_the_setting_it_stands_for() -> None:
    [process] = parse_processes("", "relay|order.relay|http://127.0.0.1:8006/readyz\n")
    assert process.port_var is None
    known = settings_env(_settings_of("order.relay"))
    assert with_port_var(process, known).port_var == "ORDER_RELAY_HTTP_PORT"
    assert with_port_var(replace(process, port=8016), known).port_var is None


def test_a_port_in_processes_extra_that_no_setting_has_is_reported(
    compose: dict[str, Any], stack: LocalStack
) -> None:
    drifted = copy.deepcopy(stack)
    drifted.processes = [
        replace(p, port=8096, port_var=None) if p.module == "dataplatform_standin" else p
        for p in drifted.processes
    ]
    if not any(p.module == "dataplatform_standin" for p in drifted.processes):
        pytest.skip("the stand-in is not part of the local stack")
    problems = check_compose(compose, drifted)
    assert (
        "run.sh waits for dataplatform on port 8096, which no *PORT setting of dataplatform_standin defaults to"
        in problems
    )


def test_settings_env_has_prefixed_fields_and_unprefixed_aliases() -> None:
    names = settings_env(_settings_of("coupon"))
    assert names["COUPON_HTTP_PORT"] == 8003
    assert {"COUPON_DATABASE_URL", "REDIS_URL", "KAFKA_BOOTSTRAP_SERVERS", "JWT_SECRET"} <= set(
        names
    )
    assert "COUPON_REDIS_URL" not in names


def test_a_process_without_settings_is_read_from_its_environ_lookups() -> None:
    _, source = workspace_packages()["dataplatform_standin"]
    names = source_env(source)
    assert names["STANDIN_PORT"] == "8090"
    assert "DATA_PLATFORM_SECRET" in names


def test_compose_values_are_read_with_their_interpolation_defaults(
    compose: dict[str, Any],
) -> None:
    assert environment(compose["services"]["point"])["LOG_LEVEL"] == "INFO"
    assert environment(compose["services"]["point"])["JWT_SECRET"] == ""


def test_compose_confines_users_and_has_no_default_secrets(compose: dict[str, Any]) -> None:
    """No secret anyone could know: compose stops with a message until the operator sets them."""
    for name, service in compose["services"].items():
        raw = {str(k): str(v) for k, v in (service.get("environment") or {}).items()}
        assert "SHOP_LOCAL_MODE" not in raw, name
        for var in ("JWT_SECRET", "DATA_PLATFORM_SECRET"):
            if var in raw:
                assert raw[var].startswith(f"${{{var}:?"), (name, var, raw[var])
        if "JWT_SECRET" in raw:
            assert raw.get("AUTH_ENFORCE_USERS", "true") == "true", name


# ---------------------------------------------------------------- what compose exposes


def test_only_the_gateway_and_the_uis_are_published_beyond_this_host(
    compose: dict[str, Any],
) -> None:
    public = {
        (name, binding.container)
        for name, service in compose["services"].items()
        for binding in port_bindings(service)
        if not binding.loopback_only
    }
    assert public == {(name, port) for name, ports in PUBLIC_PORTS.items() for port in ports}
    for name in ("kafka", "postgres", "redis", "point", "dataplatform", "prometheus"):
        assert {b.address for b in port_bindings(compose["services"][name])} == {"127.0.0.1"}, name


def test_redis_and_postgres_passwords_come_from_the_env_file(compose: dict[str, Any]) -> None:
    services = compose["services"]
    assert requirepass_variable(services["redis"]) == "REDIS_PASSWORD"
    assert url_password_variable(services["coupon"]["environment"]["REDIS_URL"]) == "REDIS_PASSWORD"
    assert services["postgres"]["environment"]["POSTGRES_PASSWORD"].startswith(
        "${POSTGRES_PASSWORD:?"
    )
    for name in ("point", "order-relay", "ranking-worker"):
        urls = [v for k, v in services[name]["environment"].items() if k.endswith("DATABASE_URL")]
        assert [url_password_variable(url) for url in urls] == ["POSTGRES_PASSWORD"], name


def test_the_env_example_names_every_required_variable_and_no_value() -> None:
    """`cp .env.example .env` gives the operator every variable compose stops without, all empty
    (compose refuses empty ones too), and .env stays out of git and of the images."""
    required = set(re.findall(r"\$\{(\w+):\?", COMPOSE.read_text()))
    example = dict(
        line.split("=", 1)
        for line in ENV_EXAMPLE.read_text().splitlines()
        if "=" in line and not line.startswith("#")
    )
    assert set(example) == required
    assert {"JWT_SECRET", "POSTGRES_PASSWORD", "REDIS_PASSWORD"} <= required
    assert set(example.values()) == {""}
    assert ".env" in (ROOT / ".gitignore").read_text().splitlines()
    dockerignore = ROOT / "deploy" / "docker" / "Dockerfile.dockerignore"
    assert ".env" in dockerignore.read_text().splitlines()


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            _set_ports("postgres", ["5432:5432"]),
            "compose postgres: port 5432 is published on every interface; bind it to 127.0.0.1",
            id="postgres-on-every-interface",
        ),
        pytest.param(
            _set_ports("coupon", ["0.0.0.0:8003:8003"]),
            "compose coupon: port 8003 is published on every interface",
            id="service-port-around-the-gateway",
        ),
        pytest.param(
            _set_ports("kafka", ["192.168.1.5:9092:9094"]),
            "compose kafka: port 9094 is published on 192.168.1.5",
            id="kafka-on-a-lan-address",
        ),
        pytest.param(
            _set_ports("tracing", ["16686:16686", "4318:4318"]),
            "compose tracing: port 4318 is published on every interface",
            id="a-ui-service-publishing-more-than-its-ui",
        ),
        pytest.param(
            _set_command("redis", ["redis-server", "--save", ""]),
            "compose redis: no --requirepass",
            id="redis-without-a-password",
        ),
        pytest.param(
            _set_command("redis", ["redis-server", "--requirepass", "hunter2"]),
            "compose redis: --requirepass is written in the file",
            id="redis-password-inline",
        ),
        pytest.param(
            _set_env("redis", "REDIS_PASSWORD", "hunter2"),
            "compose redis: REDIS_PASSWORD is written in the file",
            id="redis-password-variable-inline",
        ),
        pytest.param(
            _set_env("postgres", "POSTGRES_PASSWORD", "shop"),
            "compose postgres: POSTGRES_PASSWORD is written in the file",
            id="postgres-password-inline",
        ),
        pytest.param(
            _set_env("postgres", "POSTGRES_PASSWORD", "${POSTGRES_PASSWORD:-shop}"),
            "compose postgres: POSTGRES_PASSWORD is written in the file",
            id="postgres-password-with-a-known-default",
        ),
        pytest.param(
            _set_env("coupon", "REDIS_URL", "redis://redis:6379/0"),
            "compose coupon: REDIS_URL must carry Redis's password, ${REDIS_PASSWORD}",
            id="redis-url-without-the-password",
        ),
        pytest.param(
            _set_env("coupon", "REDIS_URL", "redis://:hunter2@redis:6379/0"),
            "compose coupon: REDIS_URL has a password written in the file",
            id="redis-url-password-inline",
        ),
        pytest.param(
            _set_env(
                "order",
                "ORDER_DATABASE_URL",
                "postgresql+asyncpg://shop:shop@postgres:5432/shop_order",
            ),
            "compose order: ORDER_DATABASE_URL has a password written in the file",
            id="database-url-password-inline",
        ),
        pytest.param(
            _set_env(
                "point",
                "POINT_DATABASE_URL",
                "postgresql+asyncpg://shop:${PG_PASS:?set it}@postgres:5432/shop_point",
            ),
            "compose point: POINT_DATABASE_URL must carry PostgreSQL's password, ${POSTGRES_PASSWORD}",
            id="database-url-with-another-password",
        ),
        pytest.param(
            _drop_env("postgres", "POSTGRES_PASSWORD"),
            "compose postgres: POSTGRES_PASSWORD is not set",
            id="postgres-password-dropped",
        ),
        pytest.param(
            _set_env("postgres", "POSTGRES_HOST_AUTH_METHOD", "trust"),
            "compose postgres: POSTGRES_HOST_AUTH_METHOD=trust lets anyone in",
            id="postgres-without-passwords",
        ),
        pytest.param(
            _set_env("grafana", "GF_SECURITY_ADMIN_PASSWORD", "admin"),
            "compose grafana: GF_SECURITY_ADMIN_PASSWORD is written in the file",
            id="grafana-admin-password-inline",
        ),
    ],
)
def test_an_exposed_port_or_a_written_password_is_reported(
    compose: dict[str, Any], stack: LocalStack, mutate: Mutation, expected: str
) -> None:
    _assert_reported(compose, stack, mutate, expected)


@pytest.mark.parametrize(
    ("entry", "binding", "loopback_only"),
    [
        ("8000:8000", Binding(None, 8000, 8000), False),
        ("127.0.0.1:9092:9094", Binding("127.0.0.1", 9092, 9094), True),
        ("[::1]:6379:6379", Binding("[::1]", 6379, 6379), True),
        ("0.0.0.0:5432:5432/tcp", Binding("0.0.0.0", 5432, 5432), False),
        ("4318", Binding(None, None, 4318), False),
        (
            {"target": 3000, "published": "3000", "host_ip": "127.0.0.1"},
            Binding("127.0.0.1", 3000, 3000),
            True,
        ),
        ({"target": 3000, "published": 3000}, Binding(None, 3000, 3000), False),
    ],
)
def test_published_ports_are_read_with_their_address(
    entry: object, binding: Binding, loopback_only: bool
) -> None:
    [read] = port_bindings({"ports": [entry]})
    assert read == binding
    assert read.loopback_only is loopback_only


def test_passwords_are_read_as_the_variables_they_come_from() -> None:
    assert url_password_variable("redis://:${R:?set R}@redis:6379/0") == "R"
    assert url_password_variable("postgresql://shop:${P:?}@postgres/db") == "P"
    assert url_password_variable("redis://:${R:-secret}@redis:6379/0") is None
    assert url_password_variable("redis://:secret@redis:6379/0") is None
    assert url_password_variable("redis://redis:6379/0") is None
    direct = {"command": ["redis-server", "--requirepass", "${R:?set R}"]}
    assert requirepass_variable(direct) == "R"
    through_env = {
        "environment": {"PW": "${R:?set R}"},
        "command": ["sh", "-c", "exec redis-server --requirepass \"$$PW\" --save ''"],
    }
    assert requirepass_variable(through_env) == "R"
    assert requirepass_variable({"command": "redis-server --requirepass hunter2"}) == ""
    assert requirepass_variable({"command": ["redis-server"]}) is None
