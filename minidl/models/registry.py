"""The model registry behind ``models.build``: names map to builder callables.

A builder is any callable taking keyword options (a function or a Layer class); its
signature is the list of valid options, so ``build`` can reject a misspelt option by name
instead of letting it surface as a TypeError deep inside a constructor.
"""
from __future__ import annotations

import inspect
from typing import Callable

_BUILDERS: dict[str, Callable] = {}


def register(name: str):
    """Decorator: ``@register("vgg38")`` makes the builder available as ``build("vgg38")``."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"register: model name must be a non-empty string, got {name!r}")

    def decorator(builder: Callable) -> Callable:
        if name in _BUILDERS and _BUILDERS[name] is not builder:
            raise ValueError(f"register: a model named {name!r} is already registered "
                             f"({_BUILDERS[name]!r})")
        _BUILDERS[name] = builder
        return builder

    return decorator


def available() -> list[str]:
    """Sorted names of the registered models."""
    return sorted(_BUILDERS)


def options(name: str) -> dict[str, object]:
    """``{option: default}`` accepted by model ``name`` (read from its builder's signature)."""
    # For a class, inspect.signature(cls) reports __init__ without ``self``.
    params = inspect.signature(_builder(name)).parameters.values()
    return {p.name: p.default for p in params
            if p.kind in (p.POSITIONAL_OR_KEYWORD, p.KEYWORD_ONLY)}


def build(name: str, **opts):
    """Build a registered model, e.g. ``build("vgg38", bn=True, residual=True)``.

    An unknown model name or option raises ValueError listing what is valid.
    """
    builder = _builder(name)
    params = inspect.signature(builder).parameters.values()
    takes_any = any(p.kind == p.VAR_KEYWORD for p in params)
    if not takes_any:
        valid = options(name)
        unknown = [k for k in opts if k not in valid]
        if unknown:
            raise ValueError(f"model {name!r} has no option(s) {', '.join(map(repr, unknown))}; "
                             f"valid options: {', '.join(valid)}")
    return builder(**opts)


def _builder(name: str) -> Callable:
    try:
        return _BUILDERS[name]
    except (KeyError, TypeError):
        raise ValueError(f"unknown model {name!r}; available models: "
                         f"{', '.join(available())}") from None

