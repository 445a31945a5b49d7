"""Every limit a caller can hit is in the README's table, under the name it is set by.

The table is where an operator looks when a client reports a refusal; a limit added to the
settings without a row there would be a limit nobody can find.
"""

from __future__ import annotations

import re
from pathlib import Path

from speech_platform.config import Settings

README = Path(__file__).resolve().parents[2] / "README.md"

#: Settings that bound what one request or caller may use (the table must name each).
LIMIT_FIELDS = re.compile(r"^(max_|memory_budget|trim_idle|stream_max|stream_burst|stream_idle)")

#: Named like limits, but bound nothing a caller sends (replies, connection rebalancing).
NOT_LIMITS = {"max_send_message_bytes", "max_connection_age_s", "max_connection_age_grace_s"}


def _limit_settings() -> list[str]:
    settings = Settings()
    names = []
    for section in ("server", "stt", "tts", "jobs"):
        model = getattr(settings, section)
        for field in type(model).model_fields:
            if LIMIT_FIELDS.match(field) and field not in NOT_LIMITS:
                names.append(f"{section}.{field}")
    return names


def test_every_limit_setting_has_a_row_in_the_readme_table() -> None:
    text = README.read_text()
    table = text[text.index("### Limits") :]
    table = table[: table.index("\n## ")]
    missing = [name for name in _limit_settings() if f"`{name}`" not in table]
    assert missing == []
    assert len(_limit_settings()) >= 15  # the pattern still finds the limits
