"""Which packages the ecg-k distribution holds (the rest of the metadata is in pyproject.toml).

Here and not in pyproject.toml because the Alembic environment stays at the repository root (``migrations/``,
where ``alembic.ini`` and developers expect it) yet must ship inside the wheel, or ``ecgk db upgrade`` fails
in an image built with ``pip install .``. It is shipped as ``ecg_k.db.migrations``, next to the module that
runs it (``ecg_k.db.migrate``); pyproject.toml's package discovery cannot add a package found elsewhere
under another name.
"""

from setuptools import find_namespace_packages, setup

MIGRATIONS = "ecg_k.db.migrations"

setup(
    packages=[
        *find_namespace_packages(include=["ecg_k*", "ecgk_demo*", "training*", "service*", "dashboard*"]),
        MIGRATIONS,
        f"{MIGRATIONS}.versions",
    ],
    package_dir={MIGRATIONS: "migrations"},
    package_data={MIGRATIONS: ["script.py.mako", "README.md"]},
)
