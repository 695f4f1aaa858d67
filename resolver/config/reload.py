"""What a config re-read (SIGHUP) may change in a running daemon, and what needs a restart:
both read off the settings table (``Setting.live``, ``Setting.memo``, ``Setting.area``), never
kept in a list of their own."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import replace

from resolver.config.settings import SETTINGS, SETTINGS_BY_KEY, Config, setting_keys

RESTART_ONLY = frozenset(setting.key for setting in SETTINGS if not setting.live)
# Settings memoized answers depend on: a change to one drops every memo.
MEMO_SETTINGS = frozenset(setting.key for setting in SETTINGS if setting.memo)


def changed_settings(old: Config, new: Config) -> list[str]:
    return [key for key in setting_keys() if getattr(old, key) != getattr(new, key)]


def merge(old: Config, new: Config) -> tuple[Config, list[str], list[str]]:
    """The config to run with from now on, the settings applied, and those left as they were."""
    changed = changed_settings(old, new)
    kept = [key for key in changed if key in RESTART_ONLY]
    applied = [key for key in changed if key not in RESTART_ONLY]
    merged = replace(new, **{key: getattr(old, key) for key in kept})
    return merged, applied, kept


def areas(keys: Iterable[str]) -> set[str]:
    """The components (``Setting.area``) whose slice holds one of ``keys``."""
    return {SETTINGS_BY_KEY[key].area for key in keys}


def drops_memo(keys: Iterable[str]) -> bool:
    return any(key in MEMO_SETTINGS for key in keys)
