"""The `ml-service` command: serve, models list|validate|add|import|reload|build|train|rollback, predict, stats."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import ipaddress
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import orjson
import typer

from ml_service.errors import ManifestError, MLServiceError
from ml_service.settings import Settings

if TYPE_CHECKING:
    from rich.table import Table

app = typer.Typer(help="ml-service: self-hosted inference for the home organization app.", no_args_is_help=True)
models_app = typer.Typer(help="Inspect, validate and build the model repository.", no_args_is_help=True)
app.add_typer(models_app, name="models")


class _Console:
    """rich's Console, made on first use: `serve` never prints with it and starts ~30 ms sooner without rich."""

    def __init__(self, stderr: bool = False) -> None:
        self._stderr = stderr
        self._console: Any = None

    @property
    def rich(self) -> Any:
        if self._console is None:
            from rich.console import Console

            self._console = Console(stderr=self._stderr)
        return self._console

    def print(self, *objects: Any, **kwargs: Any) -> None:
        self.rich.print(*objects, **kwargs)

    def status(self, status: str) -> Any:
        return self.rich.status(status)


console = _Console()
err_console = _Console(stderr=True)


def _settings(model_dir: Path | None, **overrides: Any) -> Settings:
    """Settings from the environment and the options; a bad value is one line on stderr and exit 2."""
    from pydantic import ValidationError

    try:
        settings = Settings()
    except ValidationError as exc:
        for err in exc.errors():
            name = str(err["loc"][0]).upper() if err["loc"] else ""
            what = str(err["msg"]).removeprefix("Value error, ")
            where = name if name.startswith(("AIP_", "MODEL_CACHE_DIR", "ML_SERVICE_")) else f"ML_SERVICE_{name}"
            err_console.print(f"invalid setting {where}: {what}", soft_wrap=True, markup=False)
        raise typer.Exit(2) from None
    updates = {k: v for k, v in overrides.items() if v is not None}
    if model_dir is not None:
        updates["model_cache_dir"] = model_dir
    return settings.model_copy(update=updates) if updates else settings


ModelDir = Annotated[Path | None, typer.Option("--model-dir", help="model repository (default $MODEL_CACHE_DIR)")]


@app.command()
def serve(
    host: Annotated[str | None, typer.Option(help="bind address (default $ML_SERVICE_HOST)")] = None,
    port: Annotated[int | None, typer.Option(help="port (default $ML_SERVICE_PORT, 8001)")] = None,
    model_dir: ModelDir = None,
    preload: Annotated[str | None, typer.Option(help="models to load at startup: a,b or *")] = None,
    insecure: Annotated[bool, typer.Option("--insecure", help="serve a non-loopback address without a secret, "
                                           "on purpose ($ML_SERVICE_ALLOW_INSECURE=1)")] = False,
) -> None:
    """Start the HTTP server in the foreground (SIGHUP re-reads ML_SERVICE_SECRET_FILE; SIGTERM drains)."""
    import uvicorn

    from ml_service.app import create_app
    from ml_service.memory import map_large_blocks
    from ml_service.observe.logs import configure

    settings = _settings(model_dir, host=host, port=port, preload=preload)
    # Vertex AI's front end authenticates callers and forwards requests without our token (see docs/vertex.md)
    open_on_purpose = insecure or settings.allow_insecure or settings.vertex
    if not _loopback(settings.host) and not settings.api_keys_configured and not open_on_purpose:
        console.print(f"[red]refusing to serve on {settings.host} without a secret:[/red] anyone who can reach it "
                      "could use the models. Set ML_SERVICE_SECRET (one or more comma-separated tokens) or "
                      "ML_SERVICE_SECRET_FILE, bind 127.0.0.1, or pass --insecure (ML_SERVICE_ALLOW_INSECURE=1) on "
                      "purpose.", soft_wrap=True)
        raise typer.Exit(2)
    configure(settings.log_level, settings.log_format)
    map_large_blocks()

    class Server(uvicorn.Server):
        """uvicorn, except that SIGTERM/SIGINT, once drained, exit 0 instead of re-raising the signal."""

        @contextlib.contextmanager
        def capture_signals(self) -> Iterator[None]:
            with super().capture_signals():
                yield
                self._captured_signals.clear()

    # proxy_headers off: uvicorn would otherwise let a loopback peer set the client address with X-Forwarded-For;
    # only ML_SERVICE_TRUSTED_PROXIES decides whom we believe (api/gate.py)
    config = uvicorn.Config(create_app(settings), host=settings.host, port=settings.port, log_config=None,
                            log_level=settings.log_level.lower(), access_log=False, proxy_headers=False,
                            timeout_graceful_shutdown=int(settings.shutdown_grace_s) or None)
    Server(config).run()


def _loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@models_app.command("list")
def models_list(model_dir: ModelDir = None) -> None:
    """A table of the models in the repository."""
    from rich.table import Table

    from ml_service.repository import ModelRepository

    settings = _settings(model_dir)
    repo = ModelRepository(settings.model_cache_dir)
    entries = repo.scan()
    table = Table(title=f"models in {settings.model_cache_dir}")
    for col in ("name", "task", "runtime", "aliases", "versions", "servable", "status"):
        table.add_column(col)
    for name, e in entries.items():
        m = e.manifest
        table.add_row(name, m.task if m else "-", m.runtime if m else "-", ", ".join(repo.aliases_of(name)),
                      ", ".join(map(str, sorted(e.versions))), ", ".join(map(str, e.candidates)),
                      ("ok" if not e.manifest_error else f"[yellow]{e.manifest_error}[/yellow]") if e.valid
                      else f"[red]invalid: {e.error}[/red]")
    console.print(table)


@models_app.command("validate")
def models_validate(
    path: Annotated[Path, typer.Argument(help="a model directory or a repository")],
    load: Annotated[bool, typer.Option(help="also load each servable version and run its checks")] = True,
) -> None:
    """Check model directories as the server would (manifest, files, aliases, then a real load with its
    warm-up and label checks); exit 1 if any is invalid."""
    from ml_service.publish import validate_models

    report = validate_models(path, _settings(path), load=load)
    if not report:
        console.print(f"[red]no model directories under {path}[/red]")
        raise typer.Exit(1)
    bad = 0
    for name, found in report.items():
        if found.problems:
            bad += 1
            console.print(f"[red]invalid[/red] {name}: " + "; ".join(found.problems), soft_wrap=True)
        else:
            console.print(f"[green]ok[/green]      {name}: versions {found.versions}, servable {found.servable}",
                          soft_wrap=True)
    raise typer.Exit(1 if bad else 0)


@models_app.command("add")
def models_add(
    name: Annotated[str, typer.Argument(help="the model's name in the repository")],
    path: Annotated[Path, typer.Argument(help="a version directory (its files), or a model directory with model.toml")],
    version: Annotated[int | None, typer.Option(help="the version number (default: the highest + 1)")] = None,
    model_dir: ModelDir = None,
) -> None:
    """Publish a model version atomically: copied beside its final place, then renamed into it, so a running
    service never sees it half-written. The service picks it up on its next re-read (or `models reload`)."""
    from ml_service.manifest import NAME_PATTERN
    from ml_service.publish import publish_version

    if not re.fullmatch(NAME_PATTERN, name):
        console.print(f"[red]{name!r} is not a valid model name[/red]")
        raise typer.Exit(2)
    root = _settings(model_dir).model_cache_dir
    try:
        number = publish_version(root, name, path, version)
    except (NotADirectoryError, ManifestError) as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(2) from None
    except FileExistsError as exc:
        console.print(f"[red]{exc}[/red]")
        raise typer.Exit(1) from None
    target = root / name
    console.print(f"published {name} version {number} in {target}")


def _floats(value: str | None, option: str) -> list[float] | None:
    if value is None:
        return None
    try:
        out = [float(x) for x in value.split(",")]
    except ValueError:
        out = []
    if len(out) != 3:
        err_console.print(f"{option} needs three comma-separated numbers (R,G,B), got {value!r}", markup=False)
        raise typer.Exit(2)
    return out


@models_app.command("import")
def models_import(
    source: Annotated[Path, typer.Argument(help="a Transformers or sentence-transformers directory, a safetensors "
                                           "state dict or an ONNX file, on local disk")],
    name: Annotated[str, typer.Option("--name", help="the model's name in the repository")],
    model_dir: ModelDir = None,
    dry_run: Annotated[Path | None, typer.Option("--dry-run", help="write the model directory here and publish "
                                                 "nothing")] = None,
    arch: Annotated[str | None, typer.Option(help="a state dict's architecture, e.g. efficientnet-lite0")] = None,
    labels: Annotated[Path | None, typer.Option(help="labels file, one a line in output order (state dicts, "
                                                "ONNX)")] = None,
    task: Annotated[str | None, typer.Option(help="an ONNX file's task: text-classification | embedding | "
                                             "image-classification")] = None,
    tokenizer: Annotated[Path | None, typer.Option(help="tokenizer.json (ONNX text models; overrides a "
                                                   "checkpoint's)")] = None,
    pooling: Annotated[str | None, typer.Option(help="mean | cls: override an encoder's pooling")] = None,
    normalize: Annotated[bool | None, typer.Option("--normalize/--no-normalize", help="L2-normalize embeddings "
                                                   "(default: as the checkpoint does)")] = None,
    image_size: Annotated[int | None, typer.Option(help="center crop size (images)")] = None,
    resize: Annotated[int | None, typer.Option(help="short side before the crop (images; 0: none)")] = None,
    interpolation: Annotated[str | None, typer.Option(help="bicubic | bilinear | nearest (images)")] = None,
    mean: Annotated[str | None, typer.Option(help="R,G,B mean on 0-255 (images)")] = None,
    std: Annotated[str | None, typer.Option(help="R,G,B std on 0-255 (images)")] = None,
) -> None:
    """Import your own model from local disk as the next version(s) of NAME: export to ONNX, fuse, batch-invariant
    int8 (text), parity against the source framework, a model card, the server's checks, then an atomic publish
    (the running service picks it up as after `models add`). Pickle checkpoints are refused."""
    from ml_service.modelbuild.import_detect import ImageOptions, ImportOptions, ImportRefused
    from ml_service.modelbuild.importer import import_model

    if pooling not in (None, "mean", "cls"):
        err_console.print(f"--pooling is mean or cls, not {pooling!r}", markup=False)
        raise typer.Exit(2)
    if interpolation not in (None, "bicubic", "bilinear", "nearest"):
        err_console.print(f"--interpolation is bicubic, bilinear or nearest, not {interpolation!r}", markup=False)
        raise typer.Exit(2)
    image = None
    given = (image_size, resize, interpolation, mean, std)
    if any(v is not None for v in given):
        d = ImageOptions()
        image = ImageOptions(image_size or d.image_size, d.resize if resize is None else (resize or None),
                             interpolation or d.interpolation, _floats(mean, "--mean") or d.mean,
                             _floats(std, "--std") or d.std)
    opts = ImportOptions(arch, labels, task, tokenizer, pooling, normalize, image)
    root = _settings(model_dir).model_cache_dir
    try:
        with err_console.status("importing") as status:
            result = import_model(source, name, root, opts, dry_run, progress=lambda m: status.update(m))
    except ImportRefused as exc:
        err_console.print(f"import refused: {exc}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    except Exception as exc:  # one line for the user; nothing was published (the work is in a temporary directory)
        first = str(exc).splitlines()[0] if str(exc) else ""
        err_console.print(f"import failed: {type(exc).__name__}: {first}", markup=False, soft_wrap=True)
        raise typer.Exit(1) from None
    for note in result.notes:
        console.print(note, markup=False, soft_wrap=True)
    card = result.card
    for v, info in card["versions"].items():
        console.print(f"version {v}: {info['precision']}, {info['size_mb']} MB, batch 1 "
                      f"{info['latency_ms']['batch_1']} ms, batch 16 {info['latency_ms']['batch_16']} ms",
                      markup=False)
    parity = {k: v for k, v in card["parity"].items() if isinstance(v, (int, float, str))}
    console.print("parity: " + ", ".join(f"{k} {v:.6g}" if isinstance(v, float) else f"{k} {v}"
                                         for k, v in parity.items()), markup=False, soft_wrap=True)
    what = "published" if result.published else "written (dry run, nothing published)"
    console.print(f"{what}: {name} versions {sorted(result.versions)} (default {result.default}) in "
                  f"{result.model_dir} in {result.seconds:.0f} s", markup=False, soft_wrap=True)


@models_app.command("reload")
def models_reload(
    url: Annotated[str, typer.Option(help="the server")] = "http://127.0.0.1:8001",
    token: Annotated[str | None, typer.Option(envvar="ML_SERVICE_TOKEN", help="bearer token")] = None,
) -> None:
    """Ask a running server to re-read its repository now."""
    import httpx

    headers = {"Authorization": f"Bearer {token}"} if token else {}
    r = httpx.post(f"{url.rstrip('/')}/models/reload", headers=headers, timeout=300)
    typer.echo(r.text)
    raise typer.Exit(0 if r.status_code == 200 else 1)


@models_app.command("build")
def models_build(
    model_dir: ModelDir = None,
    only: Annotated[str | None, typer.Option(help="comma list of models to build")] = None,
    force: Annotated[bool, typer.Option(help="rebuild even if up to date")] = False,
) -> None:
    """Build the real models from packaged weights (needs the `build` extra)."""
    from ml_service.modelbuild import build_all

    settings = _settings(model_dir)
    build_all(settings.model_cache_dir, only=only.split(",") if only else None, force=force)


@app.command()
def predict(
    model: Annotated[str, typer.Argument(help="model name or alias")],
    text: Annotated[list[str] | None, typer.Option("--text", help="a text (repeatable)")] = None,
    image: Annotated[list[Path] | None, typer.Option("--image", help="an image file (repeatable)")] = None,
    top_k: Annotated[int | None, typer.Option(help="labels to show for classifiers")] = None,
    version: Annotated[str | None, typer.Option(help="pin a version")] = None,
    model_dir: ModelDir = None,
) -> None:
    """Run one prediction in process (no server) and print the JSON answer."""
    from ml_service.core import Core

    if bool(text) == bool(image):
        console.print("[red]give --text or --image[/red]")
        raise typer.Exit(2)
    data: dict[str, Any] = (
        {"texts": text} if text else {"images": [base64.b64encode(p.read_bytes()).decode() for p in image or []]}
    )
    if top_k is not None:
        data["top_k"] = top_k

    async def run() -> dict[str, Any]:
        from ml_service.codecs import native  # the service's own API's answer, without HTTP
        from ml_service.observe import RequestContext

        core = Core.build(_settings(model_dir))
        core.repository.scan()
        try:
            req = native.request(model, data, version)
            resolved = await core.service.resolve(req.model_type, req.version)
            request, k = native.decode(req, resolved.spec)
            return native.encode(await core.service.infer(request, resolved, RequestContext("cli", "predict")), k)
        finally:
            await core.stop()

    try:
        out = asyncio.run(run())
    except MLServiceError as exc:
        console.print(f"[red]{exc.code}: {exc.message}[/red]")
        raise typer.Exit(1) from None
    typer.echo(orjson.dumps(out, option=orjson.OPT_SERIALIZE_NUMPY | orjson.OPT_INDENT_2).decode())


@app.command()
def stats(
    url: Annotated[str, typer.Option(help="the server")] = "http://127.0.0.1:8001",
    watch: Annotated[bool, typer.Option(help="refresh every 2 s until Ctrl-C")] = False,
    token: Annotated[str | None, typer.Option(envvar="ML_SERVICE_TOKEN", help="bearer token (or $ML_SERVICE_TOKEN)")
                     ] = None,
) -> None:
    """Latency percentiles, rates, batch size, queue and memory per model, from a running server's /stats."""
    import time

    import httpx
    from rich.live import Live
    from rich.table import Table

    headers = {"Authorization": f"Bearer {token}"} if token else {}

    def table() -> Table:
        try:
            r = httpx.get(f"{url.rstrip('/')}/stats", headers=headers, timeout=10)
        except httpx.HTTPError as exc:
            raise typer.BadParameter(f"cannot reach {url}: {exc}") from None
        if r.status_code != 200:
            raise typer.BadParameter(f"{url}/stats answered {r.status_code}: {r.text[:200]}")
        report = r.json()
        t = Table(title=f"{url}  ready={report['ready']}  RSS {report['rss_mb']} MB / budget "
                        f"{report['memory_budget_mb']} MB")
        for col in ("model", "version", "state", "memory MB", "queue", "batch", "window", "requests", "req/s",
                    "errors", "p50 ms", "p95 ms", "p99 ms"):
            t.add_column(col, justify="left" if col in ("model", "state", "window") else "right")
        for m in report["models"]:
            for label in ("last_1m", "last_5m"):
                w = m[label]
                first = label == "last_1m"
                t.add_row(m["model"] if first else "", m["version"] if first else "", m["state"] if first else "",
                          _num(m["memory_mb"]) if first else "", str(m["queue_depth"]) if first else "",
                          _num(m["mean_batch_size"]) if first else "", label[5:], str(w["requests"]),
                          _num(w["rate_per_s"], 2), f"{100 * w['error_rate']:.1f}%", _num(w["p50_ms"]),
                          _num(w["p95_ms"]), _num(w["p99_ms"]))
        return t

    if not watch:
        console.print(table())
        return
    with Live(table(), console=console.rich, refresh_per_second=1) as live:
        while True:
            time.sleep(2)
            live.update(table())


def _num(v: float | None, digits: int = 1) -> str:
    return "-" if v is None else f"{v:.{digits}f}"


from ml_service import cli_training  # noqa: E402, F401  (registers `models train` and `models rollback`)


def main() -> None:
    # numpy's BLAS threads spin on every core: beside the model's workers (and other processes) they make a training
    # fit ~20x slower and steal the CPU live requests need; the service's parallelism is its own workers
    os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
    app()


if __name__ == "__main__":  # `python -m ml_service.cli`: run the module cli_training registered its commands on
    from ml_service.cli import main as registered_main

    registered_main()
