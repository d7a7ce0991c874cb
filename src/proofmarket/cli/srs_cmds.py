"""``proofmarket srs``: the public KZG ceremony's SRS files on this machine (HOME/srs), which compile uses off the
devnet. ``fetch`` downloads the file for a logrows, ``import`` takes one copied by hand; both check it against the
sha256 pinned for its logrows (a file that differs is refused, nothing stored, exit 2) and store it by CID."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from proofmarket.cli.common import Run, command
from proofmarket.cli.groups import group
from proofmarket.cli.output import console, real_console

if TYPE_CHECKING:  # the ceremony store loads with the command that uses it, not for --help
    from proofmarket.systems.ezkl.ceremony import CeremonyEntry
    from proofmarket.systems.ezkl.ceremony import Progress as Reporter

srs_app = group(help="Ceremony SRS files (the public KZG setup) for compiling off the devnet.",
                      no_args_is_help=True)

LogrowsOpt = Annotated[int, typer.Option("--logrows", min=1, max=26, help="the circuit's logrows (compile "
                                                                          "--dry-run predicts it)")]


def register(app: typer.Typer) -> None:
    app.add_typer(srs_app, name="srs")


@command(srs_app, "fetch")
def srs_fetch(run: Run, logrows: LogrowsOpt,
              url: Annotated[str | None, typer.Option(
                  "--url", help="download from this URL instead (a mirror); still checked against the pin")] = None,
              ) -> None:
    """Download the ceremony SRS for LOGROWS (PROOFMARKET_SRS_URL), check its pinned sha256 and store it."""
    from proofmarket.systems.ezkl.ceremony import CeremonyStore, ceremony_url

    settings = run.settings
    source = url or ceremony_url(settings.store.srs_url, logrows)
    with _download_bar(not run.as_json, source) as report:
        entry = CeremonyStore(settings.srs_dir).fetch(logrows, source, progress=report)
    _stored(run, entry)


@command(srs_app, "import")
def srs_import(run: Run, file: Annotated[Path, typer.Argument(help="the ceremony file, copied by hand")],
               logrows: Annotated[int | None, typer.Option(
                   "--logrows", min=1, max=26, help="the logrows the file is for (default: the logrows whose "
                                                    "pinned hash it has)")] = None) -> None:
    """Check a ceremony SRS file copied by hand (a machine without network) against its pin and store it."""
    from proofmarket.systems.ezkl.ceremony import CeremonyStore

    _stored(run, CeremonyStore(run.settings.srs_dir).import_file(file, logrows))


@command(srs_app, "list")
def srs_list(run: Run) -> None:
    """The ceremony SRS files stored in HOME/srs (compile uses the smallest that serves its logrows)."""
    from proofmarket.systems.ezkl.ceremony import CeremonyStore

    entries = CeremonyStore(run.settings.srs_dir).entries()
    lines = [f"logrows {e.logrows:<3} {e.cid}  {e.size} bytes  sha256 {e.sha256}" for e in entries]
    run.done({"srs": [e.to_dict() for e in entries]}, *(lines or ["no ceremony SRS stored (proofmarket srs fetch "
                                                                  "--logrows N)"]))


def _stored(run: Run, entry: CeremonyEntry) -> None:
    run.done(entry.to_dict(),
             f"stored the ceremony SRS for logrows {entry.logrows}: {entry.cid} ({entry.size} bytes, sha256 "
             f"{entry.sha256} as pinned)")


@contextmanager
def _download_bar(enabled: bool, source: str) -> Iterator[Reporter | None]:
    """A download bar on stderr (nothing under --json)."""
    if not enabled:
        yield None
        return
    from rich.progress import BarColumn, DownloadColumn, Progress, TransferSpeedColumn

    with Progress(BarColumn(), DownloadColumn(), TransferSpeedColumn(), console=real_console(console),
                  transient=True) as bar:
        console.print(f"[dim]downloading {source}[/]")
        task = bar.add_task("srs", total=None)

        def report(done: int, total: int | None) -> None:
            bar.update(task, completed=done, total=total)

        yield report
