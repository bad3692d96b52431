"""Runs moto's server on a free loopback port for the prepull test bench.

Prints the server's URL on one line once it accepts connections, then serves until its
standard input closes. The harness holds that pipe open, so moto stops with the harness
however it ends, and nothing is left running after the tests.
"""

import sys

from moto.server import ThreadedMotoServer


def main() -> None:
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    host, bound_port = server.get_host_and_port()
    print(f"http://{host}:{bound_port}", flush=True)
    sys.stdin.read()
    server.stop()


if __name__ == "__main__":
    main()
