"""The mock's control plane (`/_admin`), as the suites that need it talk to it: over HTTP, never by
importing the mock."""

from __future__ import annotations

from typing import Any

import aiohttp

from harness.suites.base import Target

_ADMIN_TIMEOUT = aiohttp.ClientTimeout(total=15)


class ControlPlaneError(Exception):
    """The mock's control plane did not do what the suite asked (one line)."""


class ControlPlane:
    def __init__(self, session: aiohttp.ClientSession, target: Target) -> None:
        self._session = session
        self._url = target.url.rstrip("/")
        self._headers = {"X-Admin-Token": target.admin_token or ""}

    async def call(
        self, method: str, path: str, *, body: Any = None, params: dict[str, Any] | None = None, expect: int = 200
    ) -> Any:
        try:
            async with self._session.request(
                method, f"{self._url}{path}", json=body, params=params, headers=self._headers, timeout=_ADMIN_TIMEOUT
            ) as resp:
                text = await resp.text()
                if resp.status != expect:
                    raise ControlPlaneError(f"{method} {path} answered {resp.status}: {text[:300]}")
                return await resp.json(content_type=None) if text else None
        except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
            raise ControlPlaneError(f"{method} {path} failed: {type(exc).__name__}: {exc}") from None

    async def scenarios(self) -> list[str]:
        answer = await self.call("GET", "/_admin/scenarios")
        return [str(s["name"]) for s in answer["scenarios"]]

    async def state(self) -> dict[str, Any]:
        answer: dict[str, Any] = await self.call("GET", "/_admin/state")
        return answer

    async def reset(self, seed: int) -> None:
        await self.call("POST", "/_admin/reset", body={"seed": seed})

    async def apply(self, scenario: str) -> list[dict[str, Any]]:
        answer = await self.call("POST", f"/_admin/scenarios/{scenario}", expect=201)
        return list(answer["rules"])

    async def advance(self, seconds: float) -> float:
        answer = await self.call("POST", "/_admin/clock/advance", body={"seconds": seconds})
        return float(answer["now_s"])

    async def journal(self, **params: str | int) -> list[dict[str, Any]]:
        answer = await self.call("GET", "/_admin/journal", params=params)
        return list(answer["entries"])

    async def leaks(self) -> list[dict[str, Any]]:
        answer = await self.call("GET", "/_admin/leaks")
        return list(answer["leaks"])
