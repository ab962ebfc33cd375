"""Prometheus metrics (optional ``metrics`` extra: ``pip install zerofeed[metrics]``).

A :class:`MetricsServer` serves one registry over HTTP; its collector reads the live figures at
each scrape, so nothing is counted twice and nothing global is kept. Metric names are listed in
``docs/metrics.md``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from zerofeed.common.errors import ConfigError

__all__ = ["Metric", "MetricsServer"]

# (name, kind, help, labels -> value) as produced by a source function
Metric = tuple[str, str, str, dict[tuple[tuple[str, str], ...], float]]


class MetricsServer:
    """An HTTP endpoint at ``port`` serving the metrics ``source()`` returns at each scrape."""

    def __init__(
        self, port: int, source: Callable[[], list[Metric]], *, addr: str = "0.0.0.0"
    ) -> None:
        try:
            from prometheus_client import CollectorRegistry, start_http_server
        except ImportError:
            raise ConfigError(
                "metrics need the prometheus-client package: pip install 'zerofeed[metrics]'"
            ) from None
        registry = CollectorRegistry()
        registry.register(_Collector(source))
        try:
            self._server, self._thread = start_http_server(port, addr=addr, registry=registry)
        except OSError as exc:
            raise ConfigError(f"cannot serve metrics on port {port}: {exc}") from None
        self.port = self._server.server_port

    def close(self) -> None:
        """Stop serving (idempotent)."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


class _Collector:
    def __init__(self, source: Callable[[], list[Metric]]) -> None:
        self._source = source

    def collect(self) -> Iterator[Any]:
        from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

        for name, kind, help_text, samples in self._source():
            label_names = [key for key, _ in next(iter(samples), ())]
            family_type = CounterMetricFamily if kind == "counter" else GaugeMetricFamily
            family = family_type(name, help_text, labels=label_names)
            for labels, value in samples.items():
                family.add_metric([v for _, v in labels], value)
            yield family
