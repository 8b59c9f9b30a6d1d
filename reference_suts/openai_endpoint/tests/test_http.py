"""HTTP that real deployments need: redirects, proxies, TLS, no double POST, cache salt.

Everything runs on 127.0.0.1 in the test's event loop: the scripted server, a tiny redirecting
server, a tiny proxy (absolute-form forwarding and ``CONNECT`` tunnels) that logs every request
line it sees, and a TLS front end (certificates made here with ``cryptography``) that decrypts
and forwards to the scripted server.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import ipaddress
import re
import ssl
from collections.abc import Callable
from pathlib import Path

import pytest
from aiohttp import web

from reference_suts.openai_endpoint.client import EndpointClient, dumps
from reference_suts.openai_endpoint.transport import Proxy, resolve_proxy

from .scripted_server import Script, ScriptedServer

BODY = {"model": "m", "prompt": "hi", "stream": True}

async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter,
                tap: Callable[[bytes], None] | None = None) -> None:
    try:
        while data := await reader.read(65536):
            if tap is not None:
                tap(data)
            writer.write(data)
            await writer.drain()
    except (ConnectionError, asyncio.CancelledError):
        pass
    finally:
        writer.close()

class _Relay:
    """A TCP server on 127.0.0.1 whose ``handle(reader, writer)`` each test defines."""

    def __init__(self, ssl_ctx: ssl.SSLContext | None = None) -> None:
        self.ssl_ctx = ssl_ctx
        self.port = 0
        self._server: asyncio.AbstractServer | None = None
        self._tasks: set[asyncio.Task[None]] = set()

    async def __aenter__(self) -> _Relay:
        self._server = await asyncio.start_server(self._client, "127.0.0.1", 0, ssl=self.ssl_ctx)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._server is not None
        self._server.close()
        for t in list(self._tasks):
            t.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _client(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            await self.handle(reader, writer)
        finally:
            self._tasks.discard(task)

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        raise NotImplementedError

    async def _forward(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, host: str, port: int,
                       first: bytes = b"", tap: Callable[[bytes], None] | None = None) -> None:
        ur, uw = await asyncio.open_connection(host, port)
        if first:
            uw.write(first)
        await asyncio.gather(_pipe(reader, uw, tap), _pipe(ur, writer))

class LoggingProxy(_Relay):
    """``CONNECT`` tunnels and absolute-form forwarding; ``lines`` = every request line seen."""

    def __init__(self) -> None:
        super().__init__()
        self.lines: list[str] = []
        self._stream = b""

    def _sniff(self, data: bytes) -> None:
        self._stream += data
        self.lines += [m.decode() for m in re.findall(rb"(?:^|\r\n)((?:GET|POST) http://\S+ HTTP/1\.1)\r\n", data)]

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        head = await reader.readuntil(b"\r\n\r\n")
        line = head.split(b"\r\n", 1)[0].decode()
        method, target, _ = line.split(" ", 2)
        if method == "CONNECT":
            self.lines.append(line)
            host, port = target.rsplit(":", 1)
            writer.write(b"HTTP/1.1 200 Connection established\r\n\r\n")
            await self._forward(reader, writer, host, int(port))
            return
        self._sniff(head)
        m = re.match(r"http://([^/:]+):(\d+)/", target)
        assert m, target
        await self._forward(reader, writer, m.group(1), int(m.group(2)), first=head, tap=self._sniff)

class TLSFront(_Relay):
    """Terminates TLS and forwards the plain bytes to ``port`` (the scripted server)."""

    def __init__(self, ssl_ctx: ssl.SSLContext, upstream: str) -> None:
        super().__init__(ssl_ctx)
        self.upstream_port = int(upstream.rsplit(":", 1)[1])

    async def handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await self._forward(reader, writer, "127.0.0.1", self.upstream_port)

@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path, Path]:
    """(ca.pem, server.pem, server.key): a self-signed CA and a server cert for IP 127.0.0.1."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    d = tmp_path_factory.mktemp("certs")
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "raybench test CA")])
    ca = (x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
          .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
          .add_extension(x509.KeyUsage(digital_signature=True, key_cert_sign=True, crl_sign=True, content_commitment=False,
                                       key_encipherment=False, data_encipherment=False, key_agreement=False,
                                       encipher_only=False, decipher_only=False), critical=True)
          .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
          .sign(ca_key, hashes.SHA256()))
    key = ec.generate_private_key(ec.SECP256R1())
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")]))
            .issuer_name(ca_name).public_key(key.public_key()).serial_number(2)
            .not_valid_before(now - dt.timedelta(hours=1)).not_valid_after(now + dt.timedelta(days=1))
            .add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
            .add_extension(x509.ExtendedKeyUsage([x509.oid.ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
            .sign(ca_key, hashes.SHA256()))
    (d / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (d / "server.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    (d / "server.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                     serialization.NoEncryption()))
    return d / "ca.pem", d / "server.pem", d / "server.key"

def _server_ctx(certs: tuple[Path, Path, Path]) -> ssl.SSLContext:
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(certs[1], certs[2])
    return ctx

# ----------------------------------------------------------------------------------- redirects
class Redirector:
    """POST /v1/completions -> 307 to /hop2 (relative); POST /hop2 -> 308 to ``final``."""

    def __init__(self, final: str) -> None:
        self.final = final
        self.bodies: list[tuple[str, dict[str, object]]] = []
        self.auth: list[str | None] = []
        self.url = ""
        self._runner: web.AppRunner | None = None

    async def _hop1(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization"))
        self.bodies.append((request.path, await request.json()))
        return web.Response(status=307, headers={"Location": "/hop2"})

    async def _hop2(self, request: web.Request) -> web.Response:
        self.auth.append(request.headers.get("Authorization"))
        self.bodies.append((request.path, await request.json()))
        return web.Response(status=308, headers={"Location": self.final})

    async def __aenter__(self) -> Redirector:
        app = web.Application()
        app.router.add_post("/v1/completions", self._hop1)
        app.router.add_post("/hop2", self._hop2)
        self._runner = web.AppRunner(app, handle_signals=False, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", 0)
        await site.start()
        self.url = f"http://127.0.0.1:{site._server.sockets[0].getsockname()[1]}"  # type: ignore[union-attr]
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self._runner is not None
        await self._runner.cleanup()

def test_redirect_chain_ends_in_exactly_one_post_at_the_final_url() -> None:
    async def main() -> None:
        async with ScriptedServer({"hi": Script(chunks=["a", "b"])}) as srv, \
                Redirector(srv.url + "/v1/completions") as red:
            client = EndpointClient([red.url], connections=1, proxy="none", headers={"Authorization": "Bearer k"})
            await client.start()
            c = await client.request("/v1/completions", dumps(BODY), chat=False)
            await asyncio.sleep(0.1)
            await client.close()
            assert c.error is None and c.text == "ab"
            assert srv.posts == 1 and srv.requests == [BODY]  # the body travelled unchanged
            assert red.bodies == [("/v1/completions", BODY), ("/hop2", BODY)]  # 307 and 308 kept POST + body
            # The key stays on its own origin (the relative hop); the other origin never sees it.
            assert red.auth == ["Bearer k", "Bearer k"] and "Authorization" not in srv.headers[-1]

            # The same chain with one hop allowed: the 308 is reported, the final URL never POSTed.
            client = EndpointClient([red.url], follow_redirects=1, proxy="none")
            await client.start()
            c = await client.request("/v1/completions", dumps(BODY), chat=False)
            await client.close()
            assert c.error == f"http 308 redirect to {srv.url}/v1/completions: more than 1 redirect"
            assert srv.posts == 1

            # follow_redirects=0: the first 307 is the answer.
            client = EndpointClient([red.url], follow_redirects=0, proxy="none")
            await client.start()
            c = await client.request("/v1/completions", dumps(BODY), chat=False)
            await client.close()
            assert c.error == "http 307 redirect to /hop2 (redirects are not followed)"
            assert len(red.bodies) == 2 + 2 + 1

    asyncio.run(main())

# ------------------------------------------------------------------------------------- proxies
def test_resolve_proxy_reads_env_and_no_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy", "ALL_PROXY", "all_proxy"):
        monkeypatch.delenv(k, raising=False)
    assert resolve_proxy("http://10.0.0.1:8000") is None
    monkeypatch.setenv("HTTP_PROXY", "http://u%40x:p%3Aw@proxy.local:3128")
    monkeypatch.setenv("HTTPS_PROXY", "proxy.local:8080")
    monkeypatch.setenv("NO_PROXY", "internal.example,10.0.0.2")
    p = resolve_proxy("http://10.0.0.1:8000")
    assert p == Proxy("proxy.local", 3128, "Basic dUB4OnA6dw==")  # base64("u@x:p:w")
    assert "p:w" not in repr(p) and repr(p) == "Proxy(proxy.local:3128, auth=***)"
    assert resolve_proxy("https://10.0.0.1") == Proxy("proxy.local", 8080, None)
    assert resolve_proxy("http://10.0.0.2:8000") is None
    assert resolve_proxy("http://gpu.internal.example:8000") is None
    assert resolve_proxy("http://10.0.0.1:8000", "none") is None
    assert resolve_proxy("http://10.0.0.2:8000", "http://other:1") == Proxy("other", 1, None)  # explicit: no bypass
    monkeypatch.setenv("HTTP_PROXY", "socks5://proxy.local:1080")
    with pytest.raises(ValueError, match=r"^HTTP_PROXY: socks5://proxy.local is not an http://host:port proxy$"):
        resolve_proxy("http://10.0.0.1:8000")

def _clear_proxy_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for k in ("HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy", "no_proxy"):
        monkeypatch.delenv(k, raising=False)

def test_http_proxy_sees_absolute_form_requests_and_no_proxy_bypasses_it(monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)

    async def main() -> None:
        async with ScriptedServer({"hi": Script(chunks=["x"])}) as srv, LoggingProxy() as px:
            monkeypatch.setenv("HTTP_PROXY", f"http://127.0.0.1:{px.port}")
            client = EndpointClient([srv.url], connections=1)
            await client.start()
            assert client.pools[0].proxy == Proxy("127.0.0.1", px.port)
            for _ in range(2):
                c = await client.request("/v1/completions", dumps(BODY), chat=False)
                assert c.error is None and c.text == "x"
            await client.close()
            assert px.lines == [f"POST {srv.url}/v1/completions HTTP/1.1"] * 2
            assert srv.posts == 2

            monkeypatch.setenv("NO_PROXY", "localhost,127.0.0.1")
            client = EndpointClient([srv.url], connections=1)
            await client.start()
            assert client.pools[0].proxy is None
            c = await client.request("/v1/completions", dumps(BODY), chat=False)
            await client.close()
            assert c.error is None
            assert len(px.lines) == 2 and srv.posts == 3  # straight to the server

    asyncio.run(main())

# ----------------------------------------------------------------------------------------- TLS
def test_tls_with_ca_bundle_without_it_and_unverified(certs: tuple[Path, Path, Path],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)
    ca = str(certs[0])

    async def main() -> None:
        async with ScriptedServer({"hi": Script(chunks=["s"])}) as srv, TLSFront(_server_ctx(certs), srv.url) as tls:
            url = f"https://127.0.0.1:{tls.port}"
            client = EndpointClient([url], connections=1, ca_bundle=ca)
            await client.start()
            c = await client.request("/v1/completions", dumps(BODY), chat=False)
            await client.close()
            assert c.error is None and c.text == "s" and srv.posts == 1

            client = EndpointClient([url], connections=1)  # system CAs only: the handshake fails
            with pytest.raises(ConnectionError) as err:
                await client.start()
            msg = str(err.value)
            assert msg.startswith(f"cannot reach {url}: [SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed")
            assert "\n" not in msg
            client = EndpointClient([url])  # no pre-warm: the request carries the failure
            await client.start()
            c = await client.request("/v1/completions", dumps(BODY), chat=False)
            assert c.error is not None and c.error.startswith("connect failed: [SSL: CERTIFICATE_VERIFY_FAILED]")
            assert srv.posts == 1

            client = EndpointClient([url], connections=1, verify_tls=False)
            await client.start()
            c = await client.request("/v1/completions", dumps(BODY), chat=False)
            await client.close()
            assert c.error is None and c.text == "s" and srv.posts == 2

            with pytest.raises(ConnectionError, match=r"^ca_bundle: /nonexistent/ca.pem: no such file$"):
                await EndpointClient([url], ca_bundle="/nonexistent/ca.pem").start()

    asyncio.run(main())

def test_https_through_a_connect_tunnel(certs: tuple[Path, Path, Path], monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)

    async def main() -> None:
        async with ScriptedServer({"hi": Script(chunks=["t"])}) as srv, \
                TLSFront(_server_ctx(certs), srv.url) as tls, LoggingProxy() as px:
            monkeypatch.setenv("HTTPS_PROXY", f"http://127.0.0.1:{px.port}")
            client = EndpointClient([f"https://127.0.0.1:{tls.port}"], connections=2, ca_bundle=str(certs[0]))
            await client.start()
            for _ in range(3):
                c = await client.request("/v1/completions", dumps(BODY), chat=False)
                assert c.error is None and c.text == "t"
            await client.close()
            # One tunnel per socket (two pre-warmed), requests inside them are encrypted.
            assert px.lines == [f"CONNECT 127.0.0.1:{tls.port} HTTP/1.1"] * 2
            assert srv.posts == 3

    asyncio.run(main())

# ------------------------------------------------------------------------ never POST twice
@pytest.mark.parametrize("tls", [False, True])
def test_a_server_slower_than_the_timeout_gets_exactly_one_post(tls: bool, certs: tuple[Path, Path, Path],
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    _clear_proxy_env(monkeypatch)

    async def main() -> None:
        async with ScriptedServer({"hi": Script(chunks=["late"], ttft_ms=600)}) as srv:
            async def go(url: str, **kw: object) -> None:
                client = EndpointClient([url], timeout_s=0.2, connections=1, **kw)  # type: ignore[arg-type]
                await client.start()
                c = await client.request("/v1/completions", dumps(BODY), chat=False)
                assert c.error == "timeout after 0.2s"
                await asyncio.sleep(0.7)  # past the server's delay: a retry would have landed by now
                assert srv.posts == 1 and client.pools[0].opened == 1
                await client.close()

            if tls:
                async with TLSFront(_server_ctx(certs), srv.url) as front:
                    await go(f"https://127.0.0.1:{front.port}", ca_bundle=str(certs[0]))
            else:
                await go(srv.url)

    asyncio.run(main())

# ----------------------------------------------------------------------------------- cache salt
def test_cache_salt_is_present_and_distinct_per_request() -> None:
    from raybench.core.protocols import Query, SUTContext
    from reference_suts.openai_endpoint.sut import OpenAIEndpointSUT

    ctx = SUTContext(workload="chat", scenario="Offline", mode="PerformanceOnly")

    async def run(params: dict[str, object], n: int) -> list[dict[str, object]]:
        async with ScriptedServer({"same": Script(chunks=["a"])}) as srv:
            sut = OpenAIEndpointSUT({"urls": [srv.url], "connections": 1, "proxy": "none", **params})
            await sut.start(ctx)
            resps = await sut.issue(Query(id=0, indices=list(range(n)), samples=[{"prompt": "same"}] * n))
            resps = list(resps) + list(await sut.issue(Query(id=1, indices=[0], samples=["same"])))
            await sut.stop()
            assert all(r.error is None for r in resps)
            return srv.requests

    reqs = asyncio.run(run({"cache_salt": True}, 3))
    salts = [r["cache_salt"] for r in reqs]
    assert len(salts) == 4 and len(set(salts)) == 4
    prefix = str(salts[0]).rsplit("-", 1)[0]
    assert sorted(salts) == sorted(f"{prefix}-{i}" for i in range(4))  # one instance prefix, a counter each
    assert all(r["prompt"] == "same" for r in reqs)
    assert all("cache_salt" not in r for r in asyncio.run(run({}, 2)))

def test_bad_http_params_name_the_field() -> None:
    from raybench.core.spec import ParamsError
    from reference_suts.openai_endpoint.sut import OpenAIEndpointSUT

    with pytest.raises(ParamsError, match=r"sut.params.proxy"):
        OpenAIEndpointSUT({"proxy": "socks5://p:1"})
    with pytest.raises(ParamsError, match=r"sut.params.follow_redirects"):
        OpenAIEndpointSUT({"follow_redirects": -1})
    with pytest.raises(ParamsError, match=r"sut.params.telemetry_urls"):
        OpenAIEndpointSUT({"telemetry_urls": ["gpu-0:8000/metrics"]})
