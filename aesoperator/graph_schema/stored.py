"""Models rebuilt from stored rows, as cheaply as Python allows.

A row read back was validated when it was written, so it is not validated again. pydantic's
`model_construct` skips validation too, but still walks every field to fill defaults and resolve
aliases, which costs more than decoding the row itself; a search decodes a hundred or more rows.
`stored_model` sets the instance's state directly, to the same result as `model_construct` with
every field given (the tests compare the two), and calls `model_construct` instead where pydantic
lays instances out otherwise than expected.
"""

from __future__ import annotations

from typing import Any, TypeVar

from pydantic import BaseModel

Model = TypeVar("Model", bound=BaseModel)

_set_attribute = object.__setattr__
# The instance state `model_construct` sets in the pydantic releases this is written for. Should a
# release lay instances out otherwise, `stored_model` leaves the work to `model_construct`.
_KNOWN_LAYOUT = ("__dict__", "__pydantic_fields_set__", "__pydantic_extra__", "__pydantic_private__")
_DIRECT = tuple(getattr(BaseModel, "__slots__", ())) == _KNOWN_LAYOUT
# Field names per model class, looked up once: `model_fields` is rebuilt on every access.
_fields_of: dict[type[BaseModel], frozenset[str]] = {}


def _checked_fields(cls: type[BaseModel]) -> frozenset[str]:
    if cls.__private_attributes__ or cls.model_config.get("extra") == "allow":
        raise ValueError(
            f"cannot rebuild a {cls.__name__} from a stored row: it has private attributes or extra fields"
        )
    return frozenset(cls.model_fields)


def stored_model(cls: type[Model], **values: Any) -> Model:
    """An instance of `cls` holding `values`, without validation.

    Args:
        cls: a pydantic model without private attributes or extra fields.
        values: every field of `cls`, already of the field's type.

    Raises:
        ValueError: `values` does not name exactly the fields of `cls` (a model changed and its
            row decoder did not), or `cls` has private attributes or extra fields.
    """
    fields = _fields_of.get(cls)
    if fields is None:
        fields = _fields_of[cls] = _checked_fields(cls)
    if values.keys() != fields:
        missing, extra = sorted(fields - values.keys()), sorted(values.keys() - fields)
        raise ValueError(
            f"cannot rebuild a {cls.__name__} from a stored row: missing fields {missing}, unknown fields {extra}"
        )
    if not _DIRECT:
        return cls.model_construct(**values)
    made = cls.__new__(cls)
    _set_attribute(made, "__dict__", values)
    _set_attribute(made, "__pydantic_fields_set__", set(values))
    _set_attribute(made, "__pydantic_extra__", None)
    _set_attribute(made, "__pydantic_private__", None)
    return made


__all__ = ["stored_model"]
