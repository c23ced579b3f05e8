"""What every part shares: records and their codec, exact conversions, config, database, Redis keys.

Owns the record schema, units, config models and the SQL schema/migrations. Must not import gatherer,
router, writers, dedup or simulator: they depend on core, never the other way round.
"""
