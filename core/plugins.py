"""Plugin discovery, target registry and attributed hook calls.

Plugins are found through the ``accelnas`` entry-point group (built-ins are declared there too).
``ACCELNAS_PLUGINS`` restricts loading to a comma-separated list of plugin names; an empty value
loads none. A plugin that cannot be used (it fails to import, pluggy refuses it, it has a hook
wrapper, its entry-point name is taken, it raises in ``register_targets``) is skipped and listed
with a one-line reason; the others keep working.
"""

from __future__ import annotations

import ast
import contextlib
import inspect
import logging
import os
import re
import sys
from dataclasses import dataclass, field, replace
from importlib import metadata
from typing import Any

import pluggy

from accelnas.core import hookspecs
from accelnas.core.errors import (
    PASS_THROUGH,
    PluginError,
    PluginLoadError,
    TargetUnavailableError,
    UnknownTargetError,
    describe,
    first_line,
)
from accelnas.core.records import Target

log = logging.getLogger(__name__)

ENTRY_POINT_GROUP = "accelnas"
ENV_VAR = "ACCELNAS_PLUGINS"
BUILTIN_DISTRIBUTION = "accelnas"


@dataclass
class PluginInfo:
    """What ``accelnas plugins`` shows for one plugin."""

    name: str
    module: str
    distribution: str | None
    version: str | None
    hooks: list[str] = field(default_factory=list)
    error: str | None = None  # why a plugin that is installed could not be loaded
    entry_point: str | None = None  # the entry point's value ("module" or "module:attr") it was loaded from


def _prints_to_stderr() -> contextlib.AbstractContextManager[Any]:
    """While plugin code loads or declares its targets: what it prints from Python goes to stderr,
    so it cannot garble what the command writes on stdout (``accelnas plugins --json``)."""
    return contextlib.redirect_stdout(sys.stderr)


def _label(info: PluginInfo) -> str:
    """``'name'``, or ``'name' of distribution version`` where the distribution is known."""
    return f"{info.name!r} of {info.distribution} {info.version}" if info.distribution else repr(info.name)


def _declared_by(ep: metadata.EntryPoint) -> str:
    dist = getattr(ep, "dist", None)
    return f"{dist.name} {dist.version}" if dist else ep.value


class PluginRegistry:
    """A pluggy ``PluginManager`` plus the targets the loaded plugins declared."""

    def __init__(self) -> None:
        self.pm = pluggy.PluginManager(hookspecs.PROJECT)
        self.pm.add_hookspecs(hookspecs)
        self._info: dict[str, PluginInfo] = {}
        self._broken: dict[str, PluginInfo] = {}
        self._targets: dict[str, Target] | None = None
        self._left_out: list[str] = []  # installed plugins the ``only`` filter did not load
        self._filter_source: str | None = None  # e.g. "ACCELNAS_PLUGINS=cpu_ort"
        self._warned: set[tuple[str, ...]] = set()
        self._declared: dict[str, set[str]] = {}  # target name -> plugins that declared it (a replaced one too)

    def _warn_once(self, key: tuple[str, ...], message: str, *args: Any) -> None:
        if key not in self._warned:
            self._warned.add(key)
            log.warning(message, *args)

    # -- loading ---------------------------------------------------------------------------------
    def load_entry_points(self, only: list[str] | None = None, *, source: str | None = None) -> None:
        """Register every plugin of the entry-point group (or only the named ones).

        ``source`` says where ``only`` came from (``ACCELNAS_PLUGINS=...``); an unknown target then
        names the installed plugins it left out. An entry-point name declared by two distributions
        is loaded from the built-in one, else from the first found; the other is listed as not loaded.
        """
        found = list(metadata.entry_points(group=ENTRY_POINT_GROUP))
        found.sort(key=lambda ep: getattr(getattr(ep, "dist", None), "name", None) != BUILTIN_DISTRIBUTION)
        eps: dict[str, metadata.EntryPoint] = {}
        clashes: list[tuple[metadata.EntryPoint, metadata.EntryPoint]] = []
        for ep in found:
            if ep.name in eps:
                clashes.append((ep, eps[ep.name]))
            else:
                eps[ep.name] = ep
        if only is not None:
            unknown = [name for name in only if name not in eps]
            if unknown:
                known = ", ".join(sorted(eps)) or "none installed"
                where = ENV_VAR if source else "the plugins asked for"
                raise PluginLoadError(f"unknown plugin {unknown[0]!r} in {where} (installed: {known})")
            self._left_out = sorted(name for name in eps if name not in only)
            self._filter_source = source
            eps = {name: eps[name] for name in only}
        for ep, kept in clashes:
            if ep.name in eps:
                dist = getattr(ep, "dist", None)
                error = f"entry-point name {ep.name!r} is also declared by {_declared_by(kept)}"
                log.warning("plugin %r of %s skipped: %s", ep.name, _declared_by(ep), error)
                info = PluginInfo(ep.name, ep.value, dist and dist.name, dist and dist.version, error=error)
                self._broken[f"{ep.name} ({_declared_by(ep)})"] = replace(info, entry_point=ep.value)
        for name, ep in sorted(eps.items()):
            dist = getattr(ep, "dist", None)
            dist_name, version = (dist.name, dist.version) if dist else (None, None)
            try:
                with _prints_to_stderr():
                    obj = ep.load()
            except PASS_THROUGH:
                raise
            except BaseException as exc:  # a broken third-party plugin must not take the tool down
                error = f"failed to import {ep.value}: {describe(exc)}"
                log.warning("plugin %r skipped: %s", name, error)
                self._broken[name] = PluginInfo(name, ep.value, dist_name, version, error=error, entry_point=ep.value)
                continue
            try:
                self.register(obj, name, distribution=dist_name, version=version, entry_point=ep.value)
            except PluginLoadError as exc:  # e.g. a hook with an argument its spec lacks
                log.warning("plugin %r skipped: %s", name, exc)
                self._broken[name] = PluginInfo(
                    name, ep.value, dist_name, version, error=first_line(exc), entry_point=ep.value
                )

    def register(
        self,
        obj: Any,
        name: str,
        *,
        distribution: str | None = None,
        version: str | None = None,
        entry_point: str | None = None,
    ) -> None:
        """Register one plugin object (module, class instance) under ``name``.

        ``entry_point`` is the value it was loaded from, so other processes load the same object.
        Raises :class:`PluginLoadError` (one line) for a plugin pluggy refuses or one with a hook wrapper.
        """
        if self.pm.get_plugin(name) is not None:
            raise PluginLoadError(f"a plugin named {name!r} is already registered")
        if obj is None:
            raise PluginLoadError(f"plugin {name!r} is None, not a module or object with hook implementations")
        try:
            marked = {attr: opts for attr in dir(obj) if (opts := self.pm.parse_hookimpl_opts(obj, attr))}
            wrappers = [attr for attr, opts in marked.items() if opts.get("wrapper") or opts.get("hookwrapper")]
            if wrappers:
                raise PluginLoadError(
                    f"plugin {name!r} is invalid: hook wrappers (wrapper=True, hookwrapper=True) are not supported, "
                    f"found one for {wrappers[0]!r}"
                )
            unknown = [  # check_pending() lets an optional hook through; accelnas has none, so it is a typo
                attr
                for attr, opts in marked.items()
                if opts.get("optionalhook") and self.pm.parse_hookspec_opts(hookspecs, attr) is None
            ]
            if unknown:
                raise PluginLoadError(f"plugin {name!r} is invalid: unknown hook {unknown[0]!r} (no such hook spec)")
            self.pm.register(obj, name=name)
        except PluginLoadError:
            raise
        except pluggy.PluginValidationError as exc:
            raise PluginLoadError(f"plugin {name!r} is invalid: {self._validation_reason(exc)}") from exc
        except ValueError as exc:
            raise PluginLoadError(f"plugin {name!r} is invalid: {first_line(exc)}") from exc
        except PASS_THROUGH:
            raise
        except BaseException as exc:  # e.g. a property of the plugin object that raises when pluggy looks
            raise PluginLoadError(f"plugin {name!r} is invalid: {describe(exc)}") from exc
        module = obj.__name__ if inspect.ismodule(obj) else getattr(obj, "__module__", type(obj).__module__)
        version = version or getattr(obj, "__version__", None)
        self._info[name] = PluginInfo(name, module, distribution, version, entry_point=entry_point)
        self._targets = None
        if not self.pm.get_hookcallers(obj):
            log.warning("plugin %r (%s) implements no hook: are its functions marked @accelnas.hookimpl?", name, module)

    def _validation_reason(self, exc: pluggy.PluginValidationError) -> str:
        """Pluggy's several-line refusal as one line."""
        text = str(exc)
        hook = re.search(r"hook '([^']+)'", text)
        extra = re.search(r"Argument\(s\) (\{.*?\}) are declared", text)
        if hook and extra:
            try:
                names = sorted(ast.literal_eval(extra.group(1)))
            except (ValueError, SyntaxError):
                names = [extra.group(1)]
            caller = getattr(self.pm.hook, hook.group(1), None)
            spec = getattr(getattr(caller, "spec", None), "argnames", None)
            known = f" (its arguments: {', '.join(spec)})" if spec is not None else ""
            listed = ", ".join(repr(n) for n in names)
            if len(names) == 1:
                return f"argument {listed} of hook {hook.group(1)!r} is not in its spec{known}"
            return f"arguments {listed} of hook {hook.group(1)!r} are not in its spec{known}"
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        reason = lines[-1] if lines else type(exc).__name__
        return f"hook {hook.group(1)!r}: {reason}" if hook else reason

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
    def implements(self, hook_name: str, target: Target | None = None) -> bool:
        """True when a loaded plugin implements hook ``hook_name``; for ``target``, one that may answer
        it: the target's own plugin, or a plugin not built in (any plugin may serve any target; the
        built-in ones serve only their own)."""
        impls = getattr(self.pm.hook, hook_name).get_hookimpls()
        if target is None or target.plugin is None:
            return bool(impls)
        return any(
            impl.plugin_name == target.plugin or self._distribution(impl.plugin_name) != BUILTIN_DISTRIBUTION
            for impl in impls
        )

    def _distribution(self, name: str) -> str | None:
        info = self._info.get(name)
        return info.distribution if info else None

    def identity(self, name: str) -> dict[str, str | None]:
        """``{"name", "distribution", "version"}`` of a loaded plugin, as stored with what it measured."""
        info = self._info.get(name)
        return {"name": name, "distribution": info.distribution if info else None,
                "version": info.version if info else None}  # fmt: skip

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
        fallback: set[str] = set()  # targets declared by a trylast implementation: meant to be replaced
        self._declared = {}
        # lowest priority first, so the plugin pluggy calls first (tryfirst, or registered last) wins
        for impl in self.pm.hook.register_targets.get_hookimpls():
            plugin_name = impl.plugin_name

            def register(target: Target, _plugin: str = plugin_name, _impl: Any = impl) -> None:
                if not isinstance(target, Target):
                    raise PluginError(f"registered a non-Target: {target!r}")
                replaced = found[target.name].plugin if target.name in found else None
                if replaced == _plugin:
                    log.warning("plugin %r registers target %s twice; the last declaration is kept", _plugin,
                                target.name)  # fmt: skip
                elif replaced is not None:
                    if _impl.tryfirst or target.name in fallback:
                        log.debug("target %s from %s replaces the one from %s", target.name, _plugin, replaced)
                    else:
                        log.warning(
                            "target %s of plugin %r replaces the one of plugin %r; mark the hooks of the one meant "
                            "to win tryfirst=True, or the choice depends on the order plugins load in",
                            target.name,
                            _plugin,
                            replaced,
                        )
                self._declared.setdefault(target.name, set()).add(_plugin)
                fallback.discard(target.name)
                if _impl.trylast:
                    fallback.add(target.name)
                found[target.name] = replace(target, plugin=_plugin)

            try:
                with _prints_to_stderr():
                    impl.function(register=register)
            except PASS_THROUGH:
                raise
            except BaseException as exc:
                detail = first_line(exc) if isinstance(exc, PluginError) else describe(exc)
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
            skipped = "".join(f"; plugin {_label(i)} was skipped: {i.error}" for _, i in sorted(self._broken.items()))
            if self._filter_source and self._left_out:
                skipped += f"; {self._filter_source} left out the installed plugins {', '.join(self._left_out)}"
            raise UnknownTargetError(f"unknown target {name!r} (known targets: {known}{skipped})")
        target = targets[name]
        if require_available and not target.available:
            raise TargetUnavailableError(f"target {name} is unavailable here: {target.reason}")
        return target

    # -- calls -----------------------------------------------------------------------------------
    def call_first(self, hook_name: str, **kwargs: Any) -> tuple[Any, str]:
        """Call a first-result hook; return (result, plugin name).

        The order: ``tryfirst`` implementations (pluggy's order among them), then those of the plugin
        that registered the target, then the others in pluggy's order. So a plugin that answers for
        every target (it forgot to return ``None`` for the ones it does not serve) cannot take over
        another plugin's target; when it answers one the owner leaves unanswered, a warning names it.
        Exceptions (``sys.exit()`` and ``asyncio.CancelledError`` included, not ``KeyboardInterrupt``)
        are re-raised as :class:`PluginError` naming the plugin that raised. When no plugin answers,
        the error names the plugin that registered the target.
        """
        caller = getattr(self.pm.hook, hook_name)
        target = kwargs.get("target")
        owner = getattr(target, "plugin", None)
        impls = list(reversed(caller.get_hookimpls()))
        impls.sort(key=lambda i: 0 if i.tryfirst else 1 if i.plugin_name == owner else 2)  # stable
        for impl in impls:
            args = {k: kwargs[k] for k in impl.argnames if k in kwargs}
            try:
                result = impl.function(**args)
            except PASS_THROUGH:
                raise
            except TargetUnavailableError as exc:  # the device is gone: the campaign stops, nothing is stored
                raise TargetUnavailableError(f"plugin {impl.plugin_name!r} in {hook_name}: {first_line(exc)}") from exc
            except BaseException as exc:  # sys.exit() in a plugin is its failure, not the tool's exit
                raise PluginError(
                    f"plugin {impl.plugin_name!r} raised in {hook_name}: {describe(exc)}", plugin=impl.plugin_name
                ) from exc
            if inspect.isgenerator(result):
                raise PluginError(
                    f"plugin {impl.plugin_name!r} returned a generator from {hook_name}", plugin=impl.plugin_name
                )
            if result is not None:
                declared = self._declared.get(getattr(target, "name", ""), set()) | {owner}  # a fallback's too
                if owner is not None and impl.plugin_name not in declared and not impl.tryfirst:
                    self._warn_once(
                        (impl.plugin_name, hook_name, owner),
                        "plugin %r answered %s for target %s of plugin %r without tryfirst=True; if it means "
                        "to replace that target's implementation, mark its hooks tryfirst, else return None "
                        "for targets it does not serve",
                        impl.plugin_name, hook_name, getattr(target, "name", target), owner,
                    )  # fmt: skip
                return result, impl.plugin_name
        declared = f" (declared by plugin {owner!r})" if owner else ""
        if impls:  # implemented, but every implementation returned None
            names = ", ".join(dict.fromkeys(repr(i.plugin_name) for i in impls))
            raise PluginError(
                f"no plugin answered {hook_name} for target {getattr(target, 'name', target)}{declared}: "
                f"{names} returned None",
                plugin=owner,
            )
        raise PluginError(
            f"no plugin implements {hook_name} for target {getattr(target, 'name', target)}{declared}", plugin=owner
        )


def plugin_filter_from_env() -> list[str] | None:
    """Plugin names from ``ACCELNAS_PLUGINS`` (None when unset; [] when set but empty)."""
    value = os.environ.get(ENV_VAR)
    if value is None:
        return None
    return [part.strip() for part in value.split(",") if part.strip()]


def load_registry(only: list[str] | None = None, *, use_env: bool = True) -> PluginRegistry:
    """A registry with the plugins installed here, filtered by ``only`` or ``ACCELNAS_PLUGINS``."""
    if isinstance(only, str):  # one name would be read as its letters
        raise TypeError(f"only must be a list of plugin names, not the string {only!r}")
    registry = PluginRegistry()
    source = None
    if only is None and use_env:
        only = plugin_filter_from_env()
        source = f"{ENV_VAR}={os.environ.get(ENV_VAR, '')}" if only is not None else None
    registry.load_entry_points(only, source=source)
    registry.check_pending()
    return registry
