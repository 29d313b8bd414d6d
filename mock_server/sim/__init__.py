"""The simulated HostedAI: pools, GPUs, allocations, latency, usage. Pure Python, no HTTP.

See docs/simulation.md for the model and where its figures come from.
"""

from mock_server.sim.clock import Clock, ManualClock, ScaledClock
from mock_server.sim.model import Allocation, AllocationState, EndReason, Gpu, Pool
from mock_server.sim.simulator import AllocationSpec, InferencePlan, InferenceSpec, Simulator

__all__ = [
    "Allocation",
    "AllocationSpec",
    "AllocationState",
    "Clock",
    "EndReason",
    "Gpu",
    "InferencePlan",
    "InferenceSpec",
    "ManualClock",
    "Pool",
    "ScaledClock",
    "Simulator",
]
