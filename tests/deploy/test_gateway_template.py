"""The gateway's nginx configuration is one template, deploy/gateway/gateway.conf.template, and
every way of running the shop renders that file: the local nginx (deploy/local/gateway.sh runs
deploy/gateway/render.py), docker-compose (mounted into the nginx image's templates) and
Kubernetes (the ConfigMap that deploy/gateway/kustomization.yaml generates, included by
deploy/k8s/base). A copy of it anywhere in the repository is reported. Its main context (njs
loaded, JWT_SECRET passed to the workers, where identity.js is) is nginx.main.conf.template
locally and nginx.image.conf in the official image."""

import importlib.util
import os
import re
import shutil
import subprocess
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from .compose_check import environment
from .k8s_check import BASE, PRODUCTION, build, config_map_sources, with_operator_secrets
from .stack_model import GATEWAY_IMAGE_FILES, GATEWAY_TEMPLATE, ROOT

COMPOSE = ROOT / "docker-compose.yml"
GATEWAY_SH = ROOT / "deploy" / "local" / "gateway.sh"
MAIN_TEMPLATE = GATEWAY_TEMPLATE.parent / "nginx.main.conf.template"
IMAGE_CONF = GATEWAY_TEMPLATE.parent / "nginx.image.conf"
# Where the official nginx image's entrypoint looks for templates to run envsubst on.
NGINX_TEMPLATES = "/etc/nginx/templates/"


def _renderer() -> ModuleType:
    spec = importlib.util.spec_from_file_location(
        "gateway_render", GATEWAY_TEMPLATE.parent / "render.py"
    )
    assert spec is not None
    assert spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _same_content(target: Path) -> list[Path]:
    """Files of the repository (outside hidden directories) whose bytes are target's."""
    size, content = target.stat().st_size, target.read_bytes()
    found = []
    for directory, subdirs, files in os.walk(ROOT):
        subdirs[:] = [d for d in subdirs if not d.startswith(".") and d != "node_modules"]
        for name in files:
            path = Path(directory) / name
            if path.stat().st_size == size and path.read_bytes() == content:
                found.append(path)
    return found


def test_the_gateway_template_is_committed_once() -> None:
    assert _same_content(GATEWAY_TEMPLATE) == [GATEWAY_TEMPLATE]


def test_the_local_gateway_renders_the_template(tmp_path: Path) -> None:
    render = _renderer()
    assert "deploy/gateway/render.py" in GATEWAY_SH.read_text()
    assert Path(render.GATEWAY_TEMPLATE).resolve() == GATEWAY_TEMPLATE.resolve()
    render.render_local(tmp_path / "gateway", tmp_path / "logs", {})
    rendered = (tmp_path / "gateway" / "gateway.conf").read_text()
    assert render.placeholders(rendered) == set()
    assert "127.0.0.1:8004" in rendered  # the order service's local default port


def test_compose_mounts_the_template() -> None:
    gateway = yaml.safe_load(COMPOSE.read_text())["services"]["gateway"]
    templates = [
        (source, target)
        for source, target, *_ in (str(v).split(":") for v in gateway.get("volumes") or [])
        if target.startswith(NGINX_TEMPLATES)
    ]
    assert len(templates) == 1, templates
    [(source, target)] = templates
    assert (COMPOSE.parent / source).resolve() == GATEWAY_TEMPLATE.resolve()
    assert target.endswith(".template")  # the image renders only *.template files
    _substitute(environment(gateway))


@pytest.fixture(scope="module")
def production(tmp_path_factory: pytest.TempPathFactory) -> list[dict[str, Any]]:
    return build(with_operator_secrets(tmp_path_factory.mktemp("k8s")))


@pytest.mark.parametrize("overlay", [BASE, PRODUCTION], ids=["base", "production"])
def test_kubernetes_mounts_the_config_map_generated_from_the_template(
    overlay: Path, production: list[dict[str, Any]]
) -> None:
    docs = build(BASE) if overlay == BASE else production
    [deployment] = [
        d for d in docs if d["kind"] == "Deployment" and d["metadata"]["name"] == "gateway"
    ]
    pod = deployment["spec"]["template"]["spec"]
    [container] = pod["containers"]
    volumes = {v["name"]: v for v in pod.get("volumes") or []}
    mounts = [
        m for m in container.get("volumeMounts") or [] if m["mountPath"].startswith(NGINX_TEMPLATES)
    ]
    assert len(mounts) == 1, mounts
    [mount] = mounts
    assert mount["mountPath"].endswith(".template")
    config_map = volumes[mount["name"]]["configMap"]["name"]
    # The sources are read from the repository itself: the secrets do not take part in them.
    source = config_map_sources(overlay)[config_map][mount["subPath"]]
    assert source == GATEWAY_TEMPLATE.resolve()
    _substitute({e["name"]: str(e["value"]) for e in container["env"] if "value" in e})


def _substitute(values: dict[str, str]) -> None:
    """The template filled with one deployment's values leaves no placeholder."""
    render = _renderer()
    assert render.placeholders(render.substitute(GATEWAY_TEMPLATE.read_text(), values)) == set()


def _directives(conf: str, name: str) -> list[str]:
    """The arguments of every `name …;` directive of an nginx configuration."""
    return re.findall(rf"^\s*{name}\s+([^;]*);", conf, re.MULTILINE)


def test_both_main_configurations_load_njs_pass_the_secret_and_find_identity_js(
    tmp_path: Path,
) -> None:
    template = GATEWAY_TEMPLATE.read_text()
    assert _directives(template, "js_import") == ["identity.js"]
    render = _renderer()
    render.render_local(tmp_path / "gateway", tmp_path / "logs", {})
    local = (tmp_path / "gateway" / "nginx.conf").read_text()
    image = IMAGE_CONF.read_text()
    for conf in (local, image):
        [module] = _directives(conf, "load_module")
        assert module.endswith("/ngx_http_js_module.so")
        assert _directives(conf, "env") == ["JWT_SECRET"]
    [local_path] = _directives(local, "js_path")
    assert (Path(local_path) / "identity.js").resolve() == (
        GATEWAY_TEMPLATE.parent / "identity.js"
    ).resolve()
    [image_path] = _directives(image, "js_path")
    assert f"{image_path}/identity.js" == GATEWAY_IMAGE_FILES["identity.js"]
    assert _directives(image, "include") == ["/etc/nginx/conf.d/*.conf"]


def test_the_template_caps_bodies_and_in_flight_requests_per_client() -> None:
    template = GATEWAY_TEMPLATE.read_text()
    assert _directives(template, "client_body_timeout") == ["5s"]
    assert sorted(set(_directives(template, "client_max_body_size"))) == ["16k", "1k", "4k"]
    assert "per_client ${GATEWAY_CLIENT_IN_FLIGHT_MAX}" in _directives(template, "limit_conn")
    # Limits are keyed on what identity.js verified, never on the raw bearer text.
    assert "$http_authorization $shop_client" not in template
    assert "shop_bearer" not in template


def test_the_image_configuration_is_valid_with_the_composed_template(tmp_path: Path) -> None:
    """nginx -t of nginx.image.conf with the template as compose fills it and identity.js, at a
    prefix of our own instead of /etc/nginx (upstreams on this machine: nginx resolves them)."""
    render = _renderer()
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    module = next((m for m in render.NJS_MODULES if m.exists()), None)
    if not Path(nginx).exists() or module is None:
        pytest.skip("nginx with njs is not installed (deploy/local/gateway.sh install)")
    prefix = tmp_path / "etc-nginx"
    (prefix / "conf.d").mkdir(parents=True)
    (prefix / "njs").mkdir()
    (prefix / "modules").symlink_to(module.parent)
    shutil.copy(GATEWAY_TEMPLATE.parent / "identity.js", prefix / "njs" / "identity.js")
    main = (
        IMAGE_CONF.read_text()
        .replace("/etc/nginx/", f"{prefix}/")
        .replace("/var/log/nginx/", f"{tmp_path}/")
        .replace("/var/run/", f"{tmp_path}/")
        .replace("user nginx;", "")
    )
    (prefix / "nginx.conf").write_text(main)
    values = environment(yaml.safe_load(COMPOSE.read_text())["services"]["gateway"])
    values |= {name: "127.0.0.1:1" for name in values if name.endswith("_UPSTREAM")}
    values["GATEWAY_ACCESS_LOG"] = str(tmp_path / "access.log")
    (prefix / "conf.d" / "default.conf").write_text(
        render.substitute(GATEWAY_TEMPLATE.read_text(), values)
    )
    check = subprocess.run(
        [
            nginx,
            "-t",
            "-p",
            f"{prefix}/",
            "-c",
            str(prefix / "nginx.conf"),
            "-e",
            str(tmp_path / "error.log"),
        ],
        capture_output=True,
        text=True,
        env={**os.environ, "JWT_SECRET": "x" * 32},
    )
    assert check.returncode == 0, check.stderr
