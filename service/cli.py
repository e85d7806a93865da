"""``ecgk serve``: registered into the ``ecgk`` app through the ``ecgk.commands`` entry point."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from ecg_k.settings import get_settings


def serve(
    model: Annotated[Path | None, typer.Option(help="model.onnx to serve (model_card.json beside it); "
                                                    "default: the registry's champion.")] = None,
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = get_settings().host,
    port: Annotated[int, typer.Option(help="TCP port.")] = get_settings().port,
) -> None:
    """Serve the K+ inference API (FastAPI + ONNX Runtime) with uvicorn, its request head capped (431) and
    timed (408) by :mod:`service.server`.

    A ``--model`` is checked first (its card beside it, the file's sha256 against the card): a missing or
    mismatched model exits 2 with one line, before any database is created or migrated.
    """
    if model is not None:
        check_model(model)
    import uvicorn

    from service.app import create_app
    from service.logs import log_config
    from service.server import guarded_protocol

    settings = get_settings().model_copy(update={"host": host, "port": port, "model_path": model})
    uvicorn.run(create_app(settings), host=host, port=port, access_log=False,
                log_config=log_config(settings.log_level, settings.log_format), log_level=settings.log_level.lower(),
                http=guarded_protocol(settings.max_header_bytes, settings.header_timeout_s),
                h11_max_incomplete_event_size=2 * settings.max_header_bytes)


def check_model(model: Path) -> None:
    """Exit 2 (one line naming ``--model``) unless ``model`` and the card beside it can be served."""
    from ecg_k.cli import fail
    from ecg_k.inference import ModelIntegrityError, read_verified_model
    from service.runtime import MODEL_CARD_FILE

    if not model.is_file():
        fail(f"--model: no ONNX file at {model}")
    try:
        read_verified_model(model.with_name(MODEL_CARD_FILE), model)
    except (ValueError, OSError, ModelIntegrityError) as err:
        fail(f"--model: {err}")


def register(app: typer.Typer) -> None:
    """Entry point of the ``ecgk.commands`` group."""
    app.command()(serve)


def main() -> None:
    """``python -m service.cli serve …``: the ``ecgk`` app with this package's commands registered."""
    from ecg_k.cli import app

    register(app)
    app()


if __name__ == "__main__":
    main()
