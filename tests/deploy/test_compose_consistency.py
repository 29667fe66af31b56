"""docker-compose.yml runs the same system as the local stack: the same processes, ports,
environment variable names, databases and gateway routes. Docker cannot run here, so the file is
checked against the sources of truth of the local stack (stack_model); the mutation tests prove
the check notices a rename on either side."""

import copy
from collections.abc import Callable
from dataclasses import replace
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from .compose_check import check_compose, environment
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
