#!/usr/bin/python3
"""A static HTTP server for the feed tests, with misbehaviours on demand.

Serves DIRECTORY on 127.0.0.1:PORT (port 0 picks a free port; the chosen
port is printed to stdout as "port N"). Byte ranges are honoured (RFC 9110
section 14: one range per request), so a client can resume.

The control file (--control FILE, re-read on every request) is a JSON
object mapping request paths to a behaviour, or a list of behaviours.
Paths are matched exactly first, then as shell patterns (fnmatch), in the
file's order; a path with no entry is served normally.

    endless        200 with no Content-Length, bytes forever
    slow           the real response, 1 byte per second
    status:NNN     answer NNN (with a short text body, as real servers do)
    status-once:NNN  answer NNN once, then serve normally
    drop-once      send half the body, then close the connection; serve
                   normally from the next request on
    no-range       ignore Range headers (always 200 with the whole file)

"once" behaviours re-arm whenever the control file's content changes.

Each request is logged to stderr as one line:
    feed-server: GET /timestamp.json range=- -> 200 612/612 bytes [behaviour]
SIGTERM and SIGINT stop the server and exit with status 0.

Python 3 standard library only: run with /usr/bin/python3.
"""

import argparse
import fnmatch
import http.server
import json
import os
import re
import signal
import socketserver
import sys
import threading
import time
import urllib.parse

CHUNK = 64 * 1024


class Control:
    """The control file and the "once" behaviours already used."""

    def __init__(self, path):
        self.path = path
        self.lock = threading.Lock()
        self.last_text = None
        self.used_once = set()

    def behaviours(self, request_path):
        if self.path is None:
            return []
        try:
            with open(self.path, encoding="utf-8") as control_file:
                text = control_file.read()
            table = json.loads(text) if text.strip() else {}
        except (OSError, ValueError) as error:
            log(f"control file {self.path}: {error}; serving normally")
            return []
        with self.lock:
            if text != self.last_text:
                self.last_text = text
                self.used_once.clear()
        entry = table.get(request_path)
        if entry is None:
            for pattern, value in table.items():
                if fnmatch.fnmatchcase(request_path, pattern):
                    entry = value
                    break
        if entry is None:
            return []
        return [entry] if isinstance(entry, str) else list(entry)

    def take_once(self, request_path, behaviour):
        """True the first time (path, behaviour) is asked for."""
        with self.lock:
            key = (request_path, behaviour)
            if key in self.used_once:
                return False
            self.used_once.add(key)
            return True


def log(message):
    sys.stderr.write(f"feed-server: {message}\n")
    sys.stderr.flush()


def parse_range(header, size):
    """(start, end) inclusive for a single "bytes=" range, None when absent
    or not a byte range, "unsatisfiable" when it is outside the file."""
    if header is None:
        return None
    match = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", header)
    if match is None or match.group(1) == match.group(2) == "":
        return None  # several ranges or another unit: serve the whole file
    first, last = match.groups()
    if first == "":
        suffix = int(last)
        if suffix == 0:
            return "unsatisfiable"
        return (max(size - suffix, 0), size - 1)
    start = int(first)
    end = size - 1 if last == "" else min(int(last), size - 1)
    if start >= size or start > end:
        return "unsatisfiable"
    return (start, end)


class Handler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "suture-feed-test-server"
    sys_version = ""

    # The base class logs every request in its own format: the handler
    # writes its own line when the response is over. Malformed requests,
    # which never reach respond(), still get one line.
    def log_request(self, code="-", size="-"):
        pass

    def log_message(self, format, *args):  # noqa: A002 (the base class's parameter name)
        log(f"{self.client_address[0]}: {format % args}")

    def do_HEAD(self):
        self.respond(send_body=False)

    def do_GET(self):
        self.respond(send_body=True)

    def respond(self, send_body):
        self.close_connection = True
        self.sent = 0
        self.total = 0
        self.status = 0
        path = urllib.parse.unquote(urllib.parse.urlsplit(self.path).path)
        behaviours = self.server.control.behaviours(path)
        active = []
        try:
            self.dispatch(path, behaviours, active, send_body)
        except (BrokenPipeError, ConnectionResetError):
            active.append("client closed")
        finally:
            range_header = self.headers.get("Range") or "-"
            log(f"{self.command} {path} range={range_header} -> {self.status} "
                f"{self.sent}/{self.total if self.total else '?'} bytes"
                + (f" [{', '.join(active)}]" if active else ""))

    def dispatch(self, path, behaviours, active, send_body):
        for behaviour in behaviours:
            if behaviour.startswith("status:") or (
                    behaviour.startswith("status-once:")
                    and self.server.control.take_once(path, behaviour)):
                active.append(behaviour)
                self.send_status(int(behaviour.split(":", 1)[1]), send_body)
                return
            if behaviour == "endless":
                active.append(behaviour)
                self.send_endless(send_body)
                return
        body = self.read_target(path)
        if body is None:
            self.send_status(404, send_body)
            return
        ignore_range = "no-range" in behaviours
        if ignore_range:
            active.append("no-range")
        wanted = None if ignore_range else parse_range(self.headers.get("Range"), len(body))
        if wanted == "unsatisfiable":
            self.status = 416
            self.send_response(416)
            self.send_header("Content-Range", f"bytes */{len(body)}")
            self.send_header("Content-Length", "0")
            self.send_header("Connection", "close")
            self.end_headers()
            return
        if wanted is None:
            self.status = 200
            self.send_response(200)
            part = body
        else:
            start, end = wanted
            part = body[start:end + 1]
            self.status = 206
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{end}/{len(body)}")
        self.total = len(part)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Content-Length", str(len(part)))
        self.send_header("Accept-Ranges", "none" if ignore_range else "bytes")
        self.send_header("Connection", "close")
        self.end_headers()
        if not send_body:
            return
        if "drop-once" in behaviours and self.server.control.take_once(path, "drop-once"):
            # Content-Length promised the whole part: the client sees a
            # transfer cut short (curl: CURLE_PARTIAL_FILE) and may resume.
            active.append("drop-once")
            self.write(part[:len(part) // 2])
            return
        if "slow" in behaviours:
            active.append("slow")
            for index in range(len(part)):
                self.write(part[index:index + 1])
                time.sleep(1)
            return
        self.write(part)

    def read_target(self, path):
        """The served file's bytes, or None for anything outside the
        directory, a directory, or a missing file."""
        root = self.server.directory
        local = os.path.realpath(os.path.join(root, path.lstrip("/")))
        if local != root and not local.startswith(root + os.sep):
            return None
        try:
            with open(local, "rb") as served:
                return served.read()
        except (IsADirectoryError, FileNotFoundError, NotADirectoryError, PermissionError):
            return None

    def send_status(self, status, send_body):
        text = f"{status} {http.server.BaseHTTPRequestHandler.responses.get(status, ('',))[0]}\n"
        body = text.encode() * 4  # a body, as nginx or Apache would send
        self.status = status
        self.total = len(body)
        self.send_response(status)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Connection", "close")
        self.end_headers()
        if send_body:
            self.write(body)

    def send_endless(self, send_body):
        self.status = 200
        self.send_response(200)
        self.send_header("Content-Type", "application/octet-stream")
        self.send_header("Connection", "close")
        self.end_headers()
        if not send_body:
            return
        chunk = b"\x7b" * CHUNK
        while not self.server.stopping.is_set():
            self.write(chunk)

    def write(self, data):
        self.wfile.write(data)
        self.wfile.flush()
        self.sent += len(data)


class Server(socketserver.ThreadingMixIn, http.server.HTTPServer):
    daemon_threads = True  # an endless or slow response must not delay exit
    allow_reuse_address = True

    def __init__(self, port, directory, control):
        super().__init__(("127.0.0.1", port), Handler)
        self.directory = os.path.realpath(directory)
        self.control = control
        self.stopping = threading.Event()


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("directory", help="the directory to serve")
    parser.add_argument("port", type=int, help="the TCP port on 127.0.0.1; 0 for any free port")
    parser.add_argument("--control", help="JSON file: request path -> behaviour")
    arguments = parser.parse_args()
    if not os.path.isdir(arguments.directory):
        parser.error(f"{arguments.directory}: not a directory")

    server = Server(arguments.port, arguments.directory, Control(arguments.control))
    stop = threading.Event()
    for signal_number in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signal_number, lambda number, frame: stop.set())
    serving = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1})
    serving.start()
    print(f"port {server.server_address[1]}", flush=True)
    log(f"serving {server.directory} on 127.0.0.1:{server.server_address[1]}")
    # The main thread only waits, so the signal handler runs promptly; the
    # server's own thread is the one that shutdown() stops.
    while not stop.wait(1):
        pass
    server.stopping.set()
    server.shutdown()
    serving.join()
    server.server_close()
    log("stopped")
    return 0


if __name__ == "__main__":
    sys.exit(main())
