"""Who runs an operator command, for the audit rows it writes (erasures, replays)."""

from __future__ import annotations

import getpass


def operator_name() -> str | None:
    """The login name running this process; None where there is none (some containers)."""
    try:
        return getpass.getuser()
    except Exception:  # noqa: BLE001 - getpass raises whatever the platform's lookup raises
        return None
