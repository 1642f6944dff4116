"""cri_proxy/recorder/notes.py: a note's kind, read from the bridge's own wording."""

from __future__ import annotations

import pytest

from cri_proxy.recorder.notes import NoteKind, note_kind


@pytest.mark.parametrize(("note", "kind"), [
    ("refused: the runtime speaks v1alpha2 and this request sets CDI_devices", NoteKind.REFUSAL),
    ("answered by the proxy: UNIMPLEMENTED (the runtime lacks the method)", NoteKind.REFUSAL),
    ("v1-only fields ignored by the runtime: config.image.user_specified_image", NoteKind.WARNING),
    ("request did not parse as runtime.v1alpha2: translated bytes as they were", NoteKind.WARNING),
    ("translated v1 -> v1alpha2", NoteKind.INFO),
    ("connection closed mid-call", NoteKind.INFO),
    ("", NoteKind.INFO),
])
def test_note_kind(note: str, kind: NoteKind) -> None:
    assert note_kind(note) is kind


def test_kinds_are_the_span_event_names() -> None:
    assert [k.value for k in NoteKind] == ["translation.warning", "translation.refusal", "cri_proxy.note"]
