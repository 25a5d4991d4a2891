"""An HTTPS server in one thread, for the load-path tests: Python's ssl
module (its _ssl extension links libssl) wraps a loopback listener; each
connection is accepted with its TLS handshake, gets one fixed HTTP answer
and is closed. Prints "ready" once it listens, a line per failed handshake.

Usage: tls-hello-server.py PORT CERT KEY
"""
import socket
import ssl
import sys

port, certificate, key = int(sys.argv[1]), sys.argv[2], sys.argv[3]
context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
context.load_cert_chain(certificate, key)
server = context.wrap_socket(socket.create_server(("127.0.0.1", port)), server_side=True)
print("ready", flush=True)
while True:
    try:
        connection, _ = server.accept()  # the handshake happens here
    except OSError as error:  # ssl.SSLError is one
        print(f"handshake failed: {error}", flush=True)
        continue
    with connection:
        connection.settimeout(5)
        try:
            connection.recv(4096)
            connection.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n"
                               b"Content-Length: 6\r\n\r\nhello\n")
        except OSError as error:
            print(f"session failed: {error}", flush=True)
