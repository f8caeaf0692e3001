"""A private CUPS daemon for tests: its own configuration, directories and TCP port.

``CupsRig(root).start()`` runs ``cupsd -f`` with a ``cupsd.conf`` and ``cups-files.conf``
written under ``root`` (spool, cache, state, logs there too), listening on 127.0.0.1 at a
free port, so it never touches the machine's CUPS (``/etc/cups``, port 631).
:meth:`CupsRig.add_pdf_printer` adds a queue on Debian's ``printer-driver-cups-pdf``
(the virtual PDF printer); :attr:`CupsRig.server` is what ``lp -h`` and
``hardware.printer.CupsPrinter(server=...)`` take.

cups-pdf runs only as root (its backend is mode 0700, so cupsd runs it as root only when
cupsd is root) and writes where ``/etc/cups/cups-pdf.conf`` says; a job sent by a user
with no home directory lands in its anonymous folder, ``/var/spool/cups-pdf/ANONYMOUS``
(:data:`CUPS_PDF_ANONYMOUS`). Tests therefore send jobs as a user name that does not
exist and delete their file afterwards. Without root, :meth:`add_pdf_printer` fails and
the tests that need it say so.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

CUPSD = "/usr/sbin/cupsd"
CUPS_PDF_PPD = Path("/usr/share/ppd/cups-pdf/CUPS-PDF_noopt.ppd")
CUPS_PDF_ANONYMOUS = Path("/var/spool/cups-pdf/ANONYMOUS")
#: The job owner of test jobs: no such account, so cups-pdf writes to its anonymous folder.
JOB_USER = "portier-test-nobody"


def missing_tools() -> list[str]:
    """The Debian packages the CUPS tests need that are not installed."""
    missing = []
    if not Path(CUPSD).exists() or shutil.which("lpadmin") is None:
        missing.append("cups")
    if shutil.which("lp") is None or shutil.which("lpstat") is None:
        missing.append("cups-client")
    if not CUPS_PDF_PPD.exists():
        missing.append("printer-driver-cups-pdf")
    if shutil.which("pdftoppm") is None:
        missing.append("poppler-utils")
    return missing


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class CupsRig:
    """One private ``cupsd``; see the module docstring."""

    def __init__(self) -> None:
        # Not under pytest's tmp_path: cupsd's filters run as user lp, which must reach
        # the spool, and pytest's folders are private to their owner.
        self.root = Path(tempfile.mkdtemp(prefix="portier-cups-"))
        self.root.chmod(0o755)
        self.port = _free_port()
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def server(self) -> str:
        """``host:port`` of this daemon (``lp -h``, ``CUPS_SERVER``)."""
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> tuple[Path, Path]:
        for name in ("spool", "spool/tmp", "cache", "state", "log"):
            (self.root / name).mkdir(parents=True, exist_ok=True)
            (self.root / name).chmod(0o755 if name != "spool/tmp" else 0o1777)
        files = self.root / "cups-files.conf"
        files.write_text(
            "\n".join(
                [
                    f"ServerRoot {self.root}",
                    f"RequestRoot {self.root / 'spool'}",
                    f"TempDir {self.root / 'spool/tmp'}",
                    f"CacheDir {self.root / 'cache'}",
                    f"StateDir {self.root / 'state'}",
                    f"AccessLog {self.root / 'log/access_log'}",
                    f"ErrorLog {self.root / 'log/error_log'}",
                    f"PageLog {self.root / 'log/page_log'}",
                    "ServerBin /usr/lib/cups",
                    "DataDir /usr/share/cups",
                    "SystemGroup root",
                    "FileDevice No",
                    "",
                ]
            )
        )
        conf = self.root / "cupsd.conf"
        conf.write_text(
            "\n".join(
                [
                    "LogLevel info",
                    f"Listen 127.0.0.1:{self.port}",
                    "Browsing No",
                    "DefaultAuthType None",
                    "WebInterface No",
                    "MaxJobs 100",
                    "PreserveJobFiles No",
                    "<Location />",
                    "  Order allow,deny",
                    "  Allow all",
                    "</Location>",
                    "<Policy default>",
                    "  <Limit All>",
                    "    Order allow,deny",
                    "    Allow all",
                    "  </Limit>",
                    "</Policy>",
                    "",
                ]
            )
        )
        return conf, files

    def start(self, timeout_s: float = 20.0) -> None:
        """Start cupsd and wait until it answers."""
        conf, files = self._write_config()
        log = (self.root / "log" / "cupsd.out").open("wb")
        self.process = subprocess.Popen(
            [CUPSD, "-f", "-c", str(conf), "-s", str(files)],
            stdout=log,
            stderr=subprocess.STDOUT,
            env={**os.environ, "CUPS_SERVERROOT": str(self.root)},
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"cupsd exited: {self.log()}")
            done = subprocess.run(
                ["lpstat", "-h", self.server, "-r"], capture_output=True, text=True, timeout=10
            )
            if "is running" in done.stdout:
                return
            time.sleep(0.2)
        raise RuntimeError(f"cupsd did not answer within {timeout_s} s: {self.log()}")

    def lpadmin(self, *args: str) -> None:
        done = subprocess.run(
            ["lpadmin", "-h", self.server, *args], capture_output=True, text=True, timeout=30
        )
        if done.returncode != 0:
            raise RuntimeError(f"lpadmin {' '.join(args)}: {done.stderr.strip()}")

    def add_pdf_printer(self, name: str) -> None:
        """Add the queue ``name`` on the cups-pdf virtual printer, enabled and accepting."""
        self.lpadmin("-p", name, "-E", "-v", "cups-pdf:/", "-P", str(CUPS_PDF_PPD))

    def run(self, *command: str) -> str:
        """Run a CUPS command (``cupsdisable``, ``cupsreject``...) against this daemon."""
        done = subprocess.run(
            [command[0], "-h", self.server, *command[1:]],
            capture_output=True,
            text=True,
            timeout=30,
        )
        if done.returncode != 0:
            raise RuntimeError(f"{' '.join(command)}: {done.stderr.strip()}")
        return done.stdout

    def log(self) -> str:
        text = ""
        for name in ("cupsd.out", "error_log"):
            path = self.root / "log" / name
            if path.exists():
                text += path.read_text(errors="replace")[-3000:]
        return text

    def stop(self) -> None:
        """Stop cupsd and remove its folder. Idempotent."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        self.process = None
        shutil.rmtree(self.root, ignore_errors=True)
