"""Observability: OpenTelemetry traces (`tracing`), the request id that ties a call's log lines,
span and audit record together (`requests`), JSON or text logs (`logs`) and Prometheus metrics
(`metrics`). It sits at the bottom of the layers, beside `config`, so every layer can report."""
