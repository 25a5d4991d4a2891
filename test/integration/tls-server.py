"""An HTTPS server written with Python's ssl module (run by python3 -c
inside the rootfs): `import ssl` dlopens _ssl, which maps libssl and
libcrypto, so sutured catches it through a library event.

Usage: python3 - PORT CERT KEY CONNECTIONS < tls-server.py

A thread started just before `import ssl` looks for suture's patch regions
in this process (anonymous mappings that begin with the marker "SUTUREPR",
read through /proc/self/mem) every 0.2 ms and prints when the first one
appeared, measured from before the import: an upper bound of the time from
the mapping to patched. The main thread does not wait for it: it prints
"ready" and serves CONNECTIONS connections, counting the regions right
before each handshake ("handshake N regions R").
"""
import socket
import sys
import threading
import time


def patch_regions():
    count = 0
    with open("/proc/self/maps") as maps, open("/proc/self/mem", "rb", 0) as mem:
        for line in maps:
            fields = line.split()
            if len(fields) > 5 or not fields[1].startswith("r"):
                continue  # a file mapping, or unreadable
            start = int(fields[0].split("-")[0], 16)
            try:
                mem.seek(start)
                count += mem.read(8) == b"SUTUREPR"
            except OSError:
                pass
    return count


def watch(began):
    deadline = began + 5
    while time.monotonic() < deadline:
        if patch_regions() > 0:
            print(f"patched {int((time.monotonic() - began) * 1e6)} us after import ssl began",
                  flush=True)
            return
        time.sleep(0.0002)
    print("not patched within 5 s", flush=True)


port, cert, key, connections = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4])
began = time.monotonic()
threading.Thread(target=watch, args=(began,), daemon=True).start()
import ssl  # noqa: E402  (the dlopen under test)

context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(cert, key)
listener = socket.create_server(("127.0.0.1", port))
print(f"ready {int((time.monotonic() - began) * 1e6)} us", flush=True)
for number in range(connections):
    connection, _ = listener.accept()
    print(f"handshake {number} regions {patch_regions()}", flush=True)
    try:
        with context.wrap_socket(connection, server_side=True) as tls:
            tls.recv(4096)
            tls.sendall(b"HTTP/1.1 200 OK\r\nContent-Length: 3\r\nConnection: close\r\n\r\nok\n")
    except OSError as error:
        print(f"handshake {number} failed {error}", flush=True)
