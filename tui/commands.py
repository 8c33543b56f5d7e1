"""Command palette provider fed by the action registry (same actions as the keys, footer and help)."""

from __future__ import annotations

from functools import partial

from textual.command import DiscoveryHit, Hit, Hits, Provider

from moe_tui.tui.actions import ACTIONS, ActionSpec, display_keys, effective_keys


def _split(action: str) -> tuple[str, tuple]:
    name, _, rest = action.partition("(")
    return name, ()


class RegistryProvider(Provider):
    def _available(self) -> list[tuple[ActionSpec, object]]:
        screen = self.screen
        scope = getattr(screen, "SCOPE", None)
        keymap = self.app.settings.keymap
        out = []
        for spec in ACTIONS:
            if not spec.palette:
                continue
            if spec.scope == "app":
                target = self.app
            elif spec.scope == scope:
                target = screen
            else:
                continue
            name, params = _split(spec.action)
            if "." not in name:
                try:
                    ok = target.check_action(name, params)
                except Exception:  # noqa: BLE001
                    ok = True
                if not ok:
                    continue
            out.append((spec, target, display_keys(effective_keys(spec, keymap))))
        return out

    async def discover(self) -> Hits:
        for spec, target, keys in self._available():
            yield DiscoveryHit(spec.palette_name, partial(self.app.run_action, spec.action, target),
                               help=f"{spec.help or spec.description}  ({keys})")

    async def search(self, query: str) -> Hits:
        matcher = self.matcher(query)
        for spec, target, keys in self._available():
            score = matcher.match(spec.palette_name)
            if score > 0:
                yield Hit(score, matcher.highlight(spec.palette_name),
                          partial(self.app.run_action, spec.action, target),
                          help=f"{spec.help or spec.description}  ({keys})")
