"""The provisioned role, the central's private CA and the machine ID: on a real image.

``appliance provision --role`` / ``--central-ca`` write into the FAT boot partition of a
small synthetic image (sfdisk, mkfs.vfat, mtools, mkfs.ext4), ``appliance show`` prints
them, and the file is read back with the same validation as on the device; the machine
ID goes onto the kernel command line (``cmdline.txt``). The rest of provisioning is
tested in tests/images/test_images.py; first boot's use of the role and the CA in
tests/images/test_firstboot.py.
"""

from __future__ import annotations

import datetime as dt
import os
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from central.testing import mint_ca, mint_server_cert
from images import assemble, cli, disk, provision
from images.errors import InvalidSetting
from tests.support.image_kit import requires_tools

MIB = 1024 * 1024
TOOLS = ("sfdisk", "mkfs.vfat", "mcopy", "mtype", "mkfs.ext4")
pytestmark = requires_tools(*TOOLS)

TOKEN = "tK3n_Abcdefghijklmnopqrstuvwxyz0123456789-"
GOOD = [
    "--site", "hq-paris",
    "--door", "lobby",
    "--central-url", "https://central.example.org/api",
    "--enroll-token", TOKEN,
]  # fmt: skip


@pytest.fixture(scope="module")
def base_image(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("base")
    boot, root = tmp / "boot", tmp / "root"
    boot.mkdir()
    (boot / "cmdline.txt").write_text("console=serial0,115200 root=LABEL=rootfs ro\n")
    (root / "etc").mkdir(parents=True)
    layout = assemble.ImageLayout(boot_size=16 * MIB, root_size=8 * MIB, data_size=0)
    return assemble.assemble_image(tmp / "portier.img", boot_dir=boot, root_dir=root, layout=layout)


def boot_file(image: Path) -> str:
    offset = disk.find_boot_partition(image).start
    return subprocess.run(
        ["mtype", "-i", f"{image}@@{offset}", f"::/{provision.BOOT_FILE_NAME}"],
        check=True,
        capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout.decode("utf-8")


@pytest.mark.processes
def test_kiosk_role_round_trip_and_show(image: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli.main(["provision", str(image), *GOOD, "--role", "kiosk"]) == 0
    assert "role=kiosk" in capsys.readouterr().out
    assert 'role = "kiosk"' in boot_file(image).splitlines()
    assert provision.read_provisioning(image).role == "kiosk"
    assert cli.main(["show", str(image)]) == 0
    assert "role         kiosk (touch UI" in capsys.readouterr().out

    # Provisioned again without --role: a door, and the file says nothing of a role, so
    # that a first-boot program older than the role still reads it.
    assert cli.main(["provision", str(image), *GOOD]) == 0
    assert "role" not in boot_file(image)
    assert provision.read_provisioning(image).role == "door"
    capsys.readouterr()
    assert cli.main(["show", str(image)]) == 0
    assert "role         door (headless" in capsys.readouterr().out


@pytest.mark.processes
def test_unknown_role_option_exits_2_and_writes_nothing(
    image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exit_:
        cli.main(["provision", str(image), *GOOD, "--role", "screen"])
    assert exit_.value.code == 2
    assert "--role" in capsys.readouterr().err
    with pytest.raises(FileNotFoundError):
        provision.read_provisioning(image)


def test_role_in_the_file_is_validated_and_defaults_to_door() -> None:
    door = provision.Provisioning("hq", "d1", "https://c.example", TOKEN)
    text = door.to_toml()
    assert provision.parse_provisioning(text).role == "door"  # a file from before roles
    kiosk = provision.parse_provisioning(text + 'role = "kiosk"\n')
    assert kiosk == provision.Provisioning("hq", "d1", "https://c.example", TOKEN, role="kiosk")
    assert provision.parse_provisioning(kiosk.to_toml()) == kiosk
    for bad in ('"screen"', '"Kiosk"', "1", '["kiosk"]'):
        with pytest.raises(InvalidSetting) as exc:
            provision.parse_provisioning(text + f"role = {bad}\n", "card.toml")
        assert exc.value.option == "role"
        assert str(exc.value.file) == "card.toml" and "(in card.toml)" in str(exc.value)
        if bad.startswith('"'):
            assert "door (headless" in exc.value.problem
        else:  # the settings loader refuses a value of the wrong type first
            assert "expected a string" in exc.value.problem
    with pytest.raises(InvalidSetting, match=r"^role: 'screen' is not a role"):
        provision.Provisioning("hq", "d1", "https://c.example", TOKEN, role="screen")
    with pytest.raises(InvalidSetting, match=r"^--role: 'screen' is not a role"):
        provision.from_options(
            site="hq", door="d1", central_url="https://c.example", enroll_token=TOKEN, role="screen"
        )


def test_help_explains_the_default_role(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli.main(["provision", "--help"])
    help_text = " ".join(capsys.readouterr().out.split())
    assert "--role {door,kiosk}" in help_text
    assert "'door' (default), the headless appliance" in help_text
    assert "kiosk on a device without a screen would fail" in help_text


# -- the central's private CA (--central-ca) -------------------------------------------


def make_cert(
    where: Path,
    name: str,
    *,
    ca: bool = True,
    valid_from_days: float = -1,
    valid_to_days: float = 365,
    key_cert_sign: bool = True,
) -> tuple[Path, ec.EllipticCurvePrivateKey, x509.Certificate]:
    """A self-signed certificate ``CN=name`` with the given dates (days from now),
    written as ``where/name.pem``."""
    key = ec.generate_private_key(ec.SECP256R1())
    now = dt.datetime.now(dt.UTC)
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, name)])
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now + dt.timedelta(days=valid_from_days))
        .not_valid_after(now + dt.timedelta(days=valid_to_days))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(
                digital_signature=True,
                key_cert_sign=key_cert_sign,
                crl_sign=key_cert_sign,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
    cert = builder.sign(key, hashes.SHA256())
    path = where / f"{name}.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path, key, cert


def fingerprint(cert: x509.Certificate) -> str:
    digest = cert.fingerprint(hashes.SHA256()).hex().upper()
    return ":".join(digest[i : i + 2] for i in range(0, len(digest), 2))


def cmdline(image: Path) -> str:
    offset = disk.find_boot_partition(image).start
    return subprocess.run(
        ["mtype", "-i", f"{image}@@{offset}", f"::/{provision.CMDLINE_FILE}"],
        check=True,
        capture_output=True,
        env={**os.environ, "MTOOLS_SKIP_CHECK": "1"},
    ).stdout.decode("utf-8")


BASE_CMDLINE = "console=serial0,115200 root=LABEL=rootfs ro"


@pytest.mark.processes
def test_central_ca_round_trip_and_show(
    image: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    root_file, _, root = mint_ca(tmp_path, "root")
    _, _, second = mint_ca(tmp_path, "next")
    # What an installer may be handed: two CAs, with openssl's and certifi's chatter.
    bundle = tmp_path / "bundle.pem"
    bundle.write_text(
        "Bag Attributes\n    friendlyName: Site CA — siège\n"
        + root_file.read_text()
        + "# Subject: CN=Portier test CA next\n"
        + second.public_bytes(serialization.Encoding.PEM).decode()
    )
    args = ["provision", str(image), *GOOD, "--central-ca", str(bundle)]
    assert cli.main(args) == 0
    out = capsys.readouterr().out
    assert "central CA: 2 CA certificates" in out and fingerprint(root) in out

    # Stored as the two certificates only, readable as PEM in the file.
    expected = "".join(c.public_bytes(serialization.Encoding.PEM).decode() for c in (root, second))
    text = boot_file(image)
    assert 'central_ca = """\n' + expected + '"""\n' in text
    assert "Bag Attributes" not in text and "Subject:" not in text
    settings = provision.read_provisioning(image)
    assert settings.central_ca == expected
    loaded = x509.load_pem_x509_certificates(settings.central_ca.encode())
    assert [c.subject for c in loaded] == [root.subject, second.subject]

    assert cli.main(["show", str(image)]) == 0
    shown = capsys.readouterr().out
    assert "central_ca   2 CA certificates, used instead of the system's CAs" in shown
    for cert in (root, second):
        assert f"subject {cert.subject.rfc4514_string()}" in shown
        assert f"sha256  {fingerprint(cert)}" in shown
        assert f"expires {cert.not_valid_after_utc:%Y-%m-%d %H:%M} UTC" in shown
    assert "BEGIN CERTIFICATE" not in shown and "MII" not in shown

    # Provisioned again without it: the system's CAs.
    assert cli.main(["provision", str(image), *GOOD]) == 0
    assert "central_ca" not in boot_file(image)
    capsys.readouterr()
    assert cli.main(["show", str(image)]) == 0
    assert "central_ca   (none: the system's CAs verify the central)" in capsys.readouterr().out


def _server_cert(tmp: Path) -> Path:
    _, key, cert = mint_ca(tmp, "issuer")
    return mint_server_cert(tmp, key, cert)[0]


def _ca_and_key(tmp: Path) -> Path:
    path, key, _ = make_cert(tmp, "keyed-ca")
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.TraditionalOpenSSL,
        serialization.NoEncryption(),
    )
    path.write_bytes(path.read_bytes() + pem)
    return path


def _key_only(tmp: Path) -> Path:
    _, key, _ = make_cert(tmp, "ca")
    path = tmp / "ca.key"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"secret"),
        )
    )
    return path


def _write(name: str, data: bytes) -> Any:
    def make(tmp: Path) -> Path:
        (tmp / name).write_bytes(data)
        return tmp / name

    return make


def _der(tmp: Path) -> Path:
    _, _, cert = make_cert(tmp, "der-ca")
    (tmp / "ca.der").write_bytes(cert.public_bytes(serialization.Encoding.DER))
    return tmp / "ca.der"


def _bundle_with_server(tmp: Path) -> Path:
    ca_file, key, cert = mint_ca(tmp, "chain")
    server, _ = mint_server_cert(tmp, key, cert)
    (tmp / "fullchain.pem").write_bytes(server.read_bytes() + ca_file.read_bytes())
    return tmp / "fullchain.pem"


def _csr(tmp: Path) -> Path:
    ca_file, _, _ = mint_ca(tmp, "with-csr")
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (
        x509.CertificateSigningRequestBuilder()
        .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "gate")]))
        .sign(key, hashes.SHA256())
    )
    path = tmp / "with-csr.pem"
    path.write_bytes(ca_file.read_bytes() + csr.public_bytes(serialization.Encoding.PEM))
    return path


@pytest.mark.processes
@pytest.mark.parametrize(
    ("make", "expected"),
    [
        (_server_cert, r"certificate 1 of 1 \(CN=127\.0\.0\.1\) is not a CA certificate"),
        (_bundle_with_server, r"certificate 1 of 2 \(CN=127\.0\.0\.1\) is not a CA.*"
         r"issued by 'CN=Portier test CA chain': give that issuing CA's certificate"),
        (lambda tmp: make_cert(tmp, "old-ca", valid_from_days=-30, valid_to_days=-2)[0],
         r"certificate 1 of 1 \(CN=old-ca\) has expired \(valid 20\d\d-\d\d-\d\d \d\d:\d\d to "
         r"20\d\d-\d\d-\d\d \d\d:\d\d UTC; now .* UTC\): get the site's current CA"),
        (lambda tmp: make_cert(tmp, "new-ca", valid_from_days=2, valid_to_days=30)[0],
         r"\(CN=new-ca\) is not valid yet .* check this computer's clock"),
        (lambda tmp: make_cert(tmp, "leaf-ca", key_cert_sign=False)[0],
         r"\(CN=leaf-ca\) may not sign certificates \(KeyUsage without keyCertSign\)"),
        (_ca_and_key, r"REFUSED: the file holds a private key \(-----BEGIN EC PRIVATE KEY-----\)"
         r".*nothing was written"),
        (_key_only, r"REFUSED: .*-----BEGIN ENCRYPTED PRIVATE KEY-----"),
        (_csr, r"holds a CERTIFICATE REQUEST block: only CA certificates"),
        (_write("garbage.pem", b"not a certificate at all\n"), r"no PEM certificate in the file"),
        (_write("damaged.pem", b"-----BEGIN CERTIFICATE-----\nMIIBfT!!\n"
                b"-----END CERTIFICATE-----\n"), r"a certificate in the file is damaged"),
        (_write("empty.pem", b""), r"the file is empty"),
        (_write("blank.pem", b"\n  \n"), r"the file is empty"),
        (_der, r"not a PEM text file \(binary data: a DER certificate converts with"),
        (_write("huge.pem", b"#" * (64 * 1024 + 1)), r"larger than 64 KiB"),
        (lambda tmp: tmp / "missing.pem", r"cannot read .*missing\.pem: No such file"),
    ],
)  # fmt: skip
def test_central_ca_refused_exits_2_and_writes_nothing(
    image: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    make: Any,
    expected: str,
) -> None:
    path = make(tmp_path)
    with pytest.raises(SystemExit) as exit_:
        cli.main(["provision", str(image), *GOOD, "--central-ca", str(path)])
    assert exit_.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("appliance provision: error: --central-ca: ")
    assert re.search(expected, " ".join(err.split())), err
    with pytest.raises(FileNotFoundError):
        provision.read_provisioning(image)
    assert cmdline(image) == BASE_CMDLINE + "\n"


def test_central_ca_needs_an_https_central(tmp_path: Path) -> None:
    pem = mint_ca(tmp_path, "x")[0].read_text()
    with pytest.raises(InvalidSetting) as exc:
        provision.Provisioning("hq", "d1", "http://127.0.0.1:8080", TOKEN, central_ca=pem)
    assert exc.value.option == "central_ca"
    assert "use https:// or leave --central-ca out" in exc.value.problem
    # Any https host: a name or an address on the site's network.
    for url in ("https://central.hq.example", "https://10.20.0.5:8443/api"):
        settings = provision.Provisioning("hq", "d1", url, TOKEN, central_ca=pem)
        assert provision.parse_provisioning(settings.to_toml()) == settings


@pytest.mark.processes
def test_central_ca_dates_are_checked_when_provisioning_not_on_the_device(
    image: Path, tmp_path: Path
) -> None:
    # A Raspberry Pi has no battery clock: at first boot it may think it is still the
    # day the image was built, so the device reads a CA "not yet valid" (or, on a card
    # left in a drawer, expired) without refusing the file; the installer's computer
    # checks the dates.
    pem = make_cert(tmp_path, "old-ca", valid_from_days=-30, valid_to_days=-2)[0].read_text()
    settings = provision.Provisioning("hq", "d1", "https://c.example", TOKEN, central_ca=pem)
    assert provision.parse_provisioning(settings.to_toml()).central_ca == pem
    with pytest.raises(InvalidSetting, match="has expired"):
        provision.provision(image, settings)
    with pytest.raises(FileNotFoundError):
        provision.read_provisioning(image)
    later = dt.datetime.now(dt.UTC) - dt.timedelta(days=10)
    provision.check_central_ca_dates(pem, later)  # valid then


def test_central_ca_in_the_file_is_validated() -> None:
    text = provision.Provisioning("hq", "d1", "https://c.example", TOKEN).to_toml()
    with pytest.raises(InvalidSetting) as exc:
        provision.parse_provisioning(text + "central_ca = 3\n")
    assert exc.value.option == "central_ca"
    with pytest.raises(InvalidSetting, match=r"^central_ca: no PEM certificate"):
        provision.parse_provisioning(text + 'central_ca = "hello"\n')


# -- the machine ID on the kernel command line -----------------------------------------


@pytest.mark.processes
def test_machine_id_written_once_kept_and_shown(
    image: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert cli.main(["provision", str(image), *GOOD]) == 0
    out = capsys.readouterr().out
    line = cmdline(image)
    match = re.fullmatch(re.escape(BASE_CMDLINE) + r" systemd\.machine_id=([0-9a-f]{32})\n", line)
    assert match, line
    machine_id = match.group(1)
    assert machine_id != "0" * 32
    assert f"machine ID {machine_id} (new;" in out
    assert provision.read_machine_id(image) == machine_id

    # Provisioned again (another door, a host name): same machine ID, line otherwise kept.
    args = [*GOOD]
    args[args.index("lobby")] = "gate-2"
    assert cli.main(["provision", str(image), *args, "--hostname", "gate-2"]) == 0
    assert f"machine ID {machine_id} (kept from the card;" in capsys.readouterr().out
    expected = f"{BASE_CMDLINE} systemd.machine_id={machine_id} systemd.hostname=gate-2\n"
    assert cmdline(image) == expected
    assert cli.main(["provision", str(image), *GOOD]) == 0
    assert cmdline(image) == f"{BASE_CMDLINE} systemd.machine_id={machine_id}\n"

    capsys.readouterr()
    assert cli.main(["show", str(image)]) == 0
    assert f"machine_id   {machine_id}\n" in capsys.readouterr().out


@pytest.mark.processes
def test_machine_id_from_a_card_provisioned_by_hand(image: Path) -> None:
    boot = disk.FatPartition.boot_of(image)
    uuid_form = "0F7762D5-C5BD-4EF7-BDEB-1D293C0A99DB"
    boot.write(
        provision.CMDLINE_FILE,
        f"{BASE_CMDLINE}  systemd.machine_id={uuid_form} quiet\n".encode(),
    )
    done = provision.provision(image, provision.Provisioning("hq", "d1", "https://c.x", TOKEN))
    assert (done.machine_id, done.machine_id_kept) == ("0f7762d5c5bd4ef7bdeb1d293c0a99db", True)
    # The same ID as systemd reads it, written the way provisioning writes it, in place.
    assert cmdline(image) == f"{BASE_CMDLINE} systemd.machine_id={done.machine_id} quiet\n"

    boot.write(provision.CMDLINE_FILE, f"{BASE_CMDLINE} systemd.machine_id={'0' * 32}\n".encode())
    assert provision.read_machine_id(image) is None
    done = provision.provision(image, provision.Provisioning("hq", "d1", "https://c.x", TOKEN))
    assert not done.machine_id_kept and done.machine_id != "0" * 32
    assert cmdline(image) == f"{BASE_CMDLINE} systemd.machine_id={done.machine_id}\n"


def test_cmdline_machine_id_rules() -> None:
    one, two = "a" * 32, "b" * 32
    assert provision.cmdline_machine_id("ro quiet") is None
    assert provision.cmdline_machine_id(f"systemd.machine_id={one} ro") == one
    # Like PID 1: the last valid one counts, invalid ones are ignored.
    assert provision.cmdline_machine_id(f"systemd.machine_id={one} systemd.machine_id={two}") == two
    assert provision.cmdline_machine_id(f"systemd.machine_id={one} systemd.machine_id=xyz") == one
    assert provision.cmdline_machine_id("systemd.machine_id=" + "a" * 31) is None
    line = f"ro systemd.machine_id={one} quiet systemd.machine_id={two}\n"
    assert provision.set_cmdline_machine_id(line, two) == f"ro systemd.machine_id={two} quiet\n"
    for bad in ("A" * 32, "0" * 32, "a" * 33, ""):
        with pytest.raises(ValueError, match="not a machine ID"):
            provision.set_cmdline_machine_id("ro", bad)
    ids = {provision.new_machine_id() for _ in range(100)}
    assert len(ids) == 100
    assert all(provision.MACHINE_ID_PATTERN.fullmatch(i) for i in ids)
