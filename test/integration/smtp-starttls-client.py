#!/usr/bin/env python3
"""SMTP sessions with STARTTLS, one after another, against Postfix's smtpd.

Usage: smtp-starttls-client.py PORT SESSIONS SUTURE

Each session: connect, read the banner (Postfix's smtpd_banner carries
"pid=$process_id", the smtpd serving it), EHLO, STARTTLS, the TLS handshake,
EHLO again, QUIT. At the first session of each smtpd, between the banner and
STARTTLS (before the process does any TLS), asks `SUTURE status` how many
patches are active in it: the marker check of a process at its first session.
Prints one JSON document: sessions ok and failed, per smtpd its active
patches at its first session, and session times.
"""
import json
import re
import smtplib
import ssl
import subprocess
import sys
import time


def active_patches(suture, pid):
    out = subprocess.run([suture, "status", "--json", "--pid", str(pid)],
                         capture_output=True, text=True, check=False).stdout
    try:
        document = json.loads(out)
    except ValueError:
        return -1
    return sum(1 for process in document.get("processes", []) if process.get("pid") == pid
               for patch in process.get("patches", []) if patch.get("state") == "active")


def main():
    port, sessions, suture = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    context = ssl.create_default_context()
    context.check_hostname = False
    context.verify_mode = ssl.CERT_NONE
    first_session = {}
    failures = []
    times = []
    for _ in range(sessions):
        started = time.monotonic()
        try:
            client = smtplib.SMTP(timeout=10)
            client._host = "localhost"  # the TLS server name (connect() alone leaves it empty)
            code, banner = client.connect("127.0.0.1", port)
            found = re.search(rb"pid=(\d+)", banner)
            if code != 220 or not found:
                raise RuntimeError(f"banner {code} {banner!r}")
            pid = int(found.group(1))
            if pid not in first_session:
                first_session[pid] = active_patches(suture, pid)
            client.ehlo("client.localhost")
            client.starttls(context=context)
            client.ehlo("client.localhost")
            client.quit()
            times.append((time.monotonic() - started) * 1000)
        except Exception as error:  # a failed session, whatever the reason
            failures.append(repr(error))
    print(json.dumps({"ok": len(times), "failed": len(failures), "failures": failures[:5],
                      "smtpd_first_session_patches": {str(k): v for k, v in first_session.items()},
                      "session_ms": times}))


if __name__ == "__main__":
    main()
