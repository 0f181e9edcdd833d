"""Reading the YAML users write (trial configurations, search spaces): safe loading, a key
given twice is an error (PyYAML would silently keep the last), and every problem is one line
that names the file and the line."""

from __future__ import annotations

from typing import Any

import yaml

from autohm.errors import AutohmError


class _UniqueKeyLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a mapping with the same key twice."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            if key in seen:
                line = key_node.start_mark.line + 1
                raise yaml.constructor.ConstructorError(
                    None, None, f"key {key!r} given twice (again on line {line})"
                )
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


def load_yaml(text: str, source: str, error: type[AutohmError] = AutohmError) -> Any:
    """The YAML document in `text`; `error("source: not valid YAML (...)")` otherwise."""
    try:
        return yaml.load(text, Loader=_UniqueKeyLoader)  # noqa: S506 (a SafeLoader)
    except yaml.YAMLError as problem:
        raise error(f"{source}: not valid YAML ({' '.join(str(problem).split())})") from None
