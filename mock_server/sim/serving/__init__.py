"""The serving model: how GPUs really serve requests under load.

`engine.py` is one model server per allocation (continuous batching on a virtual clock, KV-cache budget,
chunked prefill, recompute preemption); `gpu.py` is one physical GPU shared by several engines (spatial,
time-sliced or hosted·ai temporal); `cost.py` is what a step costs, from a profile; `workload.py` is what
requests ask for (token counts, output lengths). Pure Python, on the simulator's clock.
"""
