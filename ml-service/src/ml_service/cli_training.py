"""`ml-service models train` and `models rollback`: on a repository in process, or through a running server's admin
API (registered on the `models` command group of cli.py)."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Annotated, Any

import orjson
import typer

from ml_service.cli import ModelDir, _settings, err_console, models_app
from ml_service.errors import MLServiceError


def _admin(url: str, token: str | None, method: str, path: str, **kw: Any) -> Any:
    """One call to a running server's admin API: the JSON answer, or the error on stderr and exit 1."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    try:
        r = httpx.request(method, f"{url.rstrip('/')}{path}", headers=headers, timeout=300, **kw)
    except httpx.HTTPError as exc:
        err_console.print(f"cannot reach {url}: {exc}", markup=False)
        raise typer.Exit(1) from None
    if r.status_code >= 400:
        err_console.print(f"{r.status_code}: {r.text[:2000]}", markup=False, soft_wrap=True)
        raise typer.Exit(1)
    return r.json()


Url = Annotated[str | None, typer.Option(help="a running server: ask it instead of working on --model-dir")]
Token = Annotated[str | None, typer.Option(envvar="ML_SERVICE_TOKEN", help="bearer token (or $ML_SERVICE_TOKEN)")]


@models_app.command("train")
def models_train(
    name: Annotated[str, typer.Argument(help="a text classifier whose served version is a head on a shared encoder")],
    examples: Annotated[Path, typer.Option(help="labelled examples: CSV (text,label) or JSON Lines (.jsonl)")],
    model_dir: ModelDir = None,
    url: Url = None,
    token: Token = None,
    holdout: Annotated[float, typer.Option(help="share of each label held out for the comparison")] = 0.2,
    seed: Annotated[int, typer.Option(help="seed of the held-out split")] = 0,
    force: Annotated[bool, typer.Option("--force", help="publish even if it is worse than the served version")
                     ] = False,
    no_base: Annotated[bool, typer.Option("--no-base", help="only these examples, not the served version's")] = False,
    tolerance: Annotated[float | None, typer.Option(help="accuracy it may lose and still count as not worse "
                                                         "(default: the server's ML_SERVICE_TRAIN_TOLERANCE, 0.01)")
                         ] = None,
) -> None:
    """Train a new head version from labelled examples, compare it with the served version on the same held-out
    texts, and publish it if it is not worse (or --force). Prints the report; exit 0 when published, 3 when not."""
    from ml_service.training import examples as ex

    try:
        given = ex.read(examples)
    except OSError as exc:
        err_console.print(f"cannot read {examples}: {exc}", markup=False)
        raise typer.Exit(2) from None
    except MLServiceError as exc:
        err_console.print(exc.message, markup=False)
        raise typer.Exit(2) from None
    if url:
        body = {"examples": [{"text": e.text, "label": e.label} for e in given], "include_base": not no_base,
                "holdout": holdout, "seed": seed, "force": force}
        if tolerance is not None:
            body["tolerance"] = tolerance
        job = _admin(url, token, "POST", f"/models/{name}/train", json=body)
        while job["state"] in ("queued", "running"):
            time.sleep(0.5)
            job = _admin(url, token, "GET", f"/models/jobs/{job['job_id']}")
    else:
        job = asyncio.run(_train_offline(name, given, model_dir, no_base, holdout, seed, force, tolerance))
    typer.echo(orjson.dumps(job, option=orjson.OPT_INDENT_2).decode())
    if job["state"] == "failed":
        raise typer.Exit(1)
    raise typer.Exit(0 if job["published"] else 3)


async def _train_offline(name: str, given: list[Any], model_dir: Path | None, no_base: bool, holdout: float,
                         seed: int, force: bool, tolerance: float | None) -> dict[str, Any]:
    """Train in process over the repository (its own encoder, with onnxruntime) and publish there."""
    from ml_service.core import Core
    from ml_service.training.trainer import Options, Trainer

    core = Core.build(_settings(model_dir))
    core.repository.scan()
    margin = core.settings.train_tolerance if tolerance is None else tolerance
    try:
        trainer = Trainer(core)
        plan = trainer.plan(name, given, Options(not no_base, holdout, seed, force, margin))
        outcome = await trainer.run(plan)
        return {"model": plan.model, "state": "succeeded", "error": None, "report": outcome.report,
                "published": outcome.published,
                "version": str(outcome.version) if outcome.version is not None else None, "live": False}
    except MLServiceError as exc:
        return {"model": name, "state": "failed", "error": f"{exc.code}: {exc.message}", "report": None,
                "published": False, "version": None, "live": False}
    finally:
        await core.stop()


@models_app.command("rollback")
def models_rollback(
    name: Annotated[str, typer.Argument(help="the model")],
    model_dir: ModelDir = None,
    url: Url = None,
    token: Token = None,
) -> None:
    """Make the previous working version the default again (at once on a server; on --model-dir, a running server
    applies it on its next re-read), until a newer version is published."""
    if url:
        out = _admin(url, token, "POST", f"/models/{name}/rollback")
    else:
        async def run() -> dict[str, Any]:
            from ml_service.core import Core

            core = Core.build(_settings(model_dir))
            core.repository.scan()
            try:
                model, default, held = await core.rollout.rollback(name)
            finally:
                await core.stop()
            return {"model": model, "default_version": str(default), "rolled_back": str(held)}

        try:
            out = asyncio.run(run())
        except MLServiceError as exc:
            err_console.print(f"{exc.code}: {exc.message}", markup=False)
            raise typer.Exit(1) from None
    typer.echo(orjson.dumps(out).decode())
