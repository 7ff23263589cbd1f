"""charmrs.wait: how @when condition strings are read (no job needed)."""

import pytest

from charmrs import wait

ARGS = {"iter": 0, "x": 1, "y": 2}


class Obj:
    iterations = 3
    x = 5
    y = 1
    z = 0


LIMIT = 10


@pytest.mark.parametrize(
    "cond,kind,holds",
    [
        ("self.iterations == iter", wait.MsgTagCond, True),
        ("y    ==    self.x  ", wait.MsgTagCond, False),
        ("self.x == x + y", wait.ChareStateMsgCond, True),
        ("x < y", wait.ChareStateMsgCond, False),
        ("iter", wait.ChareStateMsgCond, True),
        ("self.x", wait.ChareStateCond, True),
        ("self.x + self.y == 6", wait.ChareStateCond, True),
        ("self.x > (self.y + 2 / 3 + self.z + LIMIT)", wait.ChareStateCond, False),
    ],
)
def test_conditions_are_classified_and_evaluated(cond: str, kind: type, holds: bool) -> None:
    c = wait.parse_cond_str(cond, __name__, ARGS)
    assert isinstance(c, kind)
    assert c.evaluateWhen(Obj(), (3, 4, 1)) is holds


def test_a_tag_condition_names_its_attribute_and_argument() -> None:
    c = wait.parse_cond_str("self.x == y", __name__, ARGS)
    assert isinstance(c, wait.MsgTagCond)
    assert (c.attrib_name, c.arg_idx) == ("x", 2)


def test_a_condition_that_does_not_compile_names_the_method() -> None:
    with pytest.raises(SyntaxError, match="the @when condition 'self.x ==' of C.m does not compile"):
        wait.parse_cond_str("self.x ==", __name__, ARGS, where="C.m")
