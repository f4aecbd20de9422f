"""`sunshine experiment ...`: benchmarks of the whole pipeline on real data."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from features.core.cli import console, user_errors

experiment_app = typer.Typer(help="Benchmarks of the whole pipeline on real data.")


def register(app: typer.Typer) -> None:
    app.add_typer(experiment_app, name="experiment")


@experiment_app.command("ctn0094")
@user_errors
def ctn0094_cmd(
    data_dir: Annotated[
        Path | None,
        typer.Option(
            "--data-dir",
            help="folder of the CTN-0094 .rda files (default $SUNSHINE_CTN_DIR, then "
            "../shared/data/ctn0094)",
        ),
    ] = None,
    work_dir: Annotated[
        Path, typer.Option(help="where the adapted registry and labels are written")
    ] = Path("bench-out/ctn0094"),
    report: Annotated[
        Path | None,
        typer.Option(help="the Markdown report (default bench-out/ctn0094/ctn0094.md)"),
    ] = None,
    write_docs: Annotated[
        bool,
        typer.Option(help="write the report to docs/benchmarks/ctn0094.md, the tracked copy"),
    ] = False,
    sample: Annotated[
        int | None,
        typer.Option(help="a random subset of this many participants, for a quick run", min=200),
    ] = None,
) -> None:
    """Return to opioid use on the public CTN-0094 trials, against Luo et al. (2024)."""
    from experiments import ctn0094
    from features.adapters.ctn0094.tables import find_data_dir
    from models.tracking import configure

    source = find_data_dir(data_dir)
    if report is None:
        report = ctn0094.DEFAULT_REPORT if write_docs else work_dir / "ctn0094.md"
    configure()
    points = ctn0094.run(source, work_dir, report, sample)
    for p in points:
        m = p.result.metrics
        console.print(
            f"{ctn0094.POINT_TITLES[p.point]}: test AUROC {m['auroc']:.3f} "
            f"({m['auroc_ci_low']:.3f}-{m['auroc_ci_high']:.3f}), ECE {m['ece']:.3f}"
        )
    console.print(f"report: {report}")
