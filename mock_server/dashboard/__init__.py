"""The dashboard's server side, without HTTP: what the page at `/_admin/ui` shows, aggregated.

`snapshot.py` turns the simulator into one bounded document per push (pools aggregated, GPUs and
allocations paged, the journal's tail, fault rules), whatever the cluster's size; `latency.py` keeps
TTFT and ITL in a fixed-size ring of time bins. `static/` holds the page itself (plain HTML, CSS and
JavaScript: no build step, nothing fetched from elsewhere). `mock_server.api.dashboard` serves them.
"""
