"""`cri-proxy report`: one self-contained HTML page that aggregates a recording (rates,
latency, problems, relists, pod waterfalls, the slowest calls and the top errors). Reads only
through the store; builds plain data (series, pods, calls, problems), which page.py embeds
and the inline script (assets.py) draws as SVG in the browser."""
