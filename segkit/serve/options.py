"""What ``POST /predict`` is asked through its query: the switches and the answer's format.

Unknown names and values are refused with one line, as a command line refuses an
unknown flag: a mistyped ``postprocess=flase`` must not silently predict with the CRF.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from segkit.core.errors import did_you_mean
from segkit.serve.errors import RequestError

#: What ``format=`` takes: the palette PNG, the numbers as JSON, the colour overlay.
FORMATS = ("png", "json", "overlay")

#: The query's names; ``crf`` is the familiar alias of ``postprocess``, as on the CLI.
QUERY_NAMES = ("postprocess", "crf", "tta", "format", "masks")

_TRUE = ("true", "1", "yes", "on")
_FALSE = ("false", "0", "no", "off")


@dataclass(frozen=True)
class PredictOptions:
    """One request's choices (the defaults are the checkpoint's ``[predict]`` section)."""

    postprocess: bool
    tta: bool
    format: str = "png"
    masks: bool = False  # JSON only: the palette PNGs, base64-encoded, in the answer

    def describe(self) -> str:
        return f"postprocess={_word(self.postprocess)}&tta={_word(self.tta)}"


def parse_query(
    items: Iterable[tuple[str, str]], postprocess_default: bool, tta_default: bool
) -> PredictOptions:
    """The options of a query's ``(name, value)`` pairs, or a 400 naming the bad one."""
    given: dict[str, str] = {}
    for name, value in items:
        if name not in QUERY_NAMES:
            hint = did_you_mean(name, QUERY_NAMES) or f"; known: {', '.join(QUERY_NAMES)}"
            raise RequestError(400, f"unknown query parameter '{name}'{hint}")
        key = "postprocess" if name == "crf" else name
        if key in given:
            raise RequestError(400, f"query parameter '{name}' given twice; give it once")
        given[key] = value
    fmt = given.get("format", "png").lower()
    if fmt not in FORMATS:
        raise RequestError(400, f"format={given['format']} is not one of {', '.join(FORMATS)}")
    masks = _switch(given, "masks", False)
    if masks and fmt != "json":
        raise RequestError(400, "masks=true goes with format=json; png and overlay are pictures")
    return PredictOptions(
        postprocess=_switch(given, "postprocess", postprocess_default),
        tta=_switch(given, "tta", tta_default),
        format=fmt,
        masks=masks,
    )


def _switch(given: dict[str, str], name: str, default: bool) -> bool:
    if name not in given:
        return default
    value = given[name].strip().lower()
    if value in _TRUE:
        return True
    if value in _FALSE:
        return False
    raise RequestError(400, f"{name}={given[name]} is not a switch; use {name}=true or false")


def _word(value: bool) -> str:
    return "true" if value else "false"
