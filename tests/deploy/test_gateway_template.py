"""The gateway's nginx configuration is one template, deploy/gateway/gateway.conf.template, and
every way of running the shop renders that file: the local nginx (deploy/local/gateway.sh runs
deploy/gateway/render.py), docker-compose (mounted into the nginx image's templates) and
Kubernetes (the ConfigMap that deploy/gateway/kustomization.yaml generates, included by
deploy/k8s/base). A copy of it anywhere in the repository is reported."""

import importlib.util
import os
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import yaml  # type: ignore[import-untyped]

from .compose_check import environment
from .k8s_check import BASE, PRODUCTION, build, config_map_sources, with_operator_secrets
from .stack_model import GATEWAY_TEMPLATE, ROOT

COMPOSE = ROOT / "docker-compose.yml"
GATEWAY_SH = ROOT / "deploy" / "local" / "gateway.sh"
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
