"""Image URLs: http(s) only, size- and time-limited, and never at the worker's own network."""

from __future__ import annotations

import datetime
import ipaddress
import re
import socket
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from support.httpserver import FileServer, _Handler

from worker.image_fetch import check_destination, fetch_image, is_public
from worker.job_input import JobInputError


@pytest.fixture(scope="module")
def files():
    with FileServer() as server:
        yield server


@pytest.mark.parametrize(
    "url",
    [
        "http://127.0.0.1:8188/view?filename=x",
        "http://localhost/x",
        "http://169.254.169.254/latest/meta-data/",
        "http://10.0.0.7/x.png",
        "http://[::1]/x.png",
    ],
)
def test_non_public_addresses_are_refused(url):
    with pytest.raises(JobInputError, match=r"non-public address .* which is refused"):
        check_destination(url, allow_private=False)


def test_only_http_and_https(files):
    with pytest.raises(JobInputError, match="only http and https"):
        check_destination("ftp://example.com/x.png", allow_private=True)


def test_download_within_limits(files):
    url = files.add("/ok.png", b"x" * 1000)
    assert fetch_image(url, max_bytes=1000, timeout=5, allow_private=True) == b"x" * 1000
    with pytest.raises(JobInputError, match="1000 bytes, over the limit of 999"):
        fetch_image(url, max_bytes=999, timeout=5, allow_private=True)


def test_redirects_are_checked_hop_by_hop():
    class Redirect(FileServer):
        def handle(self, handler, head):
            handler.send_response(302)
            handler.send_header("Location", "file:///etc/passwd")
            handler.send_header("Content-Length", "0")
            handler.end_headers()

    with Redirect() as redirect, pytest.raises(JobInputError, match="only http and https"):
        fetch_image(redirect.url("/x.png"), max_bytes=10, timeout=5, allow_private=True)


class Trickle(FileServer):
    """Sends `size` bytes, one every `gap` seconds, as a stalling server would. With `length`
    False there is no Content-Length: the body ends when the server closes the connection."""

    def __init__(self, size: int, gap: float, length: bool = True) -> None:
        super().__init__()
        self.size, self.gap, self.length = size, gap, length
        self.started = 0  # bytes the server began to send

    def handle(self, handler, head):
        handler.send_response(200)
        if self.length:
            handler.send_header("Content-Length", str(self.size))
        else:
            handler.send_header("Connection", "close")
            handler.close_connection = True
        handler.end_headers()
        try:
            for _ in range(self.size):
                self.started += 1
                handler.wfile.write(b"x")
                handler.wfile.flush()
                time.sleep(self.gap)  # the server's pace, not synchronisation
        except OSError:
            return


class _TLSHandler(_Handler):
    def setup(self) -> None:
        self.request = self.server.owner.context.wrap_socket(self.request, server_side=True)
        super().setup()


class TLSTrickle(Trickle):
    """Trickle over HTTPS, with a certificate for 127.0.0.1 from `context`."""

    handler_class = _TLSHandler

    def __init__(self, context: ssl.SSLContext, size: int, gap: float, length: bool = True) -> None:
        super().__init__(size, gap, length)
        self.context = context

    @property
    def base_url(self) -> str:
        return f"https://127.0.0.1:{self.port}"


@pytest.fixture(scope="module")
def certificate(tmp_path_factory):
    """A self-signed certificate for 127.0.0.1, made for this run: (its file, its key file)."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    folder = tmp_path_factory.mktemp("tls")
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    return cert_file, key_file


@pytest.fixture()
def tls(certificate, monkeypatch):
    """A server context for the certificate, which the client trusts (through requests' own
    REQUESTS_CA_BUNDLE: verification stays on)."""
    cert_file, key_file = certificate
    monkeypatch.setenv("REQUESTS_CA_BUNDLE", str(cert_file))
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert_file, key_file)
    return context


def test_https_downloads_are_verified(tls, monkeypatch):
    with TLSTrickle(tls, size=3, gap=0) as server:
        url = server.url("/x.png")
        assert fetch_image(url, max_bytes=1000, timeout=10, allow_private=True) == b"xxx"
        monkeypatch.delenv("REQUESTS_CA_BUNDLE")  # the certificate is not trusted any more
        with pytest.raises(JobInputError, match=r"could not be fetched: .*CERTIFICATE_VERIFY"):
            fetch_image(url, max_bytes=1000, timeout=10, allow_private=True)


@pytest.mark.parametrize("length", [True, False], ids=["with-length", "without-length"])
def test_the_timeout_bounds_a_download_that_keeps_trickling(length):
    # every read gets a byte well within the timeout, so only an overall deadline stops it;
    # without a length the cut must not pass for the end of the body
    with Trickle(size=200, gap=0.05, length=length) as slow:
        with pytest.raises(JobInputError, match=r"took longer than 0.5 s \(IMAGE_URL_TIMEOUT\)"):
            fetch_image(slow.url("/x.png"), max_bytes=1000, timeout=0.5, allow_private=True)
        assert slow.started < slow.size  # stopped while the server still had bytes to send


@pytest.mark.parametrize("length", [True, False], ids=["with-length", "without-length"])
def test_the_timeout_bounds_an_https_download_that_keeps_trickling(tls, length):
    with TLSTrickle(tls, size=200, gap=0.05, length=length) as slow:
        with pytest.raises(JobInputError, match=r"took longer than 0.5 s \(IMAGE_URL_TIMEOUT\)"):
            fetch_image(slow.url("/x.png"), max_bytes=1000, timeout=0.5, allow_private=True)
        assert slow.started < slow.size  # stopped while the server still had bytes to send


def test_a_name_that_resolves_to_loopback_on_the_second_lookup_is_refused(files, monkeypatch):
    url = files.add("/rebind.png", b"secret")
    real = socket.getaddrinfo
    lookups = []

    def rebinding(host, port, *args, **kwargs):
        if host != "rebind.example":
            return real(host, port, *args, **kwargs)
        lookups.append(host)
        address = "93.184.216.34" if len(lookups) == 1 else "127.0.0.1"
        return [(socket.AF_INET, socket.SOCK_STREAM, 6, "", (address, port))]

    monkeypatch.setattr(socket, "getaddrinfo", rebinding)
    rebound = url.replace("127.0.0.1", "rebind.example")
    with pytest.raises(
        JobInputError,
        match=re.escape("connected to the non-public address 127.0.0.1, which is refused"),
    ):
        fetch_image(rebound, max_bytes=1000, timeout=5, allow_private=False)
    assert len(lookups) == 2  # the check's lookup passed; the connection's was caught
    assert files.gets("/rebind.png") == 0  # refused before the request was sent


def test_a_bad_port_is_an_input_error():
    with pytest.raises(
        JobInputError, match=re.escape("image URL 'http://example.com:99999/x.png'")
    ):
        check_destination("http://example.com:99999/x.png", allow_private=False)


@pytest.mark.parametrize(
    ("address", "public"),
    [
        ("8.8.8.8", True),
        ("2606:4700:4700::1111", True),
        ("127.0.0.1", False),
        ("::ffff:127.0.0.1", False),  # IPv4-mapped
        ("::7f00:1", False),  # IPv4-compatible
        ("::ffff:0:7f00:1", False),  # SIIT
        ("64:ff9b::7f00:1", False),  # NAT64
        ("64:ff9b::a9fe:a9fe", False),  # NAT64 of the metadata address 169.254.169.254
        ("64:ff9b:1::a00:1", False),  # NAT64 local-use
        ("2002:7f00:1::", False),  # 6to4 of 127.0.0.1
        ("2002:a00:1::1", False),  # 6to4 of 10.0.0.1
        ("2002:808:808::1", True),  # 6to4 of 8.8.8.8
        ("64:ff9b::808:808", True),  # NAT64 of 8.8.8.8
    ],
)
def test_an_ipv6_address_that_embeds_an_ipv4_one_is_judged_by_it(address, public):
    assert is_public(ipaddress.ip_address(address)) is public
