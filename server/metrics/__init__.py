"""Operations metrics: what one node exports at `/metrics` (docs/operations.md lists them).

* `server_metrics` — the registry and the metrics counted as things happen;
* `room_collector`, `media_collector`, `render_jobs` — read when scraped;
* `receiver_reports` — samples RTCP receiver reports into loss and RTT histograms;
* `redis_timing` — Redis command latency and errors;
* `labels`, `retained` — bounded label values, and totals that never go down;
* `exporter` — puts them together for the application.
"""

from server.metrics.exporter import MetricsExporter
from server.metrics.server_metrics import ServerMetrics

__all__ = ["MetricsExporter", "ServerMetrics"]
