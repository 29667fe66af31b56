"""deploy/k8s runs the same processes as the local stack, each with probes, resources, a
disruption budget, the API ones with an autoscaler, and only environment variables its Settings
know. Checked on the base and on the production overlay as kustomize would build them."""

import copy
from collections.abc import Callable
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from .k8s_check import (
    BASE,
    PRODUCTION,
    build,
    check_manifests,
    copy_k8s,
    unlisted_files,
    with_operator_secrets,
)
from .stack_model import LocalStack

Docs = list[dict[str, Any]]


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> Docs:
    return build(with_operator_secrets(tmp_path_factory.mktemp("k8s")))


def test_every_manifest_file_is_part_of_its_kustomization() -> None:
    assert unlisted_files(BASE) == []
    assert unlisted_files(PRODUCTION) == []


def test_the_base_matches_the_local_stack(stack: LocalStack) -> None:
    problems = check_manifests(build(BASE), stack, with_secrets=False)
    assert problems == [], "\n".join(problems)


def test_the_production_overlay_matches_the_local_stack(
    stack: LocalStack, production: Docs
) -> None:
    problems = check_manifests(production, stack, with_secrets=True)
    assert problems == [], "\n".join(problems)


def test_the_production_overlay_ships_no_secret_and_does_not_build_without_one(
    tmp_path: Path,
) -> None:
    overlay = copy_k8s(tmp_path)
    with pytest.raises(FileNotFoundError, match="secrets/jwt.env"):
        build(overlay)
    # The examples are no usable secrets: the keys are empty (the services refuse them).
    for example in (overlay / "secrets.example").glob("*.env"):
        values = dict(
            line.split("=", 1)
            for line in example.read_text().splitlines()
            if "=" in line and not line.startswith("#")
        )
        if example.stem in {"jwt", "dataplatform"}:
            assert set(values.values()) == {""}, example
        else:  # a URL whose password the operator fills in
            assert urlsplit(values["url"]).password == "<password>", example


def test_users_are_confined_in_every_deployment(production: Docs) -> None:
    for docs in (build(BASE), production):
        [config] = [
            d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "shop-config"
        ]
        assert config["data"]["AUTH_ENFORCE_USERS"] == "true"
        for doc in docs:
            text = repr(doc)
            assert "SHOP_LOCAL_MODE" not in text, doc["metadata"]["name"]
            assert "local-dev-secret" not in text, doc["metadata"]["name"]
    [gateway] = _deployment(production, "gateway")["spec"]["template"]["spec"]["containers"]
    env = {e["name"]: e.get("value") for e in gateway["env"]}
    assert env["GATEWAY_TRUSTED_PROXIES"] == "10.0.0.0/8"


def test_the_overlay_sets_namespace_images_and_consumer_replicas(production: Docs) -> None:
    deployments = {d["metadata"]["name"]: d for d in production if d["kind"] == "Deployment"}
    assert {d["metadata"].get("namespace") for d in production} == {"shop"}
    [relay] = deployments["order-relay"]["spec"]["template"]["spec"]["containers"]
    assert relay["image"] == "registry.example.com/shop/order:0.1.0"
    assert deployments["point-worker"]["spec"]["replicas"] == 4


def _deployment(docs: Docs, name: str) -> dict[str, Any]:
    [found] = [d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == name]
    return found


def _container(docs: Docs, name: str) -> dict[str, Any]:
    container: dict[str, Any] = _deployment(docs, name)["spec"]["template"]["spec"]["containers"][0]
    return container


def _rename_env(name: str, old: str, new: str) -> Callable[[Docs], None]:
    def mutate(docs: Docs) -> None:
        for var in _container(docs, name)["env"]:
            if var["name"] == old:
                var["name"] = new

    return mutate


def _drop(name: str, key: str) -> Callable[[Docs], None]:
    def mutate(docs: Docs) -> None:
        del _container(docs, name)[key]

    return mutate


def _config(name: str, key: str, value: str) -> Callable[[Docs], None]:
    def mutate(docs: Docs) -> None:
        [config] = [d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == name]
        config["data"][key] = value

    return mutate


def _replicas(name: str, count: int) -> Callable[[Docs], None]:
    def mutate(docs: Docs) -> None:
        _deployment(docs, name)["spec"]["replicas"] = count

    return mutate


def _gateway_env(var: str, value: str) -> Callable[[Docs], None]:
    def mutate(docs: Docs) -> None:
        for entry in _container(docs, "gateway")["env"]:
            if entry["name"] == var:
                entry["value"] = value

    return mutate


def _drop_kind(kind: str, name: str) -> Callable[[Docs], None]:
    def mutate(docs: Docs) -> None:
        docs[:] = [d for d in docs if (d["kind"], d["metadata"]["name"]) != (kind, name)]

    return mutate


def _assert_reported(
    stack: LocalStack, production: Docs, mutate: Callable[[Docs], None], expected: str
) -> None:
    """The check reports `expected` of the production overlay once `mutate` changed it, and
    not before."""
    assert not any(expected in p for p in check_manifests(production, stack, with_secrets=True))
    changed = copy.deepcopy(production)
    mutate(changed)
    problems = check_manifests(changed, stack, with_secrets=True)
    assert any(expected in p for p in problems), "\n".join(problems)


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            _rename_env("point-api", "POINT_HTTP_PORT", "POINT_PORT"),
            "Deployment/point-api: POINT_PORT is not a setting of point",
            id="variable-renamed",
        ),
        pytest.param(
            _config("shop-config", "KAFKA_BROKERS", "kafka:9092"),
            "Deployment/order-worker: KAFKA_BROKERS is not a setting of order",
            id="unknown-variable-in-a-config-map",
        ),
        pytest.param(
            _replicas("order-worker", 9),
            "Deployment/order-worker: 9 consumers, but only 8 partitions",
            id="more-consumers-than-partitions",
        ),
        pytest.param(
            _gateway_env("GATEWAY_COUPON_UPSTREAM", "coupon:8004"),
            "GATEWAY_COUPON_UPSTREAM=coupon:8004, but Service/coupon has no port 8004",
            id="gateway-upstream-port",
        ),
        pytest.param(
            _drop("gateway", "envFrom"),
            "Deployment/gateway: JWT_SECRET must come from Secret/shop-jwt, as the services'",
            id="gateway-cannot-verify-tokens",
        ),
    ],
)
def test_a_drifted_setting_is_reported(
    stack: LocalStack, production: Docs, mutate: Callable[[Docs], None], expected: str
) -> None:
    _assert_reported(stack, production, mutate, expected)


@pytest.mark.parametrize(
    ("deployment", "key", "says"),
    [
        ("coupon-api", "readinessProbe", "no readinessProbe"),
        ("order-relay", "livenessProbe", "no livenessProbe"),
        ("product-worker", "resources", "no cpu request"),
    ],
)
def test_a_container_without_probes_or_resources_is_reported(
    stack: LocalStack, production: Docs, deployment: str, key: str, says: str
) -> None:
    _assert_reported(stack, production, _drop(deployment, key), f"Deployment/{deployment}: {says}")


@pytest.mark.parametrize(
    ("kind", "name", "expected"),
    [
        (
            "HorizontalPodAutoscaler",
            "product-api",
            "Deployment/product-api: an API without a HorizontalPodAutoscaler",
        ),
        (
            "PodDisruptionBudget",
            "order-relay",
            "Deployment/order-relay: covered by 0 PodDisruptionBudgets, not 1",
        ),
        ("Deployment", "order-relay", "local process python -m order.relay has no Deployment"),
        ("Secret", "point-db", "POINT_DATABASE_URL refers to point-db/url, which does not exist"),
    ],
)
def test_a_missing_object_is_reported(
    stack: LocalStack, production: Docs, kind: str, name: str, expected: str
) -> None:
    _assert_reported(stack, production, _drop_kind(kind, name), expected)


def test_a_gateway_mounting_another_config_map_is_reported(
    stack: LocalStack, production: Docs
) -> None:
    changed = copy.deepcopy(production)
    [volume] = _deployment(changed, "gateway")["spec"]["template"]["spec"]["volumes"]
    volume["configMap"]["name"] = "shop-config"
    problems = check_manifests(changed, stack, with_secrets=True)
    assert (
        "Deployment/gateway: the mounted template is not deploy/gateway/gateway.conf.template"
        in problems
    )
    assert "Deployment/gateway: /etc/nginx/nginx.conf is not deploy/gateway/nginx.image.conf" in (
        problems
    )
    assert "Deployment/gateway: /etc/nginx/njs/identity.js is not deploy/gateway/identity.js" in (
        problems
    )


# ---------------------------------------------------------------- keys and passwords


def _set_env(name: str, var: str, entry: dict[str, Any] | None) -> Callable[[Docs], None]:
    """Replaces (None: removes) `var` in the container of Deployment `name`."""

    def mutate(docs: Docs) -> None:
        container = _container(docs, name)
        container["env"] = [e for e in container["env"] if e["name"] != var]
        if entry is not None:
            container["env"].append({"name": var, **entry})

    return mutate


def _then(*mutations: Callable[[Docs], None]) -> Callable[[Docs], None]:
    def mutate(docs: Docs) -> None:
        for change in mutations:
            change(docs)

    return mutate


def _secret_value(name: str, key: str, value: str) -> Callable[[Docs], None]:
    def mutate(docs: Docs) -> None:
        [secret] = [d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == name]
        secret["stringData"][key] = value

    return mutate


def test_redis_is_reached_with_a_password_from_a_secret(production: Docs) -> None:
    for deployment in ("coupon-api", "coupon-worker"):
        [redis] = [e for e in _container(production, deployment)["env"] if e["name"] == "REDIS_URL"]
        assert redis["valueFrom"]["secretKeyRef"] == {"name": "coupon-redis", "key": "url"}
    [secret] = [
        d for d in production if d["kind"] == "Secret" and d["metadata"]["name"] == "coupon-redis"
    ]
    url = urlsplit(secret["stringData"]["url"])
    assert url.scheme == "redis"
    assert url.password


@pytest.mark.parametrize(
    ("mutate", "expected"),
    [
        pytest.param(
            _then(
                _set_env("coupon-api", "REDIS_URL", None),
                _config("shop-config", "REDIS_URL", "redis://redis.example.internal:6379/0"),
            ),
            "Deployment/coupon-api: REDIS_URL comes from ConfigMap/shop-config, not from a Secret",
            id="redis-url-in-a-config-map",
        ),
        pytest.param(
            _set_env("coupon-worker", "REDIS_URL", {"value": "redis://:hunter2@redis:6379/0"}),
            "Deployment/coupon-worker: REDIS_URL has a password in a plain value",
            id="redis-password-in-a-plain-value",
        ),
        pytest.param(
            _secret_value("coupon-redis", "url", "redis://redis.example.internal:6379/0"),
            "Deployment/coupon-api: REDIS_URL (coupon-redis/url) has no password",
            id="redis-without-a-password",
        ),
        pytest.param(
            _set_env("point-api", "JWT_SECRET", {"value": "x" * 64}),
            "Deployment/point-api: JWT_SECRET comes from value, not from a Secret",
            id="jwt-secret-in-a-plain-value",
        ),
        pytest.param(
            _set_env(
                "order-relay",
                "ORDER_RELAY_DATABASE_URL",
                {"valueFrom": {"configMapKeyRef": {"name": "order-relay-config", "key": "db"}}},
            ),
            "Deployment/order-relay: ORDER_RELAY_DATABASE_URL comes from ConfigMap/order-relay-config",
            id="database-url-from-a-config-map",
        ),
        pytest.param(
            _config("order-relay-config", "DATA_PLATFORM_URL", "https://shop:hunter2@dp.example"),
            "ConfigMap/order-relay-config: DATA_PLATFORM_URL has a password; it belongs in a Secret",
            id="password-in-a-config-map",
        ),
    ],
)
def test_a_key_or_password_outside_a_secret_is_reported(
    stack: LocalStack, production: Docs, mutate: Callable[[Docs], None], expected: str
) -> None:
    _assert_reported(stack, production, mutate, expected)
