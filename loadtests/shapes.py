"""Load shapes by name: add this file to `-f` and name one with `--shape`.

    locust -f loadtests/locustfile.py,loadtests/shapes.py --headless --shape spike -u 20 -t 2m --host URL

Locust uses a `LoadTestShape` whenever a loaded file defines one, so the shapes live in this file of
their own: without it, `-u`, `-r` and `-t` work as usual. `NamedShape` delegates to the shape named by
`--shape` (loadtests/_shapes.py: ramp, spike, step, soak), which reads `-u` as its peak, `-r` as its
spawn rate and `-t` as its duration, and ends the run by itself.
"""

from __future__ import annotations

import _runtime  # noqa: F401  (registers --shape and the other options)
from _shapes import ShapePlan, plan_shape
from locust import LoadTestShape


class NamedShape(LoadTestShape):  # the name loadtests/_runtime.py checks --shape against
    use_common_options = True

    def __init__(self) -> None:
        super().__init__()
        self._plan: ShapePlan | None = None

    def tick(self) -> tuple[int, float] | None:
        if self._plan is None:
            assert self.runner is not None
            options = self.runner.environment.parsed_options
            self._plan = plan_shape(options.shape, options.num_users, options.spawn_rate, options.run_time)
        return self._plan.tick(self.get_run_time())
