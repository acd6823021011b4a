"""Development and test infrastructure, never imported by production code.

`localstack/` runs the embedded services (Temporal, a Kafka-protocol broker, Valkey, the local
DashScope-compatible server); `fake_dashscope/` is that server; `simulate` makes scripted
camera scenes. Entry points, tests and benchmarks import it; the kernel, activities,
workflows, workers and the edge never do (an import-linter contract checks it).
"""
