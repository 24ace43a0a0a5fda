"""The fleet's server side: the collector that stores every device's turn traces and status in a
database (SQLite or PostgreSQL), serves Prometheus metrics and answers ``fleet stats --db``.
Runs on an operator's host, never on a speaker."""
