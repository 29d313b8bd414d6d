"""The mock's HTTP layer (aiohttp): routes built from the contract, one middleware, thin handlers.

It parses a request (`inputs.py`), calls the simulator (`mock_server.sim`), and renders the answer
(`render.py`) or the error (`problems.py`, the one place problem+json is made). The control plane's
handlers are `admin.py`; what an injected fault does to the exchange is `faults.py`. Nothing in `sim`
imports this package.
"""
