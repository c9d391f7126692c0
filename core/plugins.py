"""Plugin discovery, target registry and attributed hook calls.

Plugins are found through the ``accelnas`` entry-point group (built-ins are declared there too).
``ACCELNAS_PLUGINS`` restricts loading to a comma-separated list of plugin names; an empty value
loads none.
"""

from __future__ import annotations

import inspect
import logging
import os
import re
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

import pluggy

from accelnas.core import hookspecs
from accelnas.core.errors import (
    PluginError,
    PluginLoadError,
    TargetUnavailableError,
    UnknownTargetError,
    first_line,
)
from accelnas.core.records import Target

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "accelnas"
ENV_VAR = "ACCELNAS_PLUGINS"


@dataclass
class PluginInfo:
    """What ``accelnas plugins`` shows for one plugin."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None  # why a plugin that is installed could not be loaded


class PluginRegistry:
    """A pluggy ``PluginManager`` plus the targets the loaded plugins declared."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._info: dict[str, PluginInfo] = {}
        self._broken: dict[str, PluginInfo] = {}
        self._targets: dict[str, Target] | None = None

    # -- loading ---------------------------------------------------------------------------------
    def load_entry_points(self, only: list[str] | None = None) -> None:
        """Register every plugin of the entry-point group (or only the named ones)."""
        eps = {ep.name: ep for ep in metadata.entry_points(group=ENTRY_POINT_GROUP)}
        if only is not None:
            unknown = [name for name in only if name not in eps]
            if unknown:
                known = ", ".join(sorted(eps)) or "none installed"
                raise PluginLoadError(f"unknown plugin {unknown[0]!r} in {ENV_VAR} (installed: {known})")
            eps = {name: eps[name] for name in only}
        for name, ep in sorted(eps.items()):
            dist = getattr(ep, "dist", None)
            dist_name, version = (dist.name, dist.version) if dist else (None, None)
            try:
                obj = ep.load()
            except (Exception, SystemExit) as exc:  # a broken third-party plugin must not take the tool down
                error = f"failed to import {ep.value}: {type(exc).__name__}: {exc}"
                log.warning("plugin %r skipped: %s", name, error)
                self._broken[name] = PluginInfo(name, ep.value, dist_name, version, error=error)
                continue
            try:
                self.register(obj, name, distribution=dist_name, version=version)
            except PluginLoadError as exc:  # e.g. a hook with an argument its spec lacks
                log.warning("plugin %r skipped: %s", name, exc)
                self._broken[name] = PluginInfo(name, ep.value, dist_name, version, error=str(exc))

    def register(self, obj: Any, name: str, *, distribution: str | None = None, version: str | None = None) -> None:
        """Register one plugin object (module, class instance) under ``name``."""
        if self.pm.get_plugin(name) is not None:
            raise PluginLoadError(f"a plugin named {name!r} is already registered")
        try:
            self.pm.register(obj, name=name)
        except (ValueError, pluggy.PluginValidationError) as exc:
            raise PluginLoadError(f"plugin {name!r} is invalid: {exc}") from exc
        module = getattr(obj, "__name__", type(obj).__module__)
        self._info[name] = PluginInfo(name, module, distribution, version or getattr(obj, "__version__", None))
        self._targets = None

    def check_pending(self) -> None:
        """Skip, with a warning, each plugin whose hook implementations match no spec (a typo)."""
        while True:
            try:
                self.pm.check_pending()
                return
            except pluggy.PluginValidationError as exc:
                name = self.pm.get_name(exc.plugin) if exc.plugin is not None else None
                if name is None:
                    raise PluginLoadError(f"a plugin has an unknown hook: {first_line(exc)}") from exc
                hook = re.search(r"unknown hook '([^']+)'", str(exc))
                self._skip(name, f"unknown hook {hook.group(1)!r} (no such hook spec)" if hook else first_line(exc))

    def _skip(self, name: str, error: str) -> None:
        """Unregister a plugin that cannot be used; ``accelnas plugins`` lists it with ``error``."""
        info = self._info.pop(name, None) or PluginInfo(name, name, None, None)
        if self.pm.get_plugin(name) is not None:
            self.pm.unregister(name=name)
        self._broken[name] = replace(info, error=error)
        self._targets = None
        log.warning("plugin %r skipped: %s", name, error)

    # -- listing ---------------------------------------------------------------------------------
    def plugins(self) -> list[PluginInfo]:
        """Loaded plugins with their hooks, and installed ones that failed to load (with ``error``)."""
        out = list(self._broken.values())
        for name, info in sorted(self._info.items()):
            plugin = self.pm.get_plugin(name)
            hooks = sorted(c.name for c in self.pm.get_hookcallers(plugin) or [])
            out.append(replace(info, hooks=hooks))
        return sorted(out, key=lambda info: info.name)

    def targets(self) -> dict[str, Target]:
        """All registered targets by name (``device/backend``), available or not.

        A plugin whose ``register_targets`` raises (or registers something that is not a
        :class:`Target`) is skipped with a warning, and its targets with it.
        """
        while self._targets is None:
            self._targets = self._collect_targets()
        return self._targets

    def _collect_targets(self) -> dict[str, Target] | None:
        """Targets of every plugin, or None after skipping one whose ``register_targets`` failed."""
        found: dict[str, Target] = {}
        # lowest priority first, so the plugin pluggy calls first (tryfirst, or registered last) wins
        for impl in self.pm.hook.register_targets.get_hookimpls():
            plugin_name = impl.plugin_name

            def register(target: Target, _plugin: str = plugin_name) -> None:
                if not isinstance(target, Target):
                    raise PluginError(f"registered a non-Target: {target!r}")
                if target.name in found:
                    replaced = found[target.name].plugin
                    log.debug("target %s from %s replaces the one from %s", target.name, _plugin, replaced)
                found[target.name] = replace(target, plugin=_plugin)

            try:
                impl.function(register=register)
            except (Exception, SystemExit) as exc:
                detail = first_line(exc) if isinstance(exc, PluginError) else f"{type(exc).__name__}: {first_line(exc)}"
                self._skip(plugin_name, f"failed in register_targets: {detail}")
                return None
        return dict(sorted(found.items()))

    def target(self, name: str, *, require_available: bool = True) -> Target:
        """Look a target up by name; ``cpu`` alone means that device's first available backend."""
        targets = self.targets()
        if name not in targets and "/" not in name:
            matches = [t for t in targets.values() if t.device == name and t.available] or [
                t for t in targets.values() if t.device == name
            ]
            if matches:
                name = matches[0].name
        if name not in targets:
            known = ", ".join(targets) or "none"
            skipped = "".join(f"; plugin {n!r} was skipped: {i.error}" for n, i in sorted(self._broken.items()))
            raise UnknownTargetError(f"unknown target {name!r} (known targets: {known}{skipped})")
        target = targets[name]
        if require_available and not target.available:
            raise TargetUnavailableError(f"target {name} is unavailable here: {target.reason}")
        return target

    # -- calls -----------------------------------------------------------------------------------
    def call_first(self, hook_name: str, **kwargs: Any) -> tuple[Any, str]:
        """Call a first-result hook in pluggy's order; return (result, plugin name).

        Exceptions are re-raised as :class:`PluginError` naming the plugin that raised.
        """
        caller = getattr(self.pm.hook, hook_name)
        for impl in reversed(caller.get_hookimpls()):
            args = {k: kwargs[k] for k in impl.argnames if k in kwargs}
            try:
                result = impl.function(**args)
            except (Exception, SystemExit) as exc:  # sys.exit() in a plugin is its failure, not the tool's exit
                message = first_line(exc)
                raise PluginError(
                    f"plugin {impl.plugin_name!r} raised in {hook_name}: {type(exc).__name__}: {message}",
                    plugin=impl.plugin_name,
                ) from exc
            if inspect.isgenerator(result):
                raise PluginError(
                    f"plugin {impl.plugin_name!r} returned a generator from {hook_name}", plugin=impl.plugin_name
                )
            if result is not None:
                return result, impl.plugin_name
        target = kwargs.get("target")
        raise PluginError(f"no plugin implements {hook_name} for target {getattr(target, 'name', target)}")


def plugin_filter_from_env() -> list[str] | None:
    """Plugin names from ``ACCELNAS_PLUGINS`` (None when unset; [] when set but empty)."""
    value = os.environ.get(ENV_VAR)
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def load_registry(only: list[str] | None = None, *, use_env: bool = True) -> PluginRegistry:
    """A registry with the plugins installed here, filtered by ``only`` or ``ACCELNAS_PLUGINS``."""
    registry = PluginRegistry()
    if only is None and use_env:
        only = plugin_filter_from_env()
    registry.load_entry_points(only)
    registry.check_pending()
    return registry
