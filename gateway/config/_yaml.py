"""YAML parsing for the configuration and the policy file."""

from __future__ import annotations

from typing import Any

import yaml


class _StrictLoader(yaml.SafeLoader):
    """SafeLoader that refuses a key given twice in one mapping, which plain
    YAML loading would resolve silently in favour of the last one."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: set[Any] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} is given twice", key_node.start_mark
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


# A configuration is a few kilobytes; these bound what a hostile or broken
# file can cost before validation says what is wrong with it.
MAX_YAML_BYTES = 1 << 20
# Nodes after aliases are expanded: anchors are fine, an alias bomb (each
# level a list of aliases to the level below) is refused without expanding it.
MAX_YAML_NODES = 100_000


class YamlTooLarge(yaml.YAMLError):
    pass


def load_yaml(text: str) -> Any:
    """Parse one YAML document with _StrictLoader, within the bounds above."""
    if len(text.encode("utf-8", "surrogatepass")) > MAX_YAML_BYTES:
        raise YamlTooLarge(f"larger than {MAX_YAML_BYTES} bytes")
    loader = _StrictLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if _expanded_size(node, {}) > MAX_YAML_NODES:
            raise YamlTooLarge(
                f"more than {MAX_YAML_NODES} values once aliases are expanded (an alias bomb?)"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int]) -> int:
    """How many nodes ``node`` stands for with every alias expanded; each
    distinct node is measured once, so a bomb costs its size on disk."""
    known = sizes.get(id(node))
    if known is not None:
        return known
    # A node referring to itself (&a [*a]) would recurse: count it as huge.
    sizes[id(node)] = MAX_YAML_NODES + 1
    size = 1
    if isinstance(node, yaml.SequenceNode):
        size += sum(_expanded_size(child, sizes) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        size += sum(_expanded_size(k, sizes) + _expanded_size(v, sizes) for k, v in node.value)
    sizes[id(node)] = min(size, MAX_YAML_NODES + 1)
    return sizes[id(node)]
