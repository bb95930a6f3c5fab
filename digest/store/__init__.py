"""The state store: one schema, one boundary to SQLite or PostgreSQL.

database   Store: open, migrate, transactions, meta and article rows; driver errors -> StoreError
schema     every table, declared once in one MetaData (created by migrations)
migrations the named, ordered DDL history
timestamps the one datetime <-> text codec
outbox     editions: made, resumed, finished (an Outbox also claims and settles their deliveries)
claims     a sender's claims on deliveries: leases, compare-and-set updates, settling
recorder   "sent" marks written in groups (group commit) on a connection of its own
owners     who holds a claim, and whether that process is still running
edition_reports  how editions went, read-only: history, problems, progress
subscribers, runs, lock, jobstore
           the subscriber list; last job runs; the `digest run` lock; APScheduler's job store
"""
