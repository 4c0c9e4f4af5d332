"""Config files: TOML read with its ``base`` chain, ``--set`` overrides, TOML written.

What the values mean and how they are validated is :mod:`segkit.core.config`'s.
"""

from __future__ import annotations

import stat
import tomllib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from segkit.core.errors import ConfigError
from segkit.core.upgrade import upgrade


def apply_overrides(raw: dict[str, Any], overrides: Iterable[str]) -> dict[str, Any]:
    """Apply ``key.path=value`` overrides (values in TOML syntax; bare words are strings)."""
    if isinstance(overrides, str | bytes):
        raise ConfigError(
            f"overrides must be a list of 'key=value' strings, got the string {overrides!r}; "
            f"wrap it in a list"
        )
    for item in overrides:
        if not isinstance(item, str):
            raise ConfigError(f"an override must be a 'key=value' string, got {item!r}")
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set '{item}': expected key=value, e.g. --set train.epochs=5")
        try:
            value = parse_value(text)
        except ConfigError as exc:
            raise ConfigError(f"--set {key.strip()}: {exc}") from None
        node = raw
        *parents, leaf = key.strip().split(".")
        for part in parents:
            child = node.setdefault(part, {})
            if not isinstance(child, dict):
                raise ConfigError(f"--set '{item}': '{part}' is not a table")
            node = child
        node[leaf] = value
    return raw


def parse_value(text: str) -> Any:
    """A command-line value in TOML syntax (``5``, ``0.1``, ``[1, 2]``, ``true``); else a string."""
    if "\n" in text or "\r" in text:
        # TOML would read the next line as another key and drop it without a word
        raise ConfigError(
            f"the value {text!r} spans several lines; give a value on one line (in TOML "
            f'syntax, e.g. "a b" or [1, 2])'
        )
    try:
        return tomllib.loads(f"v = {text}")["v"]
    except tomllib.TOMLDecodeError:
        return text


#: The largest config file segkit reads: configs are a few KiB, so anything bigger is
#: not one, and reading it whole would only fill the memory.
MAX_CONFIG_BYTES = 2**20


def read_toml(path: str | Path) -> dict[str, Any]:
    """A TOML file as a mapping; a missing, special, huge or malformed file is one error."""
    path = Path(path)
    _check_config_file(path)
    try:
        with path.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)  # bounded: a file may grow while read
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a folder, not a TOML file: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path} ({exc.strerror}); check the path") from None
    if len(data) > MAX_CONFIG_BYTES:
        raise _too_big(path)
    if data.startswith(b"\xef\xbb\xbf"):
        raise ConfigError(
            f"{path} starts with a byte-order mark (BOM), which TOML does not allow; save it "
            f"as UTF-8 without BOM"
        )
    try:
        return tomllib.loads(data.decode("utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path} is not valid TOML: {exc}; fix the syntax") from None


def _check_config_file(path: Path) -> None:
    """Refuse what is not a small regular file before opening it: opening a FIFO waits
    for a writer, and a device such as /dev/zero never ends."""
    try:
        info = path.stat()
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read config {path} ({exc.strerror}); check the path") from None
    if stat.S_ISDIR(info.st_mode):
        raise ConfigError(f"config path is a folder, not a TOML file: {path}")
    if not stat.S_ISREG(info.st_mode):
        raise ConfigError(
            f"config {path} is not a regular file (a device, pipe or socket); save the config "
            f"as a TOML file and give its path"
        )
    if info.st_size > MAX_CONFIG_BYTES:
        raise _too_big(path)


def _too_big(path: Path) -> ConfigError:
    return ConfigError(
        f"config {path} is larger than {MAX_CONFIG_BYTES // 2**20} MiB, which no segkit config "
        f"is; check that the path names the TOML config"
    )


def read_config(path: str | Path, _chain: tuple[Path, ...] = ()) -> dict[str, Any]:
    """A TOML config with its ``base`` chain merged in (base first, this file over it)."""
    path = Path(path)
    resolved = path.resolve()
    if resolved in _chain:
        cycle = " -> ".join(p.name for p in (*_chain, resolved))
        raise ConfigError(f"config bases form a cycle ({cycle}); remove one 'base' key")
    # Each file is upgraded before merging: an old base's [[postprocess]] or predict.crf
    # must be replaced by a new child's [[postprocessors]] or predict.postprocess.
    raw = upgrade(read_toml(path))
    base = raw.pop("base", None)
    if base is None:
        return raw
    if not isinstance(base, str):
        raise ConfigError(f'{path}: base must be a path string, e.g. base = "../base.toml"')
    base_path = path.parent / base
    if not base_path.exists():
        raise ConfigError(f"{path}: its base {base_path} does not exist; fix the 'base' path")
    inherited = read_config(base_path, (*_chain, resolved))
    inherited.pop("name", None)  # the name is the run folder's: each file has its own
    return merge(inherited, raw)


def merge(base: Mapping[str, Any], over: Mapping[str, Any]) -> dict[str, Any]:
    """``over`` on top of ``base``: tables merge key by key, anything else replaces."""
    merged = dict(base)
    for key, value in over.items():
        below = merged.get(key)
        # A part naming another plugin replaces the base's: its parameters are another's.
        other_part = isinstance(value, Mapping) and value.get("name", None) not in (
            None,
            below.get("name") if isinstance(below, Mapping) else None,
        )
        if isinstance(value, Mapping) and isinstance(below, Mapping) and not other_part:
            merged[key] = merge(below, value)
        else:
            merged[key] = value
    return merged


def dump_toml(data: Mapping[str, Any]) -> str:
    """A config as TOML text (TOML has no null: unset optional values are left out)."""
    import tomli_w

    def drop_none(value: Any) -> Any:
        if isinstance(value, Mapping):
            return {k: drop_none(v) for k, v in value.items() if v is not None}
        if isinstance(value, list):
            return [drop_none(v) for v in value]
        return value

    return tomli_w.dumps(drop_none(data))
