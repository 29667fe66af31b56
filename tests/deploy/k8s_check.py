"""Reads deploy/k8s the way `kustomize build` would (resources, configMapGenerator,
secretGenerator from env files, patches of containers' env, namespace, images, replicas: the
features our kustomizations use, and its refusal of files outside a kustomization's directory)
and checks the objects against the local stack: the same processes, ports, probes and
environment variable names."""

from __future__ import annotations

import re
import secrets
import shutil
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import yaml  # type: ignore[import-untyped]

from .stack_model import GATEWAY_IMAGE_FILES, GATEWAY_TEMPLATE, ROOT, LocalStack, gateway_upstreams

K8S = ROOT / "deploy" / "k8s"
BASE = K8S / "base"
PRODUCTION = K8S / "overlays" / "production"
# Local processes that are not part of a production deployment.
LOCAL_ONLY = {"dataplatform_standin"}

SECRET_FILES = (
    "jwt",
    "dataplatform",
    *(f"{s}-db" for s in ("point", "product", "coupon", "order", "ranking")),
    "coupon-redis",
)
# Settings that carry a key or a password: a container takes them from a Secret, never from a
# plain value or a ConfigMap (which anyone who may read the namespace's configuration can read).
SECRET_SETTINGS = re.compile(r"DATABASE_URL$|^REDIS_URL$|SECRET|PASSWORD")

Doc = dict[str, Any]


def copy_k8s(root: Path) -> Path:
    """deploy/k8s and the directory its base includes (deploy/gateway) copied under root as they
    are in the repository; returns the copy's production overlay, without the secrets/ a
    developer may have written (never committed)."""
    shutil.copytree(K8S, root / "deploy" / "k8s")
    shutil.copytree(GATEWAY_TEMPLATE.parent, root / "deploy" / "gateway")
    overlay = root / "deploy" / "k8s" / PRODUCTION.relative_to(K8S)
    shutil.rmtree(overlay / "secrets", ignore_errors=True)
    return overlay


def with_operator_secrets(root: Path) -> Path:
    """A copy of deploy/k8s (copy_k8s) whose production overlay has the operator's secrets/*.env."""
    overlay = copy_k8s(root)
    (overlay / "secrets").mkdir()
    for name in SECRET_FILES:
        example = (overlay / "secrets.example" / f"{name}.env").read_text()
        key, value = next(
            line.split("=", 1)
            for line in example.splitlines()
            if "=" in line and not line.startswith("#")
        )
        # A URL keeps its form with a password in it; a bare key becomes one.
        token = secrets.token_hex(32)
        value = value.replace("<password>", token) if "<password>" in value else token
        (overlay / "secrets" / f"{name}.env").write_text(f"{key}={value}\n")
    return overlay


def build(directory: Path) -> list[Doc]:
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    docs: list[Doc] = []
    for resource in kustomization.get("resources", []):
        path = directory / resource
        if path.is_dir():
            docs += build(path)
        else:
            docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    for generator in kustomization.get("configMapGenerator", []):
        data = {key: path.read_text() for key, path in generator_files(directory, generator)}
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "ConfigMap",
                "metadata": {"name": generator["name"]},
                "data": data,
            }
        )
    for generator in kustomization.get("secretGenerator", []):
        docs.append(
            {
                "apiVersion": "v1",
                "kind": "Secret",
                "metadata": {"name": generator["name"]},
                "type": "Opaque",
                "stringData": {
                    key: value
                    for source in generator.get("envs", [])
                    for key, value in _env_file(directory / source).items()
                },
            }
        )
    for patch in kustomization.get("patches", []):
        for change in yaml.safe_load_all((directory / patch["path"]).read_text()):
            _merge_env(docs, change)
    images = {i["name"]: i for i in kustomization.get("images", [])}
    replicas = {r["name"]: r["count"] for r in kustomization.get("replicas", [])}
    for doc in docs:
        if "namespace" in kustomization:
            doc["metadata"]["namespace"] = kustomization["namespace"]
        if doc["kind"] != "Deployment":
            continue
        if doc["metadata"]["name"] in replicas:
            doc["spec"]["replicas"] = replicas[doc["metadata"]["name"]]
        for container in doc["spec"]["template"]["spec"]["containers"]:
            name, _, tag = container["image"].partition(":")
            if name in images:
                change = images[name]
                container["image"] = (
                    f"{change.get('newName', name)}:{change.get('newTag', tag or 'latest')}"
                )
    return docs


def generator_files(directory: Path, generator: Doc) -> list[tuple[str, Path]]:
    """A configMapGenerator's (key, file) pairs. Like kustomize's default load restrictor, a file
    outside the kustomization's directory fails the build (include that directory instead)."""
    pairs = []
    for entry in generator.get("files", []):
        key, _, source = entry.partition("=") if "=" in entry else (Path(entry).name, "", entry)
        path = (directory / source).resolve()
        if not path.is_relative_to(directory.resolve()):
            raise PermissionError(
                f"kustomize build: security; file {path} is not in or below {directory.resolve()}"
            )
        pairs.append((key, path))
    return pairs


def config_map_sources(directory: Path) -> dict[str, dict[str, Path]]:
    """ConfigMap name -> {key: the file its data is read from}, over a kustomization and every
    kustomization it includes."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    sources: dict[str, dict[str, Path]] = {}
    for resource in kustomization.get("resources", []):
        if (directory / resource).is_dir():
            sources |= config_map_sources(directory / resource)
    for generator in kustomization.get("configMapGenerator", []):
        sources[generator["name"]] = dict(generator_files(directory, generator))
    return sources


def _env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines, as kustomize reads a generator's `envs`; a missing file fails the build."""
    if not path.is_file():
        raise FileNotFoundError(f"kustomize build: {path} does not exist")
    pairs = {}
    for line in path.read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            key, _, value = line.partition("=")
            pairs[key.strip()] = value
    return pairs


def _merge_env(docs: list[Doc], change: Doc) -> None:
    """A strategic-merge patch of a Deployment's containers' env (merged by variable name)."""
    [target] = [
        d
        for d in docs
        if d["kind"] == change["kind"] and d["metadata"]["name"] == change["metadata"]["name"]
    ]
    containers = {c["name"]: c for c in target["spec"]["template"]["spec"]["containers"]}
    for patched in change["spec"]["template"]["spec"]["containers"]:
        env = containers[patched["name"]].setdefault("env", [])
        for var in patched.get("env", []):
            env[:] = [e for e in env if e["name"] != var["name"]] + [var]


def unlisted_files(directory: Path) -> list[str]:
    """YAML files in a kustomization directory that its kustomization does not use."""
    kustomization = yaml.safe_load((directory / "kustomization.yaml").read_text())
    listed = set(kustomization.get("resources", [])) | {
        p["path"] for p in kustomization.get("patches", [])
    }
    return sorted(
        p.name
        for p in directory.glob("*.yaml")
        if p.name != "kustomization.yaml" and p.name not in listed
    )


def _index(docs: list[Doc], kind: str) -> dict[str, Doc]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


def _selects(selector: dict[str, str], labels: dict[str, str]) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def _data_keys(doc: Doc | None) -> set[str]:
    if doc is None:
        return set()
    return set(doc.get("data") or {}) | set(doc.get("stringData") or {})


def module_of(container: Doc) -> str | None:
    command = container.get("command") or []
    return str(command[2]) if command[:2] == ["python", "-m"] and len(command) > 2 else None


def container_env(container: Doc) -> dict[str, Doc]:
    return {e["name"]: e for e in container.get("env") or []}


def check_manifests(docs: list[Doc], stack: LocalStack, *, with_secrets: bool) -> list[str]:
    problems: list[str] = []
    for (kind, name), count in Counter((d["kind"], d["metadata"]["name"]) for d in docs).items():
        if count > 1:
            problems.append(f"{kind}/{name} is defined {count} times")
    deployments = _index(docs, "Deployment")
    config_maps = _index(docs, "ConfigMap")
    secrets = _index(docs, "Secret")
    services = _index(docs, "Service")
    partitions = int(
        (config_maps.get("shop-config") or {}).get("data", {}).get("KAFKA_TOPIC_PARTITIONS", 0)
    )
    if not partitions:
        problems.append("ConfigMap shop-config must set KAFKA_TOPIC_PARTITIONS")

    for name, config_map in sorted(config_maps.items()):
        for key, value in sorted((config_map.get("data") or {}).items()):
            if _url_password(value):
                problems.append(f"ConfigMap/{name}: {key} has a password; it belongs in a Secret")

    modules_deployed: set[str] = set()
    for name, deployment in sorted(deployments.items()):
        where = f"Deployment/{name}"
        spec = deployment["spec"]
        labels = spec["template"]["metadata"].get("labels") or {}
        if not _selects(spec["selector"].get("matchLabels") or {}, labels):
            problems.append(f"{where}: its selector does not match its pod labels")
        [container] = spec["template"]["spec"]["containers"]
        for key in ("cpu", "memory"):
            if key not in ((container.get("resources") or {}).get("requests") or {}):
                problems.append(f"{where}: no {key} request")
        if "memory" not in ((container.get("resources") or {}).get("limits") or {}):
            problems.append(f"{where}: no memory limit")
        problems += _check_references(where, container, config_maps, secrets, with_secrets)
        problems += _check_secret_sources(where, container, config_maps, secrets, with_secrets)
        module = module_of(container)
        if module is None:
            if container["image"].split(":")[0].split("/")[-1] == "nginx":
                problems += _check_gateway(
                    where, deployment, container, config_maps, services, deployments, stack
                )
            else:
                problems.append(f"{where}: runs neither `python -m <module>` nor the gateway")
            continue
        modules_deployed.add(module)
        process = stack.process(module)
        known = stack.env.get(module)
        if process is None or known is None:
            problems.append(f"{where}: runs python -m {module}, which the local stack does not run")
            continue
        package = stack.packages.get(module, "?")
        if not container["image"].split(":")[0].endswith(f"/{package}"):
            problems.append(f"{where}: image {container['image']} is not the {package} image")
        names = set(container_env(container))
        for source in container.get("envFrom") or []:
            ref = source.get("configMapRef") or source.get("secretRef") or {}
            store = config_maps if "configMapRef" in source else secrets
            names |= _data_keys(store.get(ref.get("name", "")))
        for var in sorted(names - set(known)):
            problems.append(f"{where}: {var} is not a setting of {module}")
        for var in sorted(
            v
            for v in known
            if v.endswith("DATABASE_URL") or v in {"KAFKA_BOOTSTRAP_SERVERS", "REDIS_URL"}
        ):
            if var not in names and (with_secrets or not var.endswith("DATABASE_URL")):
                problems.append(f"{where}: {var} is not set")
        if labels.get("app.kubernetes.io/component") != "api":
            replicas = spec.get("replicas", 1)
            if partitions and replicas > partitions:
                problems.append(f"{where}: {replicas} consumers, but only {partitions} partitions")
        if process.port is None:
            continue  # no HTTP locally either (run.sh has no readiness URL for it)
        problems += _check_http(
            where, container, process.port, process.port_var, process.host_var, process.ready_path
        )

    for module in sorted(stack.modules - LOCAL_ONLY - modules_deployed):
        problems.append(f"local process python -m {module} has no Deployment")

    for name, service in sorted(services.items()):
        selected = [
            d
            for d in deployments.values()
            if _selects(
                service["spec"].get("selector") or {},
                d["spec"]["template"]["metadata"].get("labels") or {},
            )
        ]
        if not selected:
            problems.append(f"Service/{name}: selects no Deployment")
        for port in service["spec"].get("ports") or []:
            for deployment in selected:
                [container] = deployment["spec"]["template"]["spec"]["containers"]
                if port.get("targetPort") not in {
                    p.get("name") for p in container.get("ports") or []
                } | {p.get("containerPort") for p in container.get("ports") or []}:
                    problems.append(
                        f"Service/{name}: targetPort {port.get('targetPort')} is no port of Deployment/{deployment['metadata']['name']}"
                    )

    scaled = {
        h["spec"]["scaleTargetRef"]["name"]
        for h in _index(docs, "HorizontalPodAutoscaler").values()
    }
    for target in sorted(scaled - set(deployments)):
        problems.append(
            f"HorizontalPodAutoscaler targets Deployment/{target}, which does not exist"
        )
    for name, deployment in sorted(deployments.items()):
        is_api = (
            deployment["spec"]["template"]["metadata"]["labels"].get("app.kubernetes.io/component")
            == "api"
        )
        if is_api and name not in scaled:
            problems.append(f"Deployment/{name}: an API without a HorizontalPodAutoscaler")
        if is_api and "replicas" in deployment["spec"]:
            problems.append(
                f"Deployment/{name}: sets replicas, which its HorizontalPodAutoscaler owns"
            )
        budgets = [
            p
            for p in _index(docs, "PodDisruptionBudget").values()
            if _selects(
                p["spec"]["selector"].get("matchLabels") or {},
                deployment["spec"]["template"]["metadata"]["labels"],
            )
        ]
        if len(budgets) != 1:
            problems.append(
                f"Deployment/{name}: covered by {len(budgets)} PodDisruptionBudgets, not 1"
            )
    return problems


def _check_http(
    where: str,
    container: Doc,
    port: int,
    port_var: str | None,
    host_var: str | None,
    ready_path: str | None,
) -> list[str]:
    problems = []
    env = container_env(container)
    ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
    if port not in ports.values():
        problems.append(f"{where}: does not expose the local port {port}")
    if port_var and (env.get(port_var) or {}).get("value") != str(port):
        problems.append(f"{where}: {port_var} should be {port}")
    if host_var and (env.get(host_var) or {}).get("value") != "0.0.0.0":
        problems.append(f"{where}: {host_var} must be 0.0.0.0")
    for probe, path in (("readinessProbe", ready_path), ("livenessProbe", "/healthz")):
        get = (container.get(probe) or {}).get("httpGet")
        if not get:
            problems.append(f"{where}: no {probe}")
            continue
        probe_port = ports.get(get.get("port"), get.get("port"))
        if get.get("path") != path or probe_port != port:
            problems.append(
                f"{where}: {probe} should GET :{port}{path}, gets :{probe_port}{get.get('path')}"
            )
    return problems


def _check_references(
    where: str,
    container: Doc,
    config_maps: dict[str, Doc],
    secrets: dict[str, Doc],
    with_secrets: bool,
) -> list[str]:
    problems = []
    for source in container.get("envFrom") or []:
        if "configMapRef" in source and source["configMapRef"]["name"] not in config_maps:
            problems.append(
                f"{where}: envFrom ConfigMap/{source['configMapRef']['name']} does not exist"
            )
        if with_secrets and "secretRef" in source and source["secretRef"]["name"] not in secrets:
            problems.append(f"{where}: envFrom Secret/{source['secretRef']['name']} does not exist")
    for var in container.get("env") or []:
        ref = var.get("valueFrom") or {}
        if "configMapKeyRef" in ref:
            key_ref, store = ref["configMapKeyRef"], config_maps
        elif "secretKeyRef" in ref and with_secrets:
            key_ref, store = ref["secretKeyRef"], secrets
        else:
            continue
        if key_ref["key"] not in _data_keys(store.get(key_ref["name"])):
            problems.append(
                f"{where}: {var['name']} refers to {key_ref['name']}/{key_ref['key']}, which does not exist"
            )
    return problems


def env_sources(
    container: Doc, config_maps: dict[str, Doc], secrets: dict[str, Doc]
) -> dict[str, str]:
    """Variable -> where the container takes it from: "value", "ConfigMap/<name>" or
    "Secret/<name>" (`env` wins over `envFrom`, as in Kubernetes)."""
    sources: dict[str, str] = {}
    for source in container.get("envFrom") or []:
        if "configMapRef" in source:
            name = source["configMapRef"]["name"]
            sources |= dict.fromkeys(_data_keys(config_maps.get(name)), f"ConfigMap/{name}")
        elif "secretRef" in source:
            name = source["secretRef"]["name"]
            sources |= dict.fromkeys(_data_keys(secrets.get(name)), f"Secret/{name}")
    for var in container.get("env") or []:
        ref = var.get("valueFrom") or {}
        if "secretKeyRef" in ref:
            sources[var["name"]] = f"Secret/{ref['secretKeyRef']['name']}"
        elif "configMapKeyRef" in ref:
            sources[var["name"]] = f"ConfigMap/{ref['configMapKeyRef']['name']}"
        else:
            sources[var["name"]] = "value"
    return sources


def _url_password(value: object) -> str | None:
    text = str(value)
    if "://" not in text:
        return None
    try:
        return urlsplit(text).password
    except ValueError:
        return None


def _check_secret_sources(
    where: str,
    container: Doc,
    config_maps: dict[str, Doc],
    secrets: dict[str, Doc],
    with_secrets: bool,
) -> list[str]:
    """Keys and passwords come from Secrets, a URL in a plain value has no password, and Redis's
    URL (in the generated Secret) has one."""
    problems = []
    for var, source in sorted(env_sources(container, config_maps, secrets).items()):
        if SECRET_SETTINGS.search(var) and not source.startswith("Secret/"):
            problems.append(f"{where}: {var} comes from {source}, not from a Secret")
    for var in container.get("env") or []:
        if "value" in var and _url_password(var["value"]):
            problems.append(f"{where}: {var['name']} has a password in a plain value")
    for var in container.get("env") or []:
        key_ref = (var.get("valueFrom") or {}).get("secretKeyRef")
        if var["name"] != "REDIS_URL" or not key_ref or not with_secrets:
            continue
        secret = secrets.get(key_ref["name"]) or {}
        url = (secret.get("stringData") or {}).get(key_ref["key"])
        if url is not None and not _url_password(url):
            problems.append(
                f"{where}: REDIS_URL ({key_ref['name']}/{key_ref['key']}) has no password"
            )
    return problems


def _check_gateway(
    where: str,
    deployment: Doc,
    container: Doc,
    config_maps: dict[str, Doc],
    services: dict[str, Doc],
    deployments: dict[str, Doc],
    stack: LocalStack,
) -> list[str]:
    problems = []
    env = {k: str(v.get("value")) for k, v in container_env(container).items()}
    for var in sorted(stack.gateway_placeholders - set(env)):
        problems.append(f"{where}: {var} (a placeholder of the gateway template) is not set")
    if env.get("NGINX_ENVSUBST_FILTER") != "^GATEWAY_":
        problems.append(f"{where}: NGINX_ENVSUBST_FILTER must be ^GATEWAY_")
    volumes = {v["name"]: v for v in deployment["spec"]["template"]["spec"].get("volumes") or []}
    mounted = [
        m
        for m in container.get("volumeMounts") or []
        if m["mountPath"].startswith("/etc/nginx/templates/")
    ]
    if not mounted:
        problems.append(f"{where}: the gateway template is not mounted")
    for mount in mounted:
        source = config_maps.get(
            ((volumes.get(mount["name"]) or {}).get("configMap") or {}).get("name", "")
        )
        text = (source or {}).get("data", {}).get(mount.get("subPath") or "", None)
        if text != GATEWAY_TEMPLATE.read_text():
            problems.append(
                f"{where}: the mounted template is not deploy/gateway/gateway.conf.template"
            )
    # The official image's main configuration (njs) and identity.js, from deploy/gateway.
    for file_name, path in GATEWAY_IMAGE_FILES.items():
        image_file = None
        for image_mount in container.get("volumeMounts") or []:
            if image_mount["mountPath"] == path:
                volume = (volumes.get(image_mount["name"]) or {}).get("configMap") or {}
                data = (config_maps.get(volume.get("name", "")) or {}).get("data", {})
                image_file = data.get(image_mount.get("subPath") or "")
        if image_file != (GATEWAY_TEMPLATE.parent / file_name).read_text():
            problems.append(f"{where}: {path} is not deploy/gateway/{file_name}")
    # The gateway verifies tokens with the services' own key (nginx.image.conf: env JWT_SECRET).
    secret_refs = {
        (ref.get("secretRef") or {}).get("name") for ref in container.get("envFrom") or []
    }
    if "shop-jwt" not in secret_refs:
        problems.append(f"{where}: JWT_SECRET must come from Secret/shop-jwt, as the services'")
    for up in gateway_upstreams(env):
        service = services.get(up.host)
        if service is None:
            problems.append(f"{where}: {up.var}={up.value}, but there is no Service/{up.host}")
            continue
        ports = [p for p in service["spec"]["ports"] if str(p["port"]) == up.port]
        [service_port] = ports or [None]
        process = stack.process(up.module)
        if process is None:
            problems.append(
                f"{where}: {up.var} routes to {up.module}, which the local stack does not run"
            )
            continue
        if service_port is None:
            problems.append(
                f"{where}: {up.var}={up.value}, but Service/{up.host} has no port {up.port}"
            )
            continue
        for target in deployments.values():
            labels = target["spec"]["template"]["metadata"].get("labels") or {}
            if _selects(service["spec"]["selector"], labels):
                [c] = target["spec"]["template"]["spec"]["containers"]
                if module_of(c) != up.module:
                    problems.append(
                        f"{where}: {up.var} reaches Deployment/{target['metadata']['name']}, which does not run {up.module}"
                    )
                if str(process.port) != up.port:
                    problems.append(
                        f"{where}: {up.var}={up.value}, but {up.module} listens on {process.port}"
                    )
    return problems
