"""Reading the files a configuration names: the YAML file itself and `*_file` secrets.

A file is read only when it is a regular file (a FIFO or a device would block or never end),
of at most `MAX_FILE_BYTES`, in UTF-8. The YAML is read with PyYAML's pure-Python safe loader
with two rules more: aliases (`*name`, and so `<<: *name` merges) are refused, which makes
an alias bomb impossible, and a key given twice in one mapping is an error instead of the
last one silently winning.
"""

from __future__ import annotations

import os
import stat
from typing import Any

import yaml
from yaml.composer import ComposerError
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node

from pgarchitect.errors import ConfigError

# A configuration or a secret is a few kilobytes; this bounds what a mistake can cost.
MAX_FILE_BYTES = 1024 * 1024


def shown(value: object, width: int = 60) -> str:
    """`repr(value)` cut to `width` characters, for error messages about big values."""
    text = repr(value)
    return text if len(text) <= width else text[: width - 1] + "…"


def read_text_file(path: str | os.PathLike[str], what: str, key: str = "") -> str:
    """The text of a small regular UTF-8 file, or a ConfigError naming `what` and `path`."""
    try:
        # O_NONBLOCK: opening a FIFO for reading would wait for a writer.
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_NOCTTY | os.O_CLOEXEC)
    except OSError as exc:
        raise ConfigError(key, f"cannot read {what} {os.fspath(path)}: {exc.strerror}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise ConfigError(key, f"{what} {os.fspath(path)} is not a regular file")
        chunks, size = [], 0
        while size <= MAX_FILE_BYTES:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            chunks.append(chunk)
            size += len(chunk)
    except OSError as exc:
        raise ConfigError(key, f"cannot read {what} {os.fspath(path)}: {exc.strerror}") from None
    finally:
        os.close(fd)
    if size > MAX_FILE_BYTES:
        raise ConfigError(key, f"{what} {os.fspath(path)} is larger than "
                               f"{MAX_FILE_BYTES // 1024} KiB")
    data = b"".join(chunks)
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(key, f"{what} {os.fspath(path)} is not UTF-8 text (byte "
                               f"0x{data[exc.start]:02x} at offset {exc.start})") from None


class StrictLoader(yaml.SafeLoader):
    """The safe loader without aliases and without duplicate keys (see the module doc)."""

    def compose_node(self, parent: Node | None, index: int) -> Node | None:
        if self.check_event(yaml.AliasEvent):
            event = self.peek_event()  # type: ignore[no-untyped-call]
            raise ComposerError(None, None, f"aliases are not allowed (*{event.anchor[:40]})",
                                event.start_mark)
        return super().compose_node(parent, index)

    def construct_mapping(self, node: MappingNode, deep: bool = False) -> dict[Any, Any]:
        self.flatten_mapping(node)
        seen: set[object] = set()
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=True)
            try:
                repeated = key in seen
            except TypeError:  # unhashable: the safe loader's own error follows
                continue
            if repeated:
                raise ConstructorError("while constructing a mapping", node.start_mark,
                                       f"duplicate key {shown(key)}", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep)


def parse_yaml(text: str, where: str) -> Any:
    """The YAML document in `text` read with `StrictLoader`; errors name `where` and the line."""
    try:
        return yaml.load(text, Loader=StrictLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        at = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "invalid YAML"
        raise ConfigError("", f"{where}{at}: {problem}") from None


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML config file into a mapping; errors name the file."""
    data = parse_yaml(read_text_file(path, "config file"), os.fspath(path))
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError("", f"{os.fspath(path)}: the top level must be a mapping")
    return data
