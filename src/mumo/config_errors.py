"""Config validation errors as one line that names the key and the fix, e.g.
`model.encoders.caption.poolng: unknown key (did you mean 'pooling'?); valid keys: type, pretrained, ...`.

Locations are walked through the config classes themselves, so the tags pydantic adds for tagged
unions (model.encoders.caption.hf.poolng) are told apart from keys the user wrote, for every union.
"""

from __future__ import annotations

import difflib
from typing import Annotated, Any, get_args, get_origin

from pydantic import BaseModel, ConfigDict, ValidationError


class Section(BaseModel):
    """Base for every config section: unknown keys are errors, defaults are validated."""

    model_config = ConfigDict(extra="forbid", validate_default=True, validate_assignment=True)


def format_validation_error(err: ValidationError, root: type[BaseModel], prefix: str = "") -> str:
    """The first problem as one line: `key: what is wrong; what to do`. `root` is the class that was
    validated and `prefix` the key it sits under (task options are validated on their own)."""
    first = err.errors()[0]
    loc = [str(part) for part in first["loc"] if not str(part).startswith("function-")]
    keys, _ = _walk(loc, root)
    key = ".".join([*([prefix] if prefix else []), *keys]) or prefix or "config"
    kind, msg, value = first["type"], first["msg"], first.get("input")
    if kind == "extra_forbidden":
        _, parent = _walk(loc[:-1], root)
        valid = list(getattr(parent, "model_fields", {}))
        hint = difflib.get_close_matches(loc[-1], valid, n=1)
        maybe = f" (did you mean {hint[0]!r}?)" if hint else ""
        return f"{key}: unknown key{maybe}; valid keys: {', '.join(valid)}"
    if kind == "union_tag_invalid":
        tags = first.get("ctx", {}).get("expected_tags", "")
        return f"{key}.type: {first['ctx'].get('tag')!r} is not a valid type; choose one of {tags}"
    if kind == "union_tag_not_found":
        return f"{key}: missing 'type' (every encoder and fusion names its type, e.g. type: cnn)"
    if kind == "literal_error":
        expected = first.get("ctx", {}).get("expected", "")
        return f"{key}: {value!r} is not valid; choose one of {expected}"
    if kind == "missing":
        return f"{key}: required"
    if kind == "value_error":
        return msg.removeprefix("Value error, ")
    shown = f" (got {value!r})" if not isinstance(value, dict | list) else ""
    return f"{key}: {msg[0].lower() + msg[1:]}{shown}"


class _Tagged(dict[str, type[BaseModel]]):
    """A tagged union's options classes by tag: in an error location, the part after such a field is
    the tag pydantic adds (model.encoders.caption.hf.pooling), not a key the user wrote."""


class _Mapping:
    """A dict section (model.encoders): the next part of a location is a key such as a column name."""

    def __init__(self, value: Any) -> None:
        self.value = value


def tagged(union: Any) -> _Tagged:
    """{tag: options class} of a union A | B | ... (bare, or in Annotated[..., Field(discriminator=...)])."""
    if get_origin(union) is Annotated:
        union = get_args(union)[0]
    return _Tagged({cls.model_fields["type"].default: cls for cls in get_args(union)})


def _node(annotation: Any) -> Any:
    """What an annotation holds, for walking an error location: a section class, a tagged union, a
    mapping of them, or None for a plain value."""
    if get_origin(annotation) is Annotated and any(
        getattr(meta, "discriminator", None) for meta in get_args(annotation)[1:]
    ):
        return tagged(annotation)
    if get_origin(annotation) is dict:
        return _Mapping(_node(get_args(annotation)[1]))
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in get_args(annotation):  # X | None, SerializeAsAny[X]
        found = _node(arg)
        if found is not None:
            return found
    return None


def _walk(loc: list[str], root: type[BaseModel]) -> tuple[list[str], Any]:
    """The keys of an error location as the user wrote them (tags dropped) and the section it ends in."""
    node: Any = root
    keys: list[str] = []
    for part in loc:
        if isinstance(node, _Tagged):
            node = node.get(part)
            continue
        keys.append(part)
        if isinstance(node, _Mapping):
            node = node.value
            continue
        fields = getattr(node, "model_fields", None)
        if not fields or part not in fields:
            node = None
        elif fields[part].discriminator:  # pydantic keeps a field's own Annotated metadata apart
            node = tagged(fields[part].annotation)
        else:
            node = _node(fields[part].annotation)
    return keys, node
