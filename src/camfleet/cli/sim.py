"""``camfleet sim``: serve simulated RTSP cameras, with faults on demand (a demo and test harness).

The simulator is not part of the product: it lives in the development package
``camfleet_testing`` (``testing/`` in a camfleet checkout), imported only when
the command runs, so ``camfleet --help`` and every other command work without it.
"""

from __future__ import annotations

import typer

HELP_COMMANDS = (
    "commands: stall CAM | resume CAM | resize CAM WxH | corrupt CAM FRACTION | stop | start | restart | quit"
)
"""The fault commands ``--interactive`` reads on stdin."""

MISSING_HINT = (
    "camfleet sim: the camera simulator is part of camfleet's development package, which is not installed.\n"
    "  From a camfleet checkout: bash scripts/setup.sh   (or: pip install -e ./testing)"
)
"""What ``camfleet sim`` prints when ``camfleet_testing`` cannot be imported."""


def sim(
    cameras: int = typer.Option(2, min=1, max=64, help="Number of simulated cameras (cam0, cam1, ...)."),
    codec: str = typer.Option("h264", help="h264 or h265, or a comma list cycled over the cameras."),
    width: int = typer.Option(640, help="Frame width in pixels (even)."),
    height: int = typer.Option(360, help="Frame height in pixels (even)."),
    fps: float = typer.Option(15.0, help="Frames per second per camera."),
    bitrate: int = typer.Option(1000, help="Encoder bitrate in kbit/s."),
    gop: int = typer.Option(30, help="Keyframe interval in frames."),
    port: int = typer.Option(8554, min=0, max=65535, help="RTSP port (0: any free port)."),
    host: str = typer.Option("127.0.0.1", help="Address RTSP listens on (0.0.0.0: all)."),
    user: str | None = typer.Option(None, envvar="CAMFLEET_SIM_USER", help="Require this user name."),
    password: str | None = typer.Option(
        None, envvar="CAMFLEET_SIM_PASSWORD", help="Require this password (prefer the environment variable)."
    ),
    auth: str = typer.Option("basic", help="Authentication scheme with --user: basic or digest."),
    tls: bool = typer.Option(
        False, "--tls", help="Serve rtsps:// (RTSP over TLS, TCP only) with a throwaway self-signed cert."
    ),
    objects: str = typer.Option("person,cat,motorcycle", help="Scene objects, comma separated."),
    duration: float = typer.Option(0.0, min=0.0, help="Stop after this many seconds (0: until Ctrl-C)."),
    interactive: bool = typer.Option(False, help=f"Read fault commands on stdin ({HELP_COMMANDS})."),
) -> None:
    """Serve simulated RTSP cameras (real photographs in motion) and inject faults on demand."""
    try:
        from camfleet_testing.sim.cli import serve  # noqa: PLC0415 - a development package, optional
    except ImportError as exc:
        if (exc.name or "").split(".")[0] != "camfleet_testing":
            raise  # the package is there but broken: show the real error
        typer.echo(MISSING_HINT, err=True)
        raise typer.Exit(2) from None
    serve(cameras=cameras, codec=codec, width=width, height=height, fps=fps, bitrate=bitrate, gop=gop,
          port=port, host=host, user=user, password=password, auth=auth, tls=tls, objects=objects,
          duration=duration, interactive=interactive)
