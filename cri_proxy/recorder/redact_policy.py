"""What redaction removes: the policy, built from `--redact`/`--no-redact`/`--redact-label`.

Apart from the redaction itself (recorder/redact.py, recorder/redact_json.py) so that both
read it without importing each other.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterable

from cri_proxy.model.options import NARROW_OPTIONS, WIDEN_OPTIONS, redaction_switches


@dataclasses.dataclass(frozen=True, slots=True)
class RedactionPolicy:
    """What to redact. The defaults are the safe minimum; see the module docstring."""

    env_values: bool = True
    exec_output: bool = False  # ExecSyncResponse stdout and stderr
    exec_cmd: bool = False  # ExecSync/Exec request cmd, all but cmd[0]
    annotations: bool = False  # every annotation value (configs, statuses, info JSON)
    label_globs: tuple[str, ...] = ()  # label values whose key matches (fnmatch)
    keep_registry_credentials_in_clear: bool = False

    @property
    def registry_auth(self) -> bool:
        return not self.keep_registry_credentials_in_clear

    @property
    def inspects_json(self) -> bool:
        return self.env_values or self.registry_auth or self.annotations or bool(self.label_globs)

    @classmethod
    def from_options(
        cls,
        *,
        redact: Iterable[str] = (),
        no_redact: Iterable[str] = (),
        label_globs: Iterable[str] = (),
        keep_registry_credentials_in_clear: bool = False,
    ) -> RedactionPolicy:
        """A policy from CLI-style names: `redact` widens (exec-output, exec-cmd,
        annotations), `no_redact` narrows (env). Unknown names raise ValueError."""
        switches = redaction_switches(tuple(redact), tuple(no_redact))
        return cls(
            **switches,
            label_globs=tuple(label_globs),
            keep_registry_credentials_in_clear=keep_registry_credentials_in_clear,
        )

    def describe(self) -> str:
        """One line for the start-up log."""
        on = [name for name, attr in {**NARROW_OPTIONS, **WIDEN_OPTIONS}.items()
              if getattr(self, attr)]  # fmt: skip
        if self.registry_auth:
            on.insert(0, "registry-auth")
        if self.label_globs:
            on.append("labels " + ",".join(self.label_globs))
        text = "redacting: " + (", ".join(on) or "nothing")
        if self.keep_registry_credentials_in_clear:
            text += " (REGISTRY CREDENTIALS ARE RECORDED IN CLEAR)"
        return text


DEFAULT_POLICY = RedactionPolicy()
