#!/usr/bin/env python3
"""The issue's reference point for TLS/TCP throughput: Python's ssl module (OpenSSL, socket BIOs)
moving 64 KB writes over 127.0.0.1 for SECONDS, a server thread and a client thread in one process,
TLS 1.3 with OpenSSL's default suite and a P-256 certificate, as taps-bench measures tls-tcp.
Prints {"python_ssl_mbps": X} (MB = 10^6 bytes, between the server's first and last byte).

usage: Benchmarks/PythonSSL/reference.py [SECONDS]
"""
import json
import os
import socket
import ssl
import subprocess
import sys
import tempfile
import threading
import time


def identity(directory):
    cert, key = os.path.join(directory, "cert.pem"), os.path.join(directory, "key.pem")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256",
                    "-keyout", key, "-out", cert, "-days", "1", "-nodes", "-subj", "/CN=localhost"],
                   check=True, capture_output=True)
    return cert, key


def main():
    seconds = float(sys.argv[1]) if len(sys.argv) > 1 else 3.0
    with tempfile.TemporaryDirectory() as directory:
        cert, key = identity(directory)
        server_context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        server_context.load_cert_chain(cert, key)
        client_context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        client_context.load_verify_locations(cert)
        listener = socket.create_server(("127.0.0.1", 0))
        port = listener.getsockname()[1]
        measured = {}

        def serve():
            raw, _ = listener.accept()
            connection = server_context.wrap_socket(raw, server_side=True)
            buffer = bytearray(256 * 1024)
            received, first, last = 0, None, None
            while True:
                count = connection.recv_into(buffer)
                if not count:
                    break
                now = time.perf_counter()
                first = first or now
                received, last = received + count, now
            measured["mbps"] = received / (last - first) / 1e6 if first and last > first else 0.0

        server = threading.Thread(target=serve)
        server.start()
        client = client_context.wrap_socket(socket.create_connection(("127.0.0.1", port)), server_hostname="localhost")
        message = b"x" * 65536
        deadline = time.perf_counter() + seconds
        while time.perf_counter() < deadline:
            client.sendall(message)
        client.close()
        server.join()
    print(json.dumps({"python_ssl_mbps": round(measured["mbps"], 1)}))


if __name__ == "__main__":
    main()
