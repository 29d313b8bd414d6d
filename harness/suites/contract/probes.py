"""The behaviour probes: a short scripted conversation with the target, recorded as evidence.

A schema says what an answer may look like; it cannot say that a release gives capacity back, that a
second release is still a 204, that a list's pages hold every allocation once, or that the usage bill
adds up. These probes ask exactly that, on any target, within the run's allocation budget (at most
`ALLOCATIONS` + 2, every one released here or by the label sweep, plus one released at once should a
server let the second tenant allocate in another tier's pool), and record every exchange. The
judging is `judges.py`: pure functions over the `Evidence` gathered here.

Each request carries its own `X-Request-Id` (some deliberately none) and a label; the curl command of
any exchange can be printed with the key masked as `$VAR`.
"""

from __future__ import annotations

import asyncio
import json
import shlex
import time
import urllib.parse
import uuid
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pydantic

from harness.connector import HostedAiConnector, HostedAiError
from harness.control_plane import ControlPlane, ControlPlaneError
from harness.suites.base import RATE_LIMIT_TRIES, retry_after_wait_s
from harness.suites.contract.proxy import RetryLater
from harness.suites.shapes import Shape
from harness.target import Target

ALLOCATIONS = 3
"""What the probes allocate: `a` (inferences, usage, release checks), `b` and `c` (lists)."""
RUN_LABEL = "harness_probe"
BURST = 12
"""Concurrent reads sent at once to see how the target rate-limits (a 429 must carry Retry-After)."""
_TIMEOUT = aiohttp.ClientTimeout(total=60)


@dataclass(slots=True)
class Exchange:
    label: str
    method: str
    path: str
    sent_headers: dict[str, str]
    sent_body: bytes | None = None
    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    """Lower-case names."""
    text: str = ""
    error: str | None = None

    @property
    def content_type(self) -> str:
        return self.headers.get("content-type", "").split(";")[0].strip().lower()

    @property
    def json(self) -> Any:
        try:
            return json.loads(self.text)
        except ValueError:
            return None

    @property
    def sent_request_id(self) -> str | None:
        return self.sent_headers.get("X-Request-Id")

    def describe(self) -> str:
        answer = self.error or f"{self.status} {self.content_type or '(no content type)'}"
        return f"{self.method} {self.path} → {answer}"

    def curl(self, base_url: str) -> str:
        """The request as a curl command; the key stays a shell variable (`$VAR`, double-quoted)."""
        parts = [shlex.join(["curl", "-s", "-i", "-X", self.method, f"{base_url}{self.path}"])]
        for name, value in self.sent_headers.items():
            parts.append(f'-H "{name}: {value}"' if name == "Authorization" else shlex.join(["-H", f"{name}: {value}"]))
        if self.sent_body is not None:
            parts.append(shlex.join(["--data-binary", self.sent_body.decode(errors="replace")]))
        return " ".join(parts)


def _retry_after_s(exchange: Exchange) -> float | None:
    try:
        return retry_after_wait_s(float(exchange.headers.get("retry-after", "")))
    except ValueError:
        return None


def sse_events(text: str) -> list[tuple[str, Any]]:
    """The (event, data) pairs of a text/event-stream body; data that is not JSON is kept as text."""
    events: list[tuple[str, Any]] = []
    name, data = "message", list[str]()
    for line in [*text.splitlines(), ""]:
        if not line:
            if data:
                raw = "\n".join(data)
                try:
                    events.append((name, json.loads(raw)))
                except ValueError:
                    events.append((name, raw))
            name, data = "message", list[str]()
        elif line.startswith("event:"):
            name = line[len("event:") :].strip()
        elif line.startswith("data:"):
            data.append(line[len("data:") :].strip())
    return events


@dataclass(slots=True)
class Evidence:
    base_url: str
    key_env: str
    owned: bool
    """A mock started for this run alone: its pools hold only the probes' work."""
    idempotency_key: bool
    shape: Shape | None = None
    exchanges: list[Exchange] = field(default_factory=list)
    allocated: dict[str, str] = field(default_factory=dict)
    """allocation_id -> the label of the probe that made it."""
    not_gathered: dict[str, str] = field(default_factory=dict)
    """Evidence that could not be gathered, by topic, and why (a small budget, no second key...)."""
    retry_later: list[RetryLater] = field(default_factory=list)
    """429s and 503s seen by the proxy during the schemathesis run."""

    def get(self, label: str) -> Exchange | None:
        found = [e for e in self.exchanges if e.label == label]
        return found[-1] if found else None

    def all(self, prefix: str) -> list[Exchange]:
        """The exchanges of a probe family (`allocate` → `allocate:a`, `allocate:b`...), without the
        429s that were waited out and sent again."""
        return [
            e
            for e in self.exchanges
            if (e.label == prefix or e.label.startswith(prefix + ":")) and not e.label.endswith(":429")
        ]


class Prober:
    """Sends one request, records it. The key is masked in what is recorded."""

    def __init__(self, session: aiohttp.ClientSession, target: Target, evidence: Evidence) -> None:
        self._session = session
        self._target = target
        self.evidence = evidence

    async def send(
        self,
        label: str,
        method: str,
        path: str,
        *,
        body: Any = None,
        raw: bytes | None = None,
        content_type: str = "application/json",
        key: str | None = None,
        key_env: str | None = None,
        request_id: bool = True,
        headers: dict[str, str] | None = None,
        patient: bool = True,
    ) -> Exchange:
        """Send once; `patient`: a 429 with a Retry-After is waited out and sent again (a few times, each
        429 kept as evidence under `<label>:429`), as a client of a rate-limited service must."""
        for _ in range(RATE_LIMIT_TRIES):
            exchange = await self._send_once(
                label, method, path, body, raw, content_type, key, key_env, request_id, headers
            )
            wait = _retry_after_s(exchange)
            if not patient or exchange.status != 429 or wait is None:
                return exchange
            exchange.label = f"{label}:429"
            await asyncio.sleep(wait)
        return exchange

    async def _send_once(
        self,
        label: str,
        method: str,
        path: str,
        body: Any,
        raw: bytes | None,
        content_type: str,
        key: str | None,
        key_env: str | None,
        request_id: bool,
        headers: dict[str, str] | None,
    ) -> Exchange:
        key = self._target.api_key if key is None else key
        key_env = key_env or self.evidence.key_env
        sent = {"Authorization": f"Bearer {key}", **(headers or {})}
        if request_id:
            sent["X-Request-Id"] = f"harness-{label.replace(':', '-')}-{uuid.uuid4().hex[:12]}"
        data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
        if data is not None:
            sent["Content-Type"] = content_type
        shown = {**sent, "Authorization": f"Bearer ${key_env}"}
        exchange = Exchange(label, method, path, shown, data)
        try:
            async with self._session.request(
                method, f"{self._target.url}{path}", data=data, headers=sent, timeout=_TIMEOUT, allow_redirects=False
            ) as resp:
                exchange.status = resp.status
                exchange.headers = {k.lower(): v for k, v in resp.headers.items()}
                exchange.text = await resp.text(errors="replace")
        except (aiohttp.ClientError, TimeoutError) as exc:
            exchange.error = f"{type(exc).__name__}: {exc}"
        self.evidence.exchanges.append(exchange)
        return exchange


async def gather(
    target: Target,
    connector: HostedAiConnector,
    shape: Shape,
    *,
    budget: int,
    idempotency_key: bool,
    owned: bool,
    session: aiohttp.ClientSession,
) -> Evidence:
    """Run the probes; every allocation they made is released before this returns."""
    evidence = Evidence(target.url, target.api_key_env, owned=owned, idempotency_key=idempotency_key, shape=shape)
    prober = Prober(session, target, evidence)
    run = uuid.uuid4().hex[:16]
    if target.second_api_key is None:
        evidence.not_gathered["isolation"] = "the target has no second tenant's key (--second-api-key-env)"
        evidence.not_gathered["tiers"] = evidence.not_gathered["isolation"]
    try:
        await _errors(prober, shape)
        await _burst(prober)
        if target.second_api_key is not None:
            await _tiers(prober, target.second_api_key, run)
        if budget < ALLOCATIONS + (2 if idempotency_key else 0):
            reason = f"the probes need {ALLOCATIONS + 2} allocations and the budget (--max-allocations) is {budget}"
            evidence.not_gathered["allocations"] = reason
        else:
            await _lifecycle(prober, target, shape, run, idempotency_key)
        if owned and target.admin_token is not None:
            await _provoked_retry_later(prober, target, session)
    finally:
        await _release_everything(prober, connector, run)
    if evidence.get("pool:before") is not None:
        await prober.send("pool:after_release", "GET", f"/v1/pools/{shape.pool_id}")
    return evidence


def _allocate_body(shape: Shape, run: str, probe: str, **changes: Any) -> dict[str, Any]:
    requirements: dict[str, Any] = {
        "tflops": shape.requirements.tflops,
        "vram_mb": shape.requirements.vram_mb,
        "model": shape.requirements.model,
    }
    requirements.update(changes.pop("requirements", {}))
    return {
        "pool_id": shape.pool_id,
        "requirements": requirements,
        "overcommit": True,
        "labels": {RUN_LABEL: run, "probe": probe},
        **changes,
    }


async def _errors(prober: Prober, shape: Shape) -> None:
    """Answers that must be problem+json with their documented code (nothing here allocates)."""
    await prober.send("error:not_found", "GET", f"/v1/allocate/alloc_harness{uuid.uuid4().hex[:12]}")
    await prober.send("error:unauthorized", "GET", "/v1/pools", key=f"wrong-{uuid.uuid4().hex}", key_env="WRONG_KEY")
    await prober.send("error:invalid_request", "POST", "/v1/allocate", raw=b'{"pool_id": ')
    await prober.send(
        "error:unsupported_media_type", "POST", "/v1/inference", raw=b"prompt=hi", content_type="text/plain"
    )
    await prober.send(
        "error:validation_failed",
        "POST",
        "/v1/allocate",
        body={"pool_id": shape.pool_id, "requirements": {"tflops": "thirty", "vram_mb": 2048, "model": "x"}},
    )
    # Edge numbers the schema refuses: above a maximum, a fraction where an integer is due.
    huge = _allocate_body(shape, "none", "huge", requirements={"tflops": 1e308})
    await prober.send("edge:huge_tflops", "POST", "/v1/allocate", body=huge)
    await prober.send(
        "edge:tiny_max_tokens",
        "POST",
        "/v1/inference",
        body={"allocation_id": "alloc_harness0", "prompt": "hi", "max_tokens": 1e-300},
    )
    await prober.send("request_id:generated", "GET", "/v1/models", request_id=False)


async def _burst(prober: Prober) -> None:
    """A handful of reads at once: a target that rate-limits shows how (every 429 with Retry-After)."""
    await asyncio.gather(*(prober.send(f"burst:{i}", "GET", "/v1/pools", patient=False) for i in range(BURST)))


async def _lifecycle(prober: Prober, target: Target, shape: Shape, run: str, idempotency_key: bool) -> None:
    pool = f"/v1/pools/{shape.pool_id}"
    evidence = prober.evidence
    await prober.send("pool:before", "GET", pool)
    key = uuid.uuid4().hex
    body_a = _allocate_body(shape, run, "a")
    a = await prober.send("allocate:a", "POST", "/v1/allocate", body=body_a, headers={"Idempotency-Key": key})
    a_id = _remember(evidence, a)
    await prober.send("pool:after_allocate", "GET", pool)
    if idempotency_key:
        replay = await prober.send(
            "idempotency:replay", "POST", "/v1/allocate", body=body_a, headers={"Idempotency-Key": key}
        )
        _remember(evidence, replay)
        other = _allocate_body(shape, run, "a-changed")
        conflict = await prober.send(
            "idempotency:conflict", "POST", "/v1/allocate", body=other, headers={"Idempotency-Key": key}
        )
        _remember(evidence, conflict)
    # An integer-valued float where the contract says integer: a number like any other.
    b_body = _allocate_body(shape, run, "b", requirements={"vram_mb": float(shape.requirements.vram_mb)})
    _remember(evidence, await prober.send("allocate:b", "POST", "/v1/allocate", body=b_body))
    _remember(evidence, await prober.send("allocate:c", "POST", "/v1/allocate", body=_allocate_body(shape, run, "c")))
    if a_id is not None:
        await _inferences(prober, a_id)
    c_id = next((i for i, probe in evidence.allocated.items() if probe == "allocate:c"), None)
    if c_id is not None:
        await prober.send("release:c", "DELETE", f"/v1/allocate/{c_id}")
    await _listings(prober, run)
    if target.second_api_key is not None and a_id is not None:
        await _foreign(prober, target, a_id, run)
    await _usage(prober)
    if a_id is not None:
        await prober.send("release:a", "DELETE", f"/v1/allocate/{a_id}")
        await prober.send("release:a_again", "DELETE", f"/v1/allocate/{a_id}")
        await prober.send("get:a_released", "GET", f"/v1/allocate/{a_id}")
        await prober.send(
            "use_after_release", "POST", "/v1/inference", body={"allocation_id": a_id, "prompt": "hi", "max_tokens": 2}
        )


USAGE_PAGES = 20
"""Pages of `/v1/usage` followed at most (`usage`, `usage:page2`, ...): the bill is judged whole."""


async def _usage(prober: Prober) -> None:
    page = await prober.send("usage", "GET", "/v1/usage")
    for number in range(2, USAGE_PAGES + 1):
        body = page.json
        cursor = body.get("next_cursor") if isinstance(body, dict) else None
        if not isinstance(cursor, str) or not cursor:
            return
        page = await prober.send(f"usage:page{number}", "GET", f"/v1/usage?cursor={urllib.parse.quote(cursor)}")


def _remember(evidence: Evidence, exchange: Exchange) -> str | None:
    body = exchange.json
    status = exchange.status or 0
    if 200 <= status < 300 and isinstance(body, dict) and isinstance(body.get("allocation_id"), str):
        evidence.allocated.setdefault(body["allocation_id"], exchange.label)
        return str(body["allocation_id"])
    return None


async def _inferences(prober: Prober, allocation_id: str) -> None:
    await prober.send(
        "infer:plain",
        "POST",
        "/v1/inference",
        body={"allocation_id": allocation_id, "prompt": "Say hello.", "max_tokens": 3},
    )
    await prober.send(
        "infer:float_max_tokens",
        "POST",
        "/v1/inference",
        body={"allocation_id": allocation_id, "prompt": "Count to ten.", "max_tokens": 2.0},
    )
    await prober.send(
        "infer:stream",
        "POST",
        "/v1/inference",
        body={"allocation_id": allocation_id, "prompt": "List three colours.", "max_tokens": 4, "stream": True},
    )


async def _listings(prober: Prober, run: str) -> None:
    """Every allocation of the probes, one per page, following the cursor; then the filters."""
    label = f"{RUN_LABEL}={run}"
    cursor: str | None = None
    for page in range(ALLOCATIONS + 6):
        query = f"?label={label}&limit=1" + (f"&cursor={cursor}" if cursor else "")
        answer = await prober.send(f"list:page:{page}", "GET", f"/v1/allocate{query}")
        body = answer.json
        cursor = body.get("next_cursor") if isinstance(body, dict) else None
        if not cursor:
            break
    await prober.send("list:active", "GET", f"/v1/allocate?label={label}&state=active&limit=100")
    await prober.send("list:released", "GET", f"/v1/allocate?label={label}&state=released&limit=100")
    await prober.send("list:two_labels", "GET", f"/v1/allocate?label={label}&label=probe=a&limit=100")


def _pool_ids(exchange: Exchange) -> set[str]:
    body = exchange.json
    pools = body.get("pools") if isinstance(body, dict) else None
    return {p["pool_id"] for p in pools or [] if isinstance(p, dict) and isinstance(p.get("pool_id"), str)}


async def _tiers(prober: Prober, second_key: str, run: str) -> None:
    """Pool segregation: the second tenant asks for a pool only our key lists (another customer tier's).
    Nothing should be allocated; if something is, it is released on the spot with that tenant's key."""
    other = {"key": second_key, "key_env": "SECOND_API_KEY"}
    ours = _pool_ids(await prober.send("tier:pools", "GET", "/v1/pools"))
    theirs = _pool_ids(await prober.send("tier:foreign_pools", "GET", "/v1/pools", **other))  # type: ignore[arg-type]
    models = (await prober.send("tier:models", "GET", "/v1/models")).json
    outside = sorted(ours - theirs)
    served = [
        m
        for m in (models.get("models") or [] if isinstance(models, dict) else [])
        if isinstance(m, dict) and outside and outside[0] in (m.get("pools") or [])
    ]
    if not outside or not served:
        prober.evidence.not_gathered["tiers"] = "both tenants' keys list the same pools: no tier boundary to cross"
        return
    pool, model = outside[0], min(served, key=lambda m: (m.get("vram_mb", 0), m.get("tflops", 0)))
    body = {
        "pool_id": pool,
        "requirements": {"tflops": model.get("tflops"), "vram_mb": model.get("vram_mb"), "model": model.get("model")},
        "labels": {RUN_LABEL: run, "probe": "tier"},
    }
    answer = await prober.send("tier:foreign_allocate", "POST", "/v1/allocate", body=body, **other)  # type: ignore[arg-type]
    made = answer.json.get("allocation_id") if isinstance(answer.json, dict) and answer.status == 201 else None
    if isinstance(made, str):
        await prober.send("tier:cleanup", "DELETE", f"/v1/allocate/{made}", **other)  # type: ignore[arg-type]
    await prober.send("tier:foreign_get_pool", "GET", f"/v1/pools/{pool}", **other)  # type: ignore[arg-type]


async def _foreign(prober: Prober, target: Target, allocation_id: str, run: str) -> None:
    other = {"key": target.second_api_key, "key_env": "SECOND_API_KEY"}
    await prober.send("foreign:get", "GET", f"/v1/allocate/{allocation_id}", **other)  # type: ignore[arg-type]
    await prober.send(
        "foreign:inference",
        "POST",
        "/v1/inference",
        body={"allocation_id": allocation_id, "prompt": "hi", "max_tokens": 1},
        **other,  # type: ignore[arg-type]
    )
    await prober.send("foreign:release", "DELETE", f"/v1/allocate/{allocation_id}", **other)  # type: ignore[arg-type]
    await prober.send("foreign:list", "GET", f"/v1/allocate?label={RUN_LABEL}={run}&limit=100", **other)  # type: ignore[arg-type]
    await prober.send("foreign:after", "GET", f"/v1/allocate/{allocation_id}")


async def _provoked_retry_later(prober: Prober, target: Target, session: aiohttp.ClientSession) -> None:
    """On a mock the run owns: one injected 503 and one rate-limited 429, to see their Retry-After."""
    admin = ControlPlane(target.url, target.admin_token or "", session=session)
    try:
        await admin.add_fault(
            {
                "match": {"operation": "models"},
                "times": 1,
                "action": {"type": "error", "status": 503, "code": "unavailable"},
            }
        )
        await admin.add_fault(
            {"match": {"operation": "models"}, "action": {"type": "rate_limit", "rps": 0.001, "burst": 1}}
        )
    except ControlPlaneError as exc:
        prober.evidence.not_gathered["retry_after"] = f"could not inject a 503 and a 429: {exc}"
        return
    try:
        for i in range(3):
            # Not patient: the 429 is what is looked at here, and waiting out its (long) Retry-After would
            # only cost the run minutes.
            await prober.send(f"provoked:{i}", "GET", "/v1/models", patient=False)
    finally:
        await admin.clear_faults()


async def _release_everything(prober: Prober, connector: HostedAiConnector, run: str) -> None:
    """Release what the probes hold: by id, then by label for anything an answer did not name."""
    for allocation_id in list(prober.evidence.allocated):
        await prober.send("cleanup", "DELETE", f"/v1/allocate/{allocation_id}")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        try:
            left = await connector.list_allocations(state=["active"], labels={RUN_LABEL: run})
        except (HostedAiError, pydantic.ValidationError):
            return  # a leak left here is what the leak check after the run reports
        if not left:
            return
        for allocation in left:
            await prober.send("cleanup", "DELETE", f"/v1/allocate/{allocation.allocation_id}")
