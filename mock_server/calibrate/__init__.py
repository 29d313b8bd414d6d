"""Fitting serving profiles to measured traffic: `hostedai-mock calibrate trace.jsonl -o profile.yaml`.

`observations` reads a drift trace (`hostedai-harness record`) into per-request timings by GPU type and
model; `predict` runs the simulator's own serving model on the same requests under a candidate profile;
`descent` is the coordinate descent that also fits the packaged profiles to published anchors
(`benchmarks/fidelity.py --fit`); `fit` puts them together, with a held-out check.
"""
