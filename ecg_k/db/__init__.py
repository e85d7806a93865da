"""The ecg-k database: schema (models), engine and sessions, migrations, audit trail, API keys, ECG file
store and model registry. SQLite file by default, PostgreSQL via ``ECGK_DATABASE_URL``."""
