"""The state store: one schema, one boundary to SQLite or PostgreSQL.

database   Store: open, migrate, transactions, meta and article rows; driver errors -> StoreError
schema     every table, declared once in one MetaData (created by migrations)
migrations the named, ordered DDL history
timestamps the one datetime <-> text codec
outbox     editions and deliveries (claims, leases, compare-and-set updates)
subscribers, runs, lock, jobstore
           the subscriber list; last job runs; the `digest run` lock; APScheduler's job store
"""
