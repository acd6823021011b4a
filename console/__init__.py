"""The operator console: camera tiles live, alerts, the key pool, and the JSON API behind them.

Layer: beside `workers` and `detection_edge`, below the CLI (`riskflow console run`); it reads
Redis through `activities.keypool` and `riskflow.names` and never imports dev tooling.
"""
