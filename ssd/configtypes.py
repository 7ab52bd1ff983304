"""What the configuration's section models hold: their fields and the Python types of their settings."""

from __future__ import annotations

import msgspec

__all__ = ["fields_of", "python_type", "unwrap"]


def fields_of(model: type[msgspec.Struct]) -> tuple[msgspec.inspect.Field, ...]:
    """The fields of a section model, with their types, defaults and descriptions."""
    info = msgspec.inspect.type_info(model)
    assert isinstance(info, msgspec.inspect.StructType)
    return info.fields


def unwrap(info: msgspec.inspect.Type) -> msgspec.inspect.Type:
    """The type under an Annotated's metadata."""
    return info.type if isinstance(info, msgspec.inspect.Metadata) else info


def python_type(info: msgspec.inspect.Type) -> type:
    """The Python type a setting given as text converts to (object: msgspec decides)."""
    info = unwrap(info)
    mapping: dict[type[msgspec.inspect.Type], type] = {
        msgspec.inspect.IntType: int,
        msgspec.inspect.FloatType: float,
        msgspec.inspect.BoolType: bool,
        msgspec.inspect.StrType: str,
        msgspec.inspect.ListType: list,
    }
    return mapping.get(type(info), object)
