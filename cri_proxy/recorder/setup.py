"""Recording as `cri-proxy run` configures it: options in, the pipeline's peers built from
them, a started Recorder and tap out."""

from __future__ import annotations

import logging

from cri_proxy.model.errors import ConfigError
from cri_proxy.model.link import Resume
from cri_proxy.model.options import RecordConfig
from cri_proxy.model.session import SessionInfo
from cri_proxy.recorder.keep import KeepPolicy
from cri_proxy.recorder.pipeline import build_pipeline
from cri_proxy.recorder.recorder import Recorder
from cri_proxy.recorder.redact_policy import RedactionPolicy
from cri_proxy.recorder.tap import RecordingTap

log = logging.getLogger(__name__)


def policies(config: RecordConfig) -> tuple[KeepPolicy, RedactionPolicy]:
    """The keep and redaction policies the (checked) options ask for."""
    keep = KeepPolicy.from_config(config)
    redaction = RedactionPolicy.from_options(
        redact=config.redact, no_redact=config.no_redact, label_globs=config.redact_labels,
        keep_registry_credentials_in_clear=config.keep_registry_credentials_in_clear)
    return keep, redaction


def make_recorder(config: RecordConfig, session: SessionInfo, thread: bool = True,
                  resume: Resume | None = None) -> Recorder:
    """Open the database and start the writer (see Recorder.start for `thread`). Fails open
    unless --require-recording. `resume`: carry on after a recorder process that died."""
    options = config.check()
    if config.db is None:
        raise ConfigError("recording needs a database (--db)")
    keep, redaction = policies(config)
    recorder = Recorder(config.db, session, options, pipeline=build_pipeline(keep, redaction, options))
    if resume is not None:
        recorder.carry_on(resume.session_id, resume.stats)
        recorder.lost_elsewhere(resume.loss.calls_lost, resume.loss, starts=True)
    recorder.start(strict=config.require, thread=thread)
    log.info("recording %s; %s; %s", keep.describe(), redaction.describe(),
             "calls are refused while recording fails (--require-recording)" if config.require
             else "recording fails open: a recording fault never fails a CRI call")
    return recorder


def start_recording(config: RecordConfig, session: SessionInfo) -> tuple[Recorder, RecordingTap]:
    """A recorder and its tap in this process (the demo; `run` uses a recorder process)."""
    recorder = make_recorder(config, session)
    return recorder, RecordingTap(recorder)
