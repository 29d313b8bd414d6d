"""Cells: N mock processes, each a region of the simulated provider, behind one control plane.

`topology` names the cells, `verdict` judges what they answered to one call, `rules` maps the
fan-out's fault ids to each cell's, `merge` builds the merged journal, leak report and state; all
four are HTTP-free. `app` is the aiohttp fan-out that presents the `/_admin` API once
(`hostedai-mock fanout`, docs/cells.md).
"""
