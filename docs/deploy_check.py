"""`make deploy-check`: run every `sh` block of docs/deploy.md, in order, as one script.

It runs in a scratch folder against this machine's PostgreSQL, with databases of its own
(dropped afterwards) and free loopback ports, in a process group of its own, so that the
servers the document starts (MLflow, the service and its workers, nginx) are stopped at the
end whatever happened. A failing command fails the check and names the block it was in.
"""

from __future__ import annotations

import contextlib
import os
import re
import signal
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

DOC = Path(__file__).with_name("deploy.md")
BLOCK = re.compile(r"^```sh\n(.*?)^```", re.S | re.M)


def blocks(text: str) -> list[str]:
    return BLOCK.findall(text)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def script(parts: list[str]) -> str:
    """The blocks as one bash script that says which block it is in."""
    out = ["set -euo pipefail"]
    for i, body in enumerate(parts, 1):
        out.append(f'echo "== deploy.md block {i}" >&2')
        out.append(body)
    return "\n".join(out) + "\n"


def main() -> int:
    db = f"sunshine_deploy_{uuid.uuid4().hex[:8]}"
    env = {
        **os.environ,
        "DB": db,
        "MLFLOW_PORT": str(free_port()),
        "SERVICE_PORT": str(free_port()),
        "TLS_PORT": str(free_port()),
        "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
    }
    env.pop("MLFLOW_TRACKING_URI", None)
    env.pop("SUNSHINE_DATABASE_URL", None)
    with tempfile.TemporaryDirectory(prefix="deploy-check-") as work:
        proc = subprocess.Popen(
            ["bash", "-c", script(blocks(DOC.read_text()))],
            cwd=work,
            env=env,
            start_new_session=True,
        )
        try:
            code = proc.wait(timeout=1200)
        finally:
            nginx = Path(work) / "nginx.pid"
            if nginx.exists():
                subprocess.run(["nginx", "-c", f"{work}/nginx.conf", "-p", work, "-s", "stop"])
            with contextlib.suppress(ProcessLookupError):  # nothing of it left running
                os.killpg(proc.pid, signal.SIGTERM)
            for name in (db, f"{db}_mlflow", f"{db}_restored"):
                subprocess.run(
                    ["dropdb", "--if-exists", "--force", "-h", "127.0.0.1", "-U", "postgres", name],
                    check=False,
                )
            # the service's role, which the guide creates (roles belong to the whole cluster)
            subprocess.run(
                ["dropuser", "--if-exists", "-h", "127.0.0.1", "-U", "postgres", f"{db}_service"],
                check=False,
            )
    print("deploy check: " + ("passed" if code == 0 else f"FAILED (exit {code})"))
    return code


if __name__ == "__main__":
    sys.exit(main())
