"""What Lambda's freeze would stop: threads of this process still doing alert work."""

from __future__ import annotations

import sys
import threading

JOB_FUNCTION = "_deliver_once"  # logic/alerts/notifier.py: one delivery job, claim to mark


def alert_jobs_running() -> list[str]:
    """The notifier pools' threads (``alerts_*``) that are inside a delivery job right now; an
    idle pool thread waits for work and does not count."""
    frames = sys._current_frames()
    busy = []
    for thread in threading.enumerate():
        frame = frames.get(thread.ident or -1)
        while thread.name.startswith("alerts") and frame is not None:
            if frame.f_code.co_name == JOB_FUNCTION:
                busy.append(thread.name)
                break
            frame = frame.f_back
    return busy
