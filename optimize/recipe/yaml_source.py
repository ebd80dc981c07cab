"""Safe YAML parsing that remembers the line of every key and refuses hostile documents.

We walk PyYAML's composed node graph ourselves instead of calling safe_load, so that every value
gets a source line (for error messages), duplicate keys are errors, and alias expansion is
bounded (a "billion laughs" document is refused instead of eating memory).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import yaml
from yaml.constructor import SafeConstructor
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

MAX_BYTES = 1 << 20  # a recipe is a few KiB; anything near this is not a recipe
MAX_NODES = 100_000  # values after alias expansion
MAX_DEPTH = 64

_SEQ = "tag:yaml.org,2002:seq"
_MAP = "tag:yaml.org,2002:map"
Path_ = tuple  # a YAML path: keys and list indices from the root


class YamlProblem(Exception):
    def __init__(self, message: str, line: int | None = None):
        super().__init__(message)
        self.line = line


@dataclass
class ParsedYaml:
    data: Any
    lines: dict[Path_, int] = field(default_factory=dict)


class _Walker:
    def __init__(self) -> None:
        self.lines: dict[Path_, int] = {}
        self.count = 0
        self.scalars = SafeConstructor()

    def walk(self, node: Node, path: Path_, depth: int) -> Any:
        self.count += 1
        if self.count > MAX_NODES:
            raise YamlProblem(
                f"more than {MAX_NODES} values after expanding aliases (an alias bomb?)", _line(node)
            )
        if depth > MAX_DEPTH:
            raise YamlProblem(f"nested deeper than {MAX_DEPTH} levels", _line(node))
        self.lines.setdefault(path, _line(node))
        if isinstance(node, ScalarNode):
            return self.scalars.construct_object(node, deep=True)
        if node.tag not in (_SEQ, _MAP) and not isinstance(node, ScalarNode):
            raise YamlProblem(f"unsupported YAML tag {node.tag}", _line(node))
        if isinstance(node, SequenceNode):
            return [self.walk(item, (*path, i), depth + 1) for i, item in enumerate(node.value)]
        if isinstance(node, MappingNode):
            return self._mapping(node, path, depth)
        raise YamlProblem(f"unsupported YAML node {type(node).__name__}", _line(node))

    def _mapping(self, node: MappingNode, path: Path_, depth: int) -> dict:
        result: dict = {}
        merged: dict = {}  # keys from '<<' merges; explicit keys override them
        for key_node, value_node in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                value = self.walk(value_node, path, depth + 1)
                for item in value if isinstance(value, list) else [value]:
                    if not isinstance(item, dict):
                        raise YamlProblem(
                            "a '<<' merge needs a mapping or a list of mappings", _line(value_node)
                        )
                    for key, inner in item.items():
                        merged.setdefault(key, inner)
                continue
            if not isinstance(key_node, ScalarNode):
                raise YamlProblem("keys must be plain scalars", _line(key_node))
            key = self.scalars.construct_object(key_node)
            if isinstance(key, (list, dict)) or key is None:
                raise YamlProblem("keys must be plain scalars", _line(key_node))
            if key in result:
                raise YamlProblem(f"duplicate key '{key}'", _line(key_node))
            self.lines[(*path, key)] = _line(key_node)
            result[key] = self.walk(value_node, (*path, key), depth + 1)
        for key, value in merged.items():
            result.setdefault(key, value)
        return result


def _line(node: Node) -> int:
    return node.start_mark.line + 1


def parse_yaml(text: str) -> ParsedYaml:
    if len(text.encode("utf-8", "replace")) > MAX_BYTES:
        raise YamlProblem(f"larger than {MAX_BYTES // 1024} KiB; a recipe is a few KiB")
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.MarkedYAMLError as exc:
        mark = exc.problem_mark or exc.context_mark
        raise YamlProblem(
            f"not valid YAML: {exc.problem or exc.context}", mark.line + 1 if mark else None
        ) from None
    except yaml.YAMLError as exc:
        raise YamlProblem(f"not valid YAML: {exc}") from None
    if root is None:
        return ParsedYaml(data=None)
    walker = _Walker()
    try:
        data = walker.walk(root, (), 0)
    except yaml.constructor.ConstructorError as exc:
        mark = exc.problem_mark
        raise YamlProblem(f"{exc.problem}", mark.line + 1 if mark else None) from None
    except RecursionError:
        raise YamlProblem("a recursive alias refers to itself") from None
    return ParsedYaml(data=data, lines=walker.lines)
