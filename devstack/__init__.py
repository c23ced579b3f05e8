"""The platform's local stack: the simulator, gatherers, writers, the dedup worker and the lake on one machine.
Owns creating throw-away databases, writing configs, starting, killing and draining processes; used by
`kalshi-data demo`, the end-to-end tests and bench_pipeline. Must not hold platform logic of its own.
"""

from devstack._backfill import BackfillProcess
from devstack._pipeline import Pipeline, PipelineOptions
from devstack._services import db_config, free_port, fresh_database, simulator_process
from devstack._synthetic import fill_production_day

__all__ = [
    "BackfillProcess",
    "Pipeline",
    "PipelineOptions",
    "db_config",
    "fill_production_day",
    "free_port",
    "fresh_database",
    "simulator_process",
]
