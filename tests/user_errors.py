"""Shared by the task tests: a user's mistake is one UserError line that names what it should."""

from __future__ import annotations

import pytest

from rnnkit.errors import UserError


def one_line_error(call, *words: str) -> str:
    """``call()`` raises a UserError of one line holding each of ``words``; its message."""
    with pytest.raises(UserError) as e:
        call()
    message = str(e.value)
    assert "\n" not in message
    for word in words:
        assert word in message, message
    return message
