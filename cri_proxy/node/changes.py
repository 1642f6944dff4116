"""Applying an install plan and reverting it exactly.

Install keeps a manifest (/var/lib/cri-proxy/install.json under the root) naming every file
it created or changed, each file's sha256 as install left it, a backup of every file it
changed, and the folders it created. Uninstall puts each file back as it was (a backup is
copied back with its mode, owner and times), removes what install created, and refuses
(unless forced) when a file changed since install, so it never silently drops someone
else's edit. A failure half way through install undoes the steps already taken.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import logging
import os
import shutil
import time
from pathlib import Path
from typing import Any

from cri_proxy.model.errors import ConfigError
from cri_proxy.node.paths import BACKUP_DIR, MANIFEST_PATH, STATE_DIR, NodeRoot
from cri_proxy.node.plan import Plan

log = logging.getLogger(__name__)
MANIFEST_FORMAT = 1


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def describe(plan: Plan) -> list[str]:
    """Every change as text: a new file in full, a changed one as a unified diff."""
    lines: list[str] = []
    for change in plan.changes:
        after = change.after.decode()
        if change.before is None:
            lines += [f"----- begin {change.path} (new: {change.why}) -----", *after.splitlines(),
                      f"----- end {change.path} -----"]
        else:
            diff = difflib.unified_diff(change.before.decode().splitlines(), after.splitlines(),
                                        f"{change.path} (before)", f"{change.path} (after)", lineterm="")
            lines += [f"----- diff {change.path} ({change.why}; backup kept) -----", *diff,
                      f"----- end {change.path} -----"]
    return lines


def _make_dirs(node: NodeRoot, folder: str, created: list[str]) -> None:
    """mkdir -p, noting each folder made (node paths, outermost first)."""
    missing = []
    path = node.at(folder)
    while not path.exists():
        missing.append(path)
        path = path.parent
    for path in reversed(missing):
        path.mkdir(mode=0o755 if not node.node_path(path).startswith(STATE_DIR) else 0o700)
        created.append(node.node_path(path))


def _write(path: Path, data: bytes, like: Path | None) -> None:
    """Replace `path` with `data` atomically, with the mode and owner of `like` (else 0644)."""
    tmp = path.with_name(f".{path.name}.cri-proxy-tmp")
    tmp.write_bytes(data)
    if like is not None:
        st = like.stat()
        os.chmod(tmp, st.st_mode & 0o7777)
        if hasattr(os, "chown") and os.geteuid() == 0:
            os.chown(tmp, st.st_uid, st.st_gid)
    else:
        os.chmod(tmp, 0o644)
    os.replace(tmp, path)


def apply(node: NodeRoot, plan: Plan) -> list[str]:
    """Make the plan's changes and record them; returns one line per change."""
    if node.at(MANIFEST_PATH).exists():
        raise ConfigError(f"cri-proxy is installed already ({MANIFEST_PATH}): run `cri-proxy uninstall` first")
    manifest: dict[str, Any] = {"format": MANIFEST_FORMAT, "installed_at": time.strftime("%Y-%m-%dT%H:%M:%SZ",
                                time.gmtime()), "method": plan.method, "listen": plan.listen, "files": [], "dirs": []}
    for change in plan.changes:
        if node.at(change.path).is_symlink():  # replacing it would turn a link into a file
            raise ConfigError(f"{change.path} is a symlink: change the file it points to by hand, or use --via")
    done: list[str] = []
    try:
        _make_dirs(node, STATE_DIR, manifest["dirs"])
        for change in plan.changes:
            _make_dirs(node, os.path.dirname(change.path), manifest["dirs"])
            target = node.at(change.path)
            entry: dict[str, Any] = {"path": change.path, "sha256": sha256(change.after), "backup": None}
            if change.before is not None:
                st = target.stat()
                entry["owner"] = [st.st_uid, st.st_gid]
                backup = BACKUP_DIR + change.path
                _make_dirs(node, os.path.dirname(backup), manifest["dirs"])
                shutil.copy2(target, node.at(backup))
                entry["backup"] = backup
            manifest["files"].append(entry)
            _write(target, change.after, target if change.before is not None else None)
            done.append(f"{'changed' if change.before is not None else 'created'} {change.path} ({change.why})")
        _write(node.at(MANIFEST_PATH), (json.dumps(manifest, indent=2) + "\n").encode(), None)
    except BaseException:
        log.warning("install failed half way: undoing the %d file(s) already written", len(manifest["files"]))
        _undo(node, manifest)
        _remove_dirs(node, manifest["dirs"])
        raise
    return done + [f"created {MANIFEST_PATH} (what uninstall reverts)"]


def revert(node: NodeRoot, force: bool = False) -> list[str]:
    """Undo what the manifest records; returns one line per step."""
    text = node.read_text(MANIFEST_PATH)
    if text is None:
        raise ConfigError(f"cri-proxy is not installed here: no {MANIFEST_PATH}")
    try:
        manifest = json.loads(text)
    except ValueError as exc:
        raise ConfigError(f"{MANIFEST_PATH} is not valid JSON ({exc}): restore its backups by hand") from None
    if manifest.get("format") != MANIFEST_FORMAT:
        raise ConfigError(f"{MANIFEST_PATH} has format {manifest.get('format')!r}; this cri-proxy reads "
                          f"{MANIFEST_FORMAT}")
    changed = [e["path"] for e in manifest["files"] if _current_hash(node, e["path"]) != e["sha256"]]
    if changed and not force:
        raise ConfigError(f"changed since install: {', '.join(changed)}; uninstall would lose those edits "
                          "(look at them, then use --force)")
    steps = _undo(node, manifest)
    node.at(MANIFEST_PATH).unlink()
    steps.append(f"removed {MANIFEST_PATH}")
    return steps + _remove_dirs(node, manifest["dirs"])


def _current_hash(node: NodeRoot, path: str) -> str | None:
    try:
        return sha256(node.at(path).read_bytes())
    except FileNotFoundError:
        return None


def _undo(node: NodeRoot, manifest: dict[str, Any]) -> list[str]:
    steps = []
    for entry in reversed(manifest["files"]):
        target = node.at(entry["path"])
        if entry["backup"] is None:
            if target.exists() or target.is_symlink():
                target.unlink()
            steps.append(f"removed {entry['path']}")
            continue
        backup = node.at(entry["backup"])
        if not backup.exists():
            continue  # install failed before it made this backup
        tmp = target.with_name(f".{target.name}.cri-proxy-tmp")
        shutil.copy2(backup, tmp)  # contents, mode and times as before install
        uid, gid = entry.get("owner") or (backup.stat().st_uid, backup.stat().st_gid)
        if os.geteuid() == 0:
            os.chown(tmp, uid, gid)
        os.replace(tmp, target)
        backup.unlink()
        steps.append(f"restored {entry['path']} from its backup")
    return steps


def _remove_dirs(node: NodeRoot, dirs: list[str]) -> list[str]:
    steps = []
    for folder in reversed(dirs):
        try:
            node.at(folder).rmdir()
        except FileNotFoundError:
            continue
        except OSError:
            steps.append(f"kept {folder}: not empty (the recording, or files someone else put there)")
            continue
        steps.append(f"removed {folder}/")
    return steps
