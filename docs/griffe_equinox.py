"""A Griffe extension: signatures for Equinox modules in the API pages.

Equinox generates `__init__` for a module from its annotated fields, like a
dataclass, so static analysis finds no signature for, e.g., `HolomorphicEP`. For
every class without an `__init__` of its own this extension imports the class, asks
`inspect.signature` for the generated one, and adds it with the annotations written
in the source (`float`, not the `Any` that a field converter leaves at run time).
"""

import importlib
import inspect
import re
from typing import Any

import griffe


_QUALIFIED = re.compile(r"\b(?:[A-Za-z_]\w*\.)+([A-Za-z_]\w*)")


def _runtime(cls: griffe.Class):
    obj: Any = importlib.import_module(cls.module.path)
    for name in cls.path[len(cls.module.path) + 1 :].split("."):
        obj = getattr(obj, name)
    return obj


def _static_annotation(cls: griffe.Class, name: str):
    for klass in [cls, *cls.mro()]:
        member = klass.members.get(name)
        if isinstance(member, griffe.Attribute) and member.annotation is not None:
            return member.annotation
    return None


def _short(text: str) -> str:
    """`holoode._noise.NeuronNoise | None` -> `NeuronNoise | None`."""
    return _QUALIFIED.sub(r"\1", text)


def _signature(cls: griffe.Class) -> griffe.Function | None:
    try:
        obj = _runtime(cls)
        signature = inspect.signature(obj)
    except Exception:  # not importable here (optional dependency) or no signature
        return None
    parameters = [
        griffe.Parameter("self", kind=griffe.ParameterKind.positional_or_keyword)
    ]
    for p in signature.parameters.values():
        annotation = _static_annotation(cls, p.name)
        if annotation is None and p.annotation is not inspect.Parameter.empty:
            annotation = _short(inspect.formatannotation(p.annotation))
        default = (
            None if p.default is inspect.Parameter.empty else _short(repr(p.default))
        )
        parameters.append(
            griffe.Parameter(
                p.name,
                annotation=annotation,
                kind=griffe.ParameterKind(p.kind.description),
                default=default,
            )
        )
    return griffe.Function(
        "__init__",
        parent=cls,
        parameters=griffe.Parameters(*parameters),
        returns="None",
    )


def _walk(obj, seen: set[str]) -> None:
    if obj.path in seen:
        return
    seen.add(obj.path)
    for member in list(obj.members.values()):
        if member.is_alias:
            continue
        if member.is_class:
            if "__init__" not in member.members:
                init = _signature(member)
                if init is not None:
                    member.set_member("__init__", init)
            _walk(member, seen)
        elif member.is_module:
            _walk(member, seen)


class EquinoxSignatures(griffe.Extension):
    """Add the generated `__init__` signature to classes that define none."""

    def on_package(self, *, pkg: griffe.Module, **kwargs) -> None:
        _walk(pkg, set())
