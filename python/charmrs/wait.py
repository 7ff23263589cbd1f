"""How ``@when`` conditions are read: the condition string of a method is parsed once,
when the method is decorated, into one of three kinds (Charm4py's ``wait`` module, with
its names):

- ``MsgTagCond``: ``self.<attribute> == <argument>`` (either way round): compared
  directly, without evaluating an expression;
- ``ChareStateCond``: an expression of the chare's state only (``self``, globals);
- ``ChareStateMsgCond``: an expression of the chare's state and the method's arguments.

Each has ``evaluateWhen(obj, args)``: whether the condition holds for chare ``obj`` and
the call's arguments ``args`` (positional, in the method's order, ``self`` excluded).
"""

from __future__ import annotations

import ast
import importlib
import sys
from typing import Any, Callable, Optional, Sequence, Union

__all__ = ["ChareStateCond", "ChareStateMsgCond", "MsgTagCond", "parse_cond_str"]


class MsgTagCond:
    """``self.<attrib_name> == <argument number arg_idx>``."""

    __slots__ = ("cond_str", "attrib_name", "arg_idx")

    def __init__(self, cond_str: str, attrib_name: str, arg_idx: int) -> None:
        self.cond_str = cond_str
        self.attrib_name = attrib_name
        self.arg_idx = arg_idx

    def evaluateWhen(self, obj: Any, args: Sequence[Any]) -> bool:  # noqa: N802 (Charm4py's name)
        """Whether the chare's attribute equals the argument."""
        return bool(args[self.arg_idx] == getattr(obj, self.attrib_name))


class ChareStateCond:
    """A condition over the chare's state only."""

    __slots__ = ("cond_str", "cond_func")

    def __init__(self, cond_str: str, cond_func: Callable[[Any], Any]) -> None:
        self.cond_str = cond_str
        self.cond_func = cond_func

    def evaluateWhen(self, obj: Any, args: Sequence[Any]) -> bool:  # noqa: N802 (Charm4py's name)
        """Whether the condition holds for the chare (the arguments are not used)."""
        return bool(self.cond_func(obj))


class ChareStateMsgCond:
    """A condition over the chare's state and the method's arguments."""

    __slots__ = ("cond_str", "cond_func")

    def __init__(self, cond_str: str, cond_func: Callable[..., Any]) -> None:
        self.cond_str = cond_str
        self.cond_func = cond_func

    def evaluateWhen(self, obj: Any, args: Sequence[Any]) -> bool:  # noqa: N802 (Charm4py's name)
        """Whether the condition holds for the chare and these arguments."""
        return bool(self.cond_func(obj, *args))


Cond = Union[MsgTagCond, ChareStateCond, ChareStateMsgCond]


def _tag(tree: ast.Expression, method_args: dict[str, int]) -> Optional[tuple[str, int]]:
    """``(attribute, argument index)`` if the condition is ``self.a == arg`` or
    ``arg == self.a``."""
    body = tree.body
    if not (isinstance(body, ast.Compare) and len(body.ops) == 1 and isinstance(body.ops[0], ast.Eq)):
        return None
    for attr, other in ((body.left, body.comparators[0]), (body.comparators[0], body.left)):
        if (
            isinstance(attr, ast.Attribute)
            and isinstance(attr.value, ast.Name)
            and attr.value.id == "self"
            and isinstance(other, ast.Name)
            and other.id in method_args
        ):
            return attr.attr, method_args[other.id]
    return None


def parse_cond_str(
    cond_str: str,
    module_name: str,
    method_args: dict[str, int],
    globals_: Optional[dict[str, Any]] = None,
    where: str = "",
) -> Cond:
    """Parses the ``@when`` condition ``cond_str`` of a method whose arguments are
    ``method_args`` (name to position, ``self`` excluded); names that are not arguments
    are globals of module ``module_name`` (or of ``globals_``). A condition that does not
    compile raises ``SyntaxError`` naming the method (``where``)."""
    what = f"the @when condition {cond_str!r}" + (f" of {where}" if where else "")
    try:
        tree = ast.parse(cond_str.strip(), mode="eval")
    except SyntaxError as e:
        raise SyntaxError(f"{what} does not compile: {e.msg}") from e
    tag = _tag(tree, method_args)
    if tag is not None:
        return MsgTagCond(cond_str, tag[0], tag[1])
    if globals_ is None:
        module = sys.modules.get(module_name) or importlib.import_module(module_name)
        globals_ = module.__dict__
    used = {n.id for n in ast.walk(tree) if isinstance(n, ast.Name)}
    params = sorted(method_args, key=method_args.__getitem__)
    expr = f"({cond_str.strip()})"
    if used & set(method_args):
        src = f"lambda self, {', '.join(params)}: {expr}"
        return ChareStateMsgCond(cond_str, eval(compile(src, f"<{what}>", "eval"), globals_))  # noqa: S307
    return ChareStateCond(cond_str, eval(compile(f"lambda self: {expr}", f"<{what}>", "eval"), globals_))  # noqa: S307
