"""The deduplicator: RQ jobs merging the gatherer databases into production exactly once; Parquet export.

Owns sync cursors, production upserts, coverage gaps, export watermarks and the lake layout.
Must not write to a gatherer database or to Redis streams (it only reads the former).
"""
