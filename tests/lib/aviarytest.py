"""aviarytest: the small framework the integration tests share (Python 3 stdlib only).

- TAP output: ok()/is_()/... print test points, diag() prints "# " lines, done() prints the
  plan (unless plan() was called first) and exits non-zero when anything failed. main(fn)
  runs a test body and turns an unexpected exception into a failing point.
- Daemon: an aviaryd ($AVIARYD, else build/daemon/aviaryd) in a fresh temp state dir and
  socket, ready once GET /v1/health answers; kill(), restart(), stop().
- Client: HTTP/1.1 over the unix socket (or TCP on 127.0.0.1) answering Response objects
  that unpack as (status, headers, data): data is the parsed JSON, or the raw bytes.
- db_snapshot(), blob_files(), integrity_check(): what is on disk, to prove that a refused
  request changed nothing and that acknowledged writes survive a crash.
- random_blob()/random_bytes()/sha256_digest(): test data and their digests.
"""
import contextlib
import hashlib
import http.client
import json
import os
import re
import shutil
import signal
import socket
import sqlite3
import subprocess
import sys
import tempfile
import time
import traceback

# ---------------------------------------------------------------------------- TAP


class Tap:
    """A TAP producer: numbered points, diagnostics, a plan, an exit code."""

    def __init__(self, out=sys.stdout):
        self.out = out
        self.count = 0
        self.failed = 0
        self.planned = None

    def _print(self, line):
        self.out.write(line + "\n")
        self.out.flush()

    def plan(self, n):
        self.planned = n
        self._print(f"1..{n}")

    def diag(self, *lines):
        for item in lines:
            for line in str(item).splitlines() or [""]:
                self._print("# " + line)

    def ok(self, cond, desc, *diagnostics):
        """One test point. DIAGNOSTICS (strings or callables returning one) are printed
        only when COND is false. Returns bool(COND)."""
        self.count += 1
        desc = " ".join(str(desc).split()).replace("#", "\\#")
        if cond:
            self._print(f"ok {self.count} - {desc}")
            return True
        self.failed += 1
        self._print(f"not ok {self.count} - {desc}")
        for d in diagnostics:
            try:
                self.diag(d() if callable(d) else d)
            except Exception as e:  # a diagnostic must never hide the failure
                self.diag(f"(diagnostic failed: {e!r})")
        return False

    def skip(self, desc, reason):
        self.count += 1
        self._print(f"ok {self.count} - {desc} # SKIP {reason}")

    def bail(self, reason):
        self._print(f"Bail out! {' '.join(str(reason).split())}")
        sys.exit(1)

    def done(self):
        if self.planned is None:
            self._print(f"1..{self.count}")
        elif self.planned != self.count:
            self.diag(f"planned {self.planned} tests but ran {self.count}")
            self.failed += 1
        if self.failed:
            self.diag(f"{self.failed} of {self.count} tests failed")
        sys.exit(1 if self.failed else 0)


TAP = Tap()
plan = TAP.plan
diag = TAP.diag
ok = TAP.ok
skip = TAP.skip
bail = TAP.bail


def is_(got, want, desc, *diagnostics):
    """got == want, showing both on failure."""
    return TAP.ok(got == want, desc, f"got:      {got!r}", f"expected: {want!r}", *diagnostics)


def isnt(got, unwanted, desc, *diagnostics):
    return TAP.ok(got != unwanted, desc, f"got {got!r}, which it must not be", *diagnostics)


def like(text, pattern, desc, *diagnostics):
    """re.search(PATTERN, TEXT)."""
    good = isinstance(text, str) and re.search(pattern, text) is not None
    return TAP.ok(good, desc, f"got:      {text!r}", f"expected to match: {pattern!r}", *diagnostics)


def done():
    TAP.done()


def main(body):
    """Runs BODY(); an exception is one more failing point with its traceback; then done()."""
    try:
        body()
    except SystemExit:
        raise
    except BaseException as e:  # noqa: B902 - report everything, including KeyboardInterrupt
        TAP.ok(False, f"test body ran to its end (it raised {type(e).__name__}: {e})", traceback.format_exc())
    done()


# ---------------------------------------------------------------------------- HTTP


class UnixHTTPConnection(http.client.HTTPConnection):
    """http.client over an AF_UNIX stream socket."""

    def __init__(self, path, timeout=60):
        super().__init__("localhost", timeout=timeout, blocksize=1 << 20)
        self.unix_path = path

    def connect(self):
        s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        s.settimeout(self.timeout)
        try:
            s.connect(self.unix_path)
        except BaseException:
            s.close()
            raise
        self.sock = s


class Response:
    """An answer. Unpacks as (status, headers, data); data is parsed JSON when the body is
    JSON, else the raw bytes. .raw is always the raw body, .json the parsed body or None."""

    def __init__(self, status, reason, headers, raw):
        self.status = status
        self.reason = reason
        self.headers = headers
        self.raw = raw
        self.json = None
        ctype = headers.get("Content-Type", "") if headers is not None else ""
        if raw and ctype.startswith("application/json"):
            try:
                self.json = json.loads(raw.decode("utf-8"))
            except (UnicodeDecodeError, ValueError):
                self.json = None
        self.data = self.json if self.json is not None else raw
        self.send_error = None

    def __iter__(self):
        return iter((self.status, self.headers, self.data))

    def header(self, name):
        return self.headers.get(name) if self.headers is not None else None

    def error_code(self):
        """The "code" of an error envelope, or None."""
        if isinstance(self.json, dict) and isinstance(self.json.get("error"), dict):
            return self.json["error"].get("code")
        return None

    def __repr__(self):
        body = self.raw[:600]
        try:
            body = body.decode("utf-8")
        except UnicodeDecodeError:
            pass
        hdrs = "; ".join(f"{k}: {v}" for k, v in (self.headers.items() if self.headers is not None else []))
        return f"<HTTP {self.status} {self.reason} [{hdrs}] {body!r}>"


class Client:
    """A tiny HTTP client for the API: one connection per request (keep-alive is not what
    these tests are about), over the unix socket, or TCP to 127.0.0.1."""

    def __init__(self, socket_path=None, tcp_port=None, token=None, timeout=60):
        if (socket_path is None) == (tcp_port is None):
            raise ValueError("give exactly one of socket_path and tcp_port")
        self.socket_path = socket_path
        self.tcp_port = tcp_port
        self.token = token
        self.timeout = timeout

    def connection(self):
        if self.socket_path is not None:
            return UnixHTTPConnection(self.socket_path, timeout=self.timeout)
        return http.client.HTTPConnection("127.0.0.1", self.tcp_port, timeout=self.timeout, blocksize=1 << 20)

    def request(self, method, path, body=None, headers=None, json_body=None, content_type=None, sink=None,
                strict=False):
        """Sends one request. BODY: bytes/str (sent as is), or a file object or iterable
        (streamed; give Content-Length in HEADERS or it goes chunked). JSON_BODY: an object
        sent as JSON with Content-Type application/json; otherwise CONTENT_TYPE (or a
        Content-Type in HEADERS) is the only Content-Type sent. SINK: a callable fed the
        response body in chunks instead of keeping it in memory.

        aviaryd may answer from the headers alone (413, 415, 405, an existing blob...) and
        close before the body is all sent; like curl, the answer is then read anyway and
        Response.send_error says what the send ran into. STRICT=True raises instead, as a
        plain http.client user would see it."""
        hdrs = dict(headers or {})
        if json_body is not None:
            body = json.dumps(json_body).encode("utf-8")
            hdrs.setdefault("Content-Type", "application/json")
        if content_type is not None:
            hdrs["Content-Type"] = content_type
        if isinstance(body, str):
            body = body.encode("utf-8")
        if self.token is not None:
            hdrs.setdefault("Authorization", f"Bearer {self.token}")
        conn = self.connection()
        try:
            encode_chunked = False
            if body is not None and not isinstance(body, (bytes, bytearray)) and "Content-Length" not in hdrs:
                hdrs["Transfer-Encoding"] = "chunked"
                encode_chunked = True
            send_error = None
            try:
                conn.request(method, path, body=body, headers=hdrs, encode_chunked=encode_chunked)
            except (BrokenPipeError, ConnectionResetError) as e:
                if strict:
                    raise
                send_error = e
            resp = conn.getresponse()
            if sink is not None:
                while True:
                    chunk = resp.read(1 << 20)
                    if not chunk:
                        break
                    sink(chunk)
                raw = b""
            else:
                raw = resp.read()
            answer = Response(resp.status, resp.reason, resp.headers, raw)
            answer.send_error = send_error
            if sink is None:
                contract_check(method, path, answer)
            return answer
        finally:
            conn.close()

    # Short forms.
    def get(self, path, **kw):
        return self.request("GET", path, **kw)

    def head(self, path, **kw):
        return self.request("HEAD", path, **kw)

    def delete(self, path, **kw):
        return self.request("DELETE", path, **kw)

    def post(self, path, obj=None, **kw):
        return self.request("POST", path, json_body=obj, **kw)

    def patch(self, path, obj=None, **kw):
        return self.request("PATCH", path, json_body=obj, **kw)

    def put_blob(self, data, digest=None, **kw):
        """PUT /v1/blobs/DIGEST with DATA (bytes) as application/octet-stream."""
        digest = digest or sha256_digest(data)
        return self.request("PUT", f"/v1/blobs/{digest}", body=data, content_type="application/octet-stream", **kw)

    def put_blob_file(self, path, digest=None, **kw):
        digest = digest or file_digest(path)
        with open(path, "rb") as f:
            hdrs = dict(kw.pop("headers", {}) or {})
            hdrs["Content-Length"] = str(os.fstat(f.fileno()).st_size)
            return self.request("PUT", f"/v1/blobs/{digest}", body=f, headers=hdrs,
                                content_type="application/octet-stream", **kw)

    def list_all(self, path, limit=100, max_pages=10000):
        """Follows "next" from PATH?limit=LIMIT; returns (items, pages). Raises on a non-200."""
        items, pages, after = [], 0, None
        sep = "&" if "?" in path else "?"
        while True:
            url = f"{path}{sep}limit={limit}" + (f"&after={after}" if after is not None else "")
            r = self.get(url)
            if r.status != 200 or not isinstance(r.json, dict):
                raise AssertionError(f"GET {url}: {r!r}")
            pages += 1
            items.extend(r.json["items"])
            after = r.json["next"]
            if after is None:
                return items, pages
            if pages >= max_pages:
                raise AssertionError(f"GET {path}: more than {max_pages} pages; 'next' never ends")


_contract_seen = set()


def contract_check(method, path, answer):
    """Every answer a test gets is checked against api/openapi.yaml (tests/lib/contract.py);
    each distinct mismatch is one failing test point of the test that met it.
    AVIARY_CONTRACT=off turns this off, for a test that breaks the daemon on purpose."""
    if os.environ.get("AVIARY_CONTRACT") == "off":
        return
    import contract
    contract.record(method, path, answer.status)
    for problem in contract.problems(method, path, answer.status, answer.header("Content-Type"), answer.raw):
        key = re.sub(r"items/\d+", "items/N", problem)
        if key not in _contract_seen:
            _contract_seen.add(key)
            TAP.ok(False, f"the answer fits api/openapi.yaml: {problem}", f"answer: {answer!r}")


def raw_http(sock_path, data, read_timeout=10, shut_write=False):
    """Sends DATA (bytes) on a fresh unix-socket connection and returns what comes back until
    a whole response is in, the peer closes, or READ_TIMEOUT passes without anything
    arriving. A send cut short by the peer (it answered early and closed) is not an error:
    whatever answer it sent is still read, as curl does. For requests http.client would
    not send, or whose answer it would lose. SOCK_PATH may also be ("127.0.0.1", PORT): TCP."""
    s = socket.socket(socket.AF_INET if isinstance(sock_path, tuple) else socket.AF_UNIX, socket.SOCK_STREAM)
    s.settimeout(read_timeout)
    try:
        s.connect(sock_path)
        try:
            view = memoryview(data)
            for i in range(0, len(view), 1 << 16):
                s.sendall(view[i:i + (1 << 16)])
            if shut_write:
                s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass
        out = b""
        while parse_raw_response(out) is None:
            try:
                chunk = s.recv(65536)
            except (socket.timeout, ConnectionResetError):
                break
            if not chunk:
                break
            out += chunk
        return out
    finally:
        s.close()


def raw_request(sock_path, method, path, headers=None, body=b"", read_timeout=10):
    """One request through raw_http; returns a Response (status 0 when no whole answer came).
    BODY None sends no Content-Length; a header given as None is left out; a body with
    "Transfer-Encoding: chunked" must already be chunked (see chunked())."""
    hdrs = {"Host": "aviary"}
    if body is not None:
        hdrs["Content-Length"] = str(len(body))
    hdrs.update(headers or {})
    hdrs = {k: v for k, v in hdrs.items() if v is not None}  # None: leave the header out
    body = body or b""
    head = f"{method} {path} HTTP/1.1\r\n" + "".join(f"{k}: {v}\r\n" for k, v in hdrs.items()) + "\r\n"
    got = raw_http(sock_path, head.encode("utf-8") + body, read_timeout=read_timeout)
    parsed = parse_raw_response(got)
    if parsed is None:
        return Response(0, f"no whole response: {got[:200]!r}", http.client.HTTPMessage(), b"")
    status, hdr, payload = parsed
    msg = http.client.HTTPMessage()
    for k, v in hdr.items():
        msg[k] = v
    return Response(status, "", msg, payload)


def chunked(data, size=16384):
    """DATA in HTTP/1.1 chunked encoding."""
    out = b"".join(b"%x\r\n%s\r\n" % (len(data[i:i + size]), data[i:i + size]) for i in range(0, len(data), size))
    return out + b"0\r\n\r\n"


def parse_raw_response(data):
    """(status, headers dict lower-cased, body) if DATA holds one whole HTTP response with a
    Content-Length, else None."""
    head, sep, rest = data.partition(b"\r\n\r\n")
    if not sep:
        return None
    lines = head.decode("latin-1").split("\r\n")
    m = re.match(r"HTTP/1\.[01] (\d{3})", lines[0])
    if not m:
        return None
    hdrs = {}
    for line in lines[1:]:
        k, _, v = line.partition(":")
        hdrs[k.strip().lower()] = v.strip()
    n = int(hdrs.get("content-length", "0"))
    if len(rest) < n:
        return None
    return int(m.group(1)), hdrs, rest[:n]


# ---------------------------------------------------------------------------- the daemon


def source_root():
    return os.environ.get("AVIARY_SOURCE_ROOT") or os.path.abspath(
        os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", ".."))


def aviaryd_path():
    return os.environ.get("AVIARYD") or os.path.join(source_root(), "build", "daemon", "aviaryd")


def aviary_path():
    return os.environ.get("AVIARY") or os.path.join(source_root(), "build", "client", "aviary")


class DaemonError(Exception):
    pass


class Daemon:
    """An aviaryd of our own: `with Daemon() as d:` starts it in a fresh temporary
    directory (state in DIR/state, socket DIR/sock, stderr in DIR/aviaryd.log) and stops it
    and removes the directory at the end ($AVIARY_TEST_KEEP=1 keeps it).

    CONFIG: text of a config file (or a dict of key -> value) passed with --config.
    RUNTIME: manage guests (default off: the registry and API only).
    ARGS: more command-line arguments. ENV: extra environment. WRAPPER: a command that
    execs aviaryd (e.g. ["unshare", "--net"]), so the process is still aviaryd's.
    PASS_FDS: descriptors the process inherits (sockets for a socket-activation wrapper)."""

    def __init__(self, config=None, args=(), env=None, ready_timeout=10, wrapper=(), runtime=False, pass_fds=()):
        self.binary = aviaryd_path()
        # API tests run without guests (runtime = off): no libvirt, no bridge in the host's
        # network namespace. Guest tests pass runtime=True and a netns wrapper.
        if isinstance(config, dict):
            config = "".join(f"{k} = {v}\n" for k, v in config.items())
        if not runtime:
            config = "runtime = off\n" + (config or "")
        self.tmp = tempfile.mkdtemp(prefix="aviary-it-", dir=os.environ.get("AVIARY_TEST_TMPDIR"))
        self.state_dir = os.path.join(self.tmp, "state")
        self.socket_path = os.path.join(self.tmp, "sock")
        self.log_path = os.path.join(self.tmp, "aviaryd.log")
        self.config_path = None
        if config is not None:
            if isinstance(config, dict):
                config = "".join(f"{k} = {v}\n" for k, v in config.items())
            self.config_path = os.path.join(self.tmp, "aviaryd.conf")
            with open(self.config_path, "w", encoding="utf-8") as f:
                f.write(config)
        self.args = list(args)
        self.wrapper = list(wrapper)
        self.pass_fds = tuple(pass_fds)
        self.env = dict(os.environ, **(env or {}))
        self.ready_timeout = ready_timeout
        self.proc = None
        self.starts = 0
        self.client = Client(socket_path=self.socket_path)

    # -- life cycle

    def command(self):
        cmd = [self.binary, "--state-dir", self.state_dir, "--socket", self.socket_path]
        if self.config_path:
            cmd += ["--config", self.config_path]
        return self.wrapper + cmd + self.args

    def start(self):
        if self.proc is not None and self.proc.poll() is None:
            raise DaemonError("aviaryd is already running")
        self.starts += 1
        log = open(self.log_path, "ab")
        log.write(f"---- start {self.starts}: {' '.join(self.command())}\n".encode())
        log.flush()
        try:
            self.proc = subprocess.Popen(self.command(), stdin=subprocess.DEVNULL, stdout=log, stderr=log,
                                         env=self.env, close_fds=True, pass_fds=self.pass_fds)
        finally:
            log.close()
        self.wait_ready()
        return self

    def wait_ready(self):
        deadline = time.monotonic() + self.ready_timeout
        last = None
        while time.monotonic() < deadline:
            rc = self.proc.poll()
            if rc is not None:
                raise DaemonError(f"aviaryd exited with status {rc} before it was ready; its log:\n{self.log()}")
            if os.path.exists(self.socket_path):
                try:
                    r = Client(socket_path=self.socket_path, timeout=2).get("/v1/health")
                    if r.status == 200:
                        return
                    last = repr(r)
                except OSError as e:
                    last = repr(e)
            time.sleep(0.02)
        self.kill()
        raise DaemonError(f"aviaryd did not answer GET /v1/health within {self.ready_timeout} s "
                          f"(last: {last}); its log:\n{self.log()}")

    @property
    def pid(self):
        return self.proc.pid if self.proc else None

    def running(self):
        return self.proc is not None and self.proc.poll() is None

    def kill(self, sig=signal.SIGKILL):
        """Sends SIG and waits for the exit; returns the exit status."""
        if self.proc is None:
            return None
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
        try:
            return self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait(timeout=10)

    def stop(self):
        """SIGTERM, as an operator would; SIGKILL after 10 s. Returns the exit status."""
        return self.kill(signal.SIGTERM)

    def restart(self, sig=signal.SIGTERM):
        """Stops (with SIG) and starts again on the same state dir and socket. A SIGTERM must
        end aviaryd with status 0, as at the end of `with Daemon()`."""
        status = self.kill(sig)
        if sig == signal.SIGTERM and status not in (0, None):
            TAP.ok(False, f"aviaryd exits with status 0 on SIGTERM (it exited with {status})", self.log()[-3000:])
        return self.start()

    def log(self):
        try:
            with open(self.log_path, "rb") as f:
                return f.read().decode("utf-8", "replace")
        except OSError:
            return "(no log)"

    def __enter__(self):
        try:
            return self.start()
        except BaseException:
            self.cleanup()
            raise

    def __exit__(self, *exc):
        if self.running():
            status = self.stop()
            # SIGTERM is an orderly stop: 0. A sanitizer's exit (1, or LeakSanitizer's 23) or a
            # crash on the way out is a failure of the test that ran it.
            if status != 0:
                TAP.ok(False, f"aviaryd exits with status 0 on SIGTERM (it exited with {status})",
                       self.log()[-3000:])
        self.check_sanitizers()
        self.cleanup()
        return False

    def check_sanitizers(self):
        """Under ASan/UBSan or TSan (tests/run.sh with AVIARY_SANITIZE=1) a report in the
        daemon's log is a failure of the test that ran it."""
        try:
            text = self.log()
        except OSError:
            return
        reports = SANITIZER_REPORT.findall(text)
        if reports or os.environ.get("AVIARY_SANITIZE"):
            TAP.ok(not reports, "the daemon ran without sanitizer reports", *(reports[:5] + [text[-4000:]]
                                                                               if reports else []))

    def cleanup(self):
        if self.proc is not None and self.proc.poll() is None:
            self.kill()
        if os.environ.get("AVIARY_TEST_KEEP"):
            diag(f"keeping {self.tmp}")
        else:
            shutil.rmtree(self.tmp, ignore_errors=True)

    # -- conveniences

    def request(self, *a, **kw):
        return self.client.request(*a, **kw)

    def snapshot(self):
        return db_snapshot(self.state_dir)

    def blob_files(self):
        return blob_files(self.state_dir)

    def vm_hwm(self):
        return proc_status_kib(self.pid, "VmHWM") * 1024

    def events(self):
        return self.client.list_all("/v1/events", limit=1000)[0]


SANITIZER_REPORT = re.compile(
    r"^.*(?:ERROR: (?:Address|Leak)Sanitizer|WARNING: ThreadSanitizer|runtime error:|SUMMARY: \w+Sanitizer).*$", re.M)


def start_refused(returncode, stderr, desc, want=None):
    """One point: an aviaryd run that must refuse to start exited with EXIT_FAILURE (1) on its
    own, saying why (WANT, a regex, when given), without a sanitizer report. Any non-zero
    status would let a crash or a sanitizer's abort pass for a refusal (LeakSanitizer exits
    23, AddressSanitizer 1: hence the report check too). RETURNCODE None: still running."""
    problems = []
    if returncode is None:
        problems.append("still running (killed by the test)")
    elif returncode != 1:
        problems.append(f"exit status {returncode}, expected 1 (EXIT_FAILURE)")
    reports = SANITIZER_REPORT.findall(stderr or "")
    if reports:
        problems.append("sanitizer reports: " + "; ".join(reports[:3]))
    if want is not None and not re.search(want, stderr or ""):
        problems.append(f"stderr does not match {want!r}")
    return ok(not problems, desc, *problems, f"stderr: {(stderr or '')[-2000:]}")


def proc_status_kib(pid, field):
    with open(f"/proc/{pid}/status", encoding="ascii") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise KeyError(field)


def free_tcp_port():
    """A port on 127.0.0.1 that nobody listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


# ---------------------------------------------------------------------------- state on disk


def db_path(state_dir):
    return os.path.join(state_dir, "aviary.db")


@contextlib.contextmanager
def db_readonly(state_dir):
    conn = sqlite3.connect(f"file:{db_path(state_dir)}?mode=ro", uri=True, timeout=10)
    try:
        yield conn
    finally:
        conn.close()


def _row_key(row):
    # STRICT tables keep one type per column, but NULLs mix in: order them first.
    return [(v is not None, type(v).__name__, v if v is not None else 0) for v in row]


def db_snapshot(state_dir):
    """{table: sorted list of row tuples} for every table of the database, read through a
    read-only connection. Equal snapshots mean nothing in the database changed."""
    with db_readonly(state_dir) as conn:
        tables = [r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name")]
        snap = {}
        for t in tables:
            rows = conn.execute(f'SELECT * FROM "{t}"').fetchall()
            snap[t] = sorted(rows, key=_row_key)
        snap["(user_version)"] = conn.execute("PRAGMA user_version").fetchone()[0]
        return snap


def db_query(state_dir, sql, params=()):
    with db_readonly(state_dir) as conn:
        return conn.execute(sql, params).fetchall()


def snapshot_diff(a, b, limit=20):
    """Human-readable differences between two snapshots (for diagnostics)."""
    out = []
    for t in sorted(set(a) | set(b)):
        ra, rb = a.get(t), b.get(t)
        if ra == rb:
            continue
        if not isinstance(ra, list) or not isinstance(rb, list):
            out.append(f"{t}: {ra!r} -> {rb!r}")
            continue
        sa, sb = set(map(tuple, ra)), set(map(tuple, rb))
        for row in sorted(sa - sb, key=_row_key)[:limit]:
            out.append(f"{t}: - {row!r}")
        for row in sorted(sb - sa, key=_row_key)[:limit]:
            out.append(f"{t}: + {row!r}")
    return "\n".join(out) or "(no difference)"


def integrity_check(state_dir):
    """PRAGMA integrity_check's rows, joined ("ok" when all is well)."""
    with db_readonly(state_dir) as conn:
        return "\n".join(r[0] for r in conn.execute("PRAGMA integrity_check"))


def blob_files(state_dir):
    """Sorted names of every entry under STATE/blobs/sha256 (hidden ones too)."""
    d = os.path.join(state_dir, "blobs", "sha256")
    try:
        return sorted(os.listdir(d))
    except FileNotFoundError:
        return []


def blob_file_path(state_dir, digest):
    return os.path.join(state_dir, "blobs", "sha256", digest.split(":", 1)[1])


# ---------------------------------------------------------------------------- test data


def sha256_digest(data):
    return "sha256:" + hashlib.sha256(data).hexdigest()


def file_digest(path):
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while True:
            chunk = f.read(1 << 20)
            if not chunk:
                break
            h.update(chunk)
    return "sha256:" + h.hexdigest()


def random_bytes(n):
    """(data, digest) of N random bytes."""
    data = os.urandom(n)
    return data, sha256_digest(data)


def random_blob(directory, size, name=None):
    """Writes SIZE random bytes to a new file in DIRECTORY; returns (path, digest)."""
    fd, path = tempfile.mkstemp(prefix=name or "blob-", dir=directory)
    h = hashlib.sha256()
    with os.fdopen(fd, "wb") as f:
        left = size
        while left > 0:
            chunk = os.urandom(min(left, 1 << 20))
            h.update(chunk)
            f.write(chunk)
            left -= len(chunk)
    return path, "sha256:" + h.hexdigest()


def canonical_json(obj):
    """The canonical JSON of docs/api.md: sorted keys, no whitespace, UTF-8."""
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def version_digest(manifest):
    return sha256_digest(canonical_json(manifest))


RFC3339_MS = r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$"


def check_error(resp, status, code, desc, request_id=None):
    """One point: RESP is STATUS with the error envelope of CODE whose request_id equals the
    X-Request-Id header (and REQUEST_ID when given) and whose message is non-empty."""
    problems = []
    if resp.status != status:
        problems.append(f"status {resp.status}, expected {status}")
    ctype = resp.header("Content-Type") or ""
    if not ctype.startswith("application/json"):
        problems.append(f"Content-Type {ctype!r}, expected application/json")
    j = resp.json
    err = j.get("error") if isinstance(j, dict) else None
    if not isinstance(err, dict) or set(j) != {"error"}:
        problems.append("body is not {\"error\": {...}}")
    else:
        if set(err) != {"code", "message", "request_id"}:
            problems.append(f"error has keys {sorted(err)}, expected code, message, request_id")
        if err.get("code") != code:
            problems.append(f"code {err.get('code')!r}, expected {code!r}")
        if not isinstance(err.get("message"), str) or not err.get("message"):
            problems.append("empty message")
        rid = resp.header("X-Request-Id")
        if not rid or err.get("request_id") != rid:
            problems.append(f"request_id {err.get('request_id')!r} != X-Request-Id {rid!r}")
        if request_id is not None and err.get("request_id") != request_id:
            problems.append(f"request_id {err.get('request_id')!r}, expected the caller's {request_id!r}")
    return ok(not problems, desc, *problems, f"response: {resp!r}")


# ---------------------------------------------------------------------------- fixtures


def upload(client, data):
    """PUTs DATA as a blob; returns its digest. Raises unless the daemon answers 200/201."""
    digest = sha256_digest(data)
    r = client.put_blob(data, digest)
    if r.status not in (200, 201):
        raise AssertionError(f"PUT /v1/blobs/{digest}: {r!r}")
    return digest


def push_version(client, image, tag, kernel=None, initrd=None, expect=(200, 201), **fields):
    """Creates IMAGE:TAG (uploading a random kernel/initrd when not given digests) and
    returns the version JSON. Raises unless the status is in EXPECT."""
    if kernel is None:
        kernel = upload(client, os.urandom(4096))
    body = {"version": tag, "kernel": kernel}
    if initrd is not None:
        body["initrd"] = initrd
    body.update(fields)
    r = client.post(f"/v1/images/{image}/versions", body)
    if r.status not in expect:
        raise AssertionError(f"POST /v1/images/{image}/versions {body}: {r!r}")
    return r.json


def create_service(client, name, expect=(201,), **fields):
    r = client.post("/v1/services", dict(name=name, **fields))
    if r.status not in expect:
        raise AssertionError(f"POST /v1/services {name}: {r!r}")
    return r.json
