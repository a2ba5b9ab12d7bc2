"""A recheck's configuration: the run's own, read from its run.json, tightened if asked.

A recheck decides with the download's settings (profile, user-agent token and
contact, ignored checks, limits, politeness, address guard), so that "still
allowed" means what "allowed" meant when the sample was downloaded. A caller
may make it stricter (a stricter profile, fewer ignored checks, more opt-out
lists), never looser: a looser recheck would withdraw less than the run's own
rules would, silently, so it is refused with a :class:`ConfigError`.
Pure: no I/O but checking that the run's list and CA files still exist.
"""

from __future__ import annotations

import dataclasses
import logging
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ..config import FetchConfig, make_config
from ..errors import ConfigError

logger = logging.getLogger(__name__)

# Profiles from the most permissive to the strictest (opt-in reads every signal
# strictly and also asks for a permission).
PROFILE_STRICTNESS = {"standard": 0, "strict": 1, "opt-in": 2}

# run.json config values a recheck does not take over: how a download spread its
# work, and the opt-in lists (a recheck never decides "no permission": the body,
# which may have held it, is not read again).
_NOT_TAKEN = frozenset({"processes", "distributor", "overwrite", "retry_failed",
                        "opt_in_lists", "opt_out_lists", "ca_file", "allow_private_networks"})


@dataclass(frozen=True)
class RecheckSettings:
    """The config a recheck runs with, and what it had to leave out of the run's."""

    config: FetchConfig
    #: opt-out lists of the run that cannot be read here (moved, or stored redacted)
    lists_missing: tuple[str, ...] = ()


def recheck_settings(run: Mapping[str, Any], *, consent: str | None = None,
                     ignore: Sequence[str] | None = None,
                     opt_out_lists: Sequence[str] = (),
                     allow_private_networks: bool = False,
                     ca_file: str | None = None,
                     exists: Any = os.path.exists) -> RecheckSettings:
    """The recheck's config from ``run`` (a run.json) and the caller's tightenings.

    Raises :class:`ConfigError` when ``consent`` is looser than the run's
    profile or ``ignore`` turns off a check the run performed.
    ``allow_private_networks`` adds to the run's (it is about where requests may
    go, not about consent); ``ca_file`` replaces the run's.
    """
    previous = run.get("config")
    if not isinstance(previous, Mapping):
        raise ConfigError("run.json holds no config: not an output folder of consentfetch "
                          "download")
    fields = {f.name for f in dataclasses.fields(FetchConfig)}
    options = {k: v for k, v in previous.items() if k in fields and k not in _NOT_TAKEN}
    run_profile = str(options.get("consent", "strict"))
    run_ignore = tuple(options.get("ignore") or ())
    options["consent"] = tighter_profile(run_profile, consent)
    options["ignore"] = fewer_ignored(run_ignore, ignore)
    kept, missing = _lists(previous.get("opt_out_lists") or (), exists)
    options["opt_out_lists"] = (*kept, *(os.fspath(p) for p in opt_out_lists))
    options["allow_private_networks"] = allow_private_networks or \
        bool(previous.get("allow_private_networks"))
    options["ca_file"] = ca_file or _existing(previous.get("ca_file"), exists)
    return RecheckSettings(make_config(**options), missing)


def tighter_profile(run_profile: str, asked: str | None) -> str:
    """``asked`` if it is at least as strict as ``run_profile``; the run's if None."""
    if asked is None:
        return run_profile
    if asked not in PROFILE_STRICTNESS:
        raise ConfigError(f"--consent: one of {', '.join(PROFILE_STRICTNESS)} (got {asked!r})")
    if PROFILE_STRICTNESS[asked] < PROFILE_STRICTNESS.get(run_profile, 1):
        raise ConfigError(
            f"--consent {asked} is looser than this run's profile {run_profile}: a recheck "
            f"may tighten the run's rules, never loosen them (leave --consent out to use "
            f"{run_profile})")
    return asked


def fewer_ignored(run_ignore: Sequence[str], asked: Sequence[str] | None) -> tuple[str, ...]:
    """``asked`` if it turns off no check the run performed; the run's if None."""
    if asked is None:
        return tuple(run_ignore)
    added = sorted(set(asked) - set(run_ignore))
    if added:
        raise ConfigError(
            f"--ignore {', '.join(added)}: this run performed the check(s); "
            f"a recheck may tighten the run's rules, never loosen them (ignored by the "
            f"run: {', '.join(run_ignore) or 'nothing'})")
    return tuple(asked)


def _lists(paths: Sequence[str], exists: Any) -> tuple[list[str], tuple[str, ...]]:
    """The run's opt-out lists that can be read here, and those that cannot."""
    kept: list[str] = []
    missing: list[str] = []
    for path in paths:
        if "***" in path or "://" not in path and not exists(path):
            missing.append(path)
        else:
            kept.append(path)
    for path in missing:
        logger.warning("the run's opt-out list %s cannot be read here: give it again with "
                       "--opt-out-list (the recheck goes on without it)", path)
    return kept, tuple(missing)


def _existing(path: object, exists: Any) -> str | None:
    if isinstance(path, str) and path and exists(path):
        return path
    if path:
        logger.warning("the run's --ca-file %s is not here: give it again with --ca-file", path)
    return None
