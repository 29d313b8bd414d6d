"""The contract suite's proxy between schemathesis and the target: it forwards every request as sent, so
whatever answer the client sees is the target's, never the proxy's own."""

from __future__ import annotations

import aiohttp

from harness.suites.contract.proxy import BudgetProxy
from harness.target import Target
from mock_server import MockHostedAI


async def test_a_path_with_an_encoded_newline_reaches_the_target() -> None:
    # schemathesis generates such ids; the proxy once answered them with aiohttp's own text/plain 404,
    # which the suite then reported as the target's undocumented answer (a false alarm on a correct mock).
    async with MockHostedAI(clock="manual") as mock:
        target = Target(url=mock.url, api_key=mock.api_key, label=mock.url)
        async with BudgetProxy(target, budget=None) as proxy, aiohttp.ClientSession() as http:
            headers = {"Authorization": f"Bearer {mock.api_key}"}
            for path in ("/v1/allocate/%0ADTD%C2%A4", "/v1/allocate/a%0D%0Ab", "/v1/allocate/%0A"):
                async with http.delete(proxy.url + path, headers=headers) as answer:
                    assert answer.status == 422, path
                    assert answer.content_type == "application/problem+json"
                    assert answer.headers.get("X-Request-Id")
