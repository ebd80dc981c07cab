"""What the terminal layer promises CI logs: a one-line message stays one line at any width."""

from __future__ import annotations

import pytest

from optimize import console as shared


@pytest.mark.parametrize("name", ["console", "out"])
def test_messages_are_never_wrapped_in_logs_whatever_their_length(monkeypatch, name):
    stream = getattr(shared, name)
    monkeypatch.setattr(stream, "width", 40)
    message = (
        "warning: the tracking server at http://127.0.0.1:54321 is unreachable; run `optimize sync` later"
    )
    with stream.capture() as captured:  # not by replacing its file: it follows sys.stdout/stderr
        stream.print(message)
    assert captured.get() == message + "\n"
