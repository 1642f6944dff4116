"""What a call's note says: a translation warning, a refusal, or plain information.

The bridge (bridge/bridge.py) writes one line per thing translation did to a call; the
metrics peer counts warnings and refusals and the spans peer turns each note into a span
event of the matching name. The prefixes below are the bridge's own wording.
"""

from __future__ import annotations

from enum import Enum
from typing import Final


class NoteKind(str, Enum):
    WARNING = "translation.warning"  # the call went through, but not exactly as asked
    REFUSAL = "translation.refusal"  # the proxy answered the call itself with an error
    INFO = "cri_proxy.note"  # anything else (translated, emulated, tap notes)


# A method the runtime's version lacks is answered UNIMPLEMENTED by the proxy: a refusal too.
_REFUSAL: Final = ("refused", "answered by the proxy: UNIMPLEMENTED")
_WARNING: Final = ("v1-only fields ignored", "request did not parse")


def note_kind(note: str) -> NoteKind:
    if note.startswith(_REFUSAL):
        return NoteKind.REFUSAL
    if note.startswith(_WARNING):
        return NoteKind.WARNING
    return NoteKind.INFO
