"""Call the event hooks (plain or async) of listening plugins without letting them hurt."""

from __future__ import annotations

import inspect
import logging
from typing import Any

import anyio
import pluggy

log = logging.getLogger("watchkeeper.events")

HOOK_TIMEOUT = 5.0


async def emit(manager: pluggy.PluginManager, hook_name: str, **kwargs: Any) -> None:
    """Call every implementation of an event hook; await async ones with a timeout.

    A failing or hanging listener is logged and skipped: it never stops the others, nor
    the daemon.
    """
    hook = getattr(manager.hook, hook_name)
    impls = hook.get_hookimpls()
    if not impls:
        return
    for impl in reversed(impls):  # pluggy's call order: last registered first
        args = {name: kwargs[name] for name in impl.argnames if name in kwargs}
        try:
            with anyio.fail_after(HOOK_TIMEOUT):
                if inspect.iscoroutinefunction(impl.function):
                    await impl.function(**args)
                else:
                    # a plain listener runs in a thread, so one that blocks cannot stall
                    # the event loop; it is abandoned when it overruns
                    await anyio.to_thread.run_sync(
                        lambda i=impl, a=args: i.function(**a), abandon_on_cancel=True
                    )
        except TimeoutError:
            log.warning(
                "event hook timed out",
                extra={"hook": hook_name, "plugin": impl.plugin_name, "timeout": HOOK_TIMEOUT},
            )
        except Exception:
            log.warning(
                "event hook failed",
                exc_info=True,
                extra={"hook": hook_name, "plugin": impl.plugin_name},
            )
