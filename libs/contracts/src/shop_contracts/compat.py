"""Backward compatibility of an event schema for its consumers.

A change is breaking when a consumer written against the old schema could fail on new events:
a field removed, a field's type changed, a required field made optional, an enum value added
that old consumers cannot know, or a const (event type, version) changed. Adding an optional
field or a new event type is not breaking.
"""

from typing import Any

Schema = dict[str, Any]


def _resolve(node: Schema, root: Schema) -> Schema:
    while "$ref" in node:
        name = node["$ref"].rsplit("/", 1)[-1]
        node = root.get("$defs", {})[name]
    return node


def _types(node: Schema, root: Schema) -> set[str]:
    node = _resolve(node, root)
    if "anyOf" in node:
        return set().union(*(_types(n, root) for n in node["anyOf"]))
    if "const" in node:
        return {f"const:{node['const']!r}"}
    kind = node.get("type", "any")
    fmt = node.get("format")
    return {f"{kind}:{fmt}" if fmt else str(kind)}


def _enum(node: Schema, root: Schema) -> set[Any] | None:
    node = _resolve(node, root)
    if "enum" in node:
        return set(node["enum"])
    for option in node.get("anyOf", []):
        values = _enum(option, root)
        if values is not None:
            return values
    return None


def _compare(old: Schema, new: Schema, old_root: Schema, new_root: Schema, path: str) -> list[str]:
    old, new = _resolve(old, old_root), _resolve(new, new_root)
    problems: list[str] = []
    old_types, new_types = _types(old, old_root), _types(new, new_root)
    if new_types - old_types:
        problems.append(f"{path or '/'}: type changed {sorted(old_types)} -> {sorted(new_types)}")
    old_enum, new_enum = _enum(old, old_root), _enum(new, new_root)
    if old_enum is not None and new_enum is not None and new_enum - old_enum:
        problems.append(f"{path}: enum values added {sorted(map(str, new_enum - old_enum))}")
    if "items" in old and "items" in new:
        problems += _compare(old["items"], new["items"], old_root, new_root, f"{path}[]")
    old_props, new_props = old.get("properties", {}), new.get("properties", {})
    old_required, new_required = set(old.get("required", [])), set(new.get("required", []))
    for name, old_prop in old_props.items():
        where = f"{path}/{name}"
        if name not in new_props:
            problems.append(f"{where}: removed")
            continue
        if name in old_required and name not in new_required:
            problems.append(f"{where}: no longer required")
        problems += _compare(old_prop, new_props[name], old_root, new_root, where)
    for name in new_required - old_required - set(old_props):
        problems.append(f"{path}/{name}: new required field")
    for option_old, option_new in zip(old.get("anyOf", []), new.get("anyOf", []), strict=False):
        if "properties" in _resolve(option_old, old_root):
            problems += _compare(option_old, option_new, old_root, new_root, path)
    return problems


def breaking_changes(old: Schema, new: Schema) -> list[str]:
    """Every way `new` breaks consumers of `old` (empty when compatible)."""
    return _compare(old, new, old, new, "")
