"""The hub's VOPRF evaluation (elements/s per core, batches of 1,000 with the batched proof)
against the chosen library's bare scalar multiplications/s, in one run.

    .venv/bin/python bench/oprf_bench.py [--seconds 10] [--batch 1000] [--check] [--compare]

The two run in short paired rounds, alternating which goes first, on one core; the ratio is the
median of the per-round ratios. The evaluation is core.oprf.evaluate_encoded as the endpoint
calls it: base64 in, element checks, one multiplication by the key per element, the composite
and the proof. `--check` exits 1 when the ratio is below 0.5. `--compare` also measures the
alternatives weighed in docs/privacy.md ("Library choice") when they are installed: the `voprf`
package (Rust `voprf` crate) and `rbcl` (a bundled libsodium).
"""

from __future__ import annotations

import argparse
import base64
import os
import platform
import statistics
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from bench.keys import setdefault_environ  # noqa: E402

setdefault_environ(os.environ)

import django  # noqa: E402

django.setup()

import pysodium  # noqa: E402
from cx_client import voprf  # noqa: E402

from core import oprf  # noqa: E402


def _timed(fn) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1000)
    parser.add_argument("--check", action="store_true", help="exit 1 when the ratio is below 0.5")
    parser.add_argument("--compare", action="store_true", help="also measure the voprf and rbcl packages")
    args = parser.parse_args()
    if hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {sorted(os.sched_getaffinity(0))[0]})  # one core

    key = oprf.oprf_key()
    encoded = [base64.b64encode(voprf.blind(b"bench %d" % i)[1]).decode() for i in range(args.batch)]
    scalars = [pysodium.crypto_core_ristretto255_scalar_random() for _ in range(args.batch)]
    points = [base64.b64decode(e) for e in encoded]

    def bare() -> None:
        mult = pysodium.crypto_scalarmult_ristretto255
        for s, p in zip(scalars, points, strict=True):
            mult(s, p)

    def hub() -> None:
        oprf.evaluate_encoded(encoded, key)

    bare_rates, hub_rates, ratios = [], [], []
    deadline = time.monotonic() + args.seconds
    flip = False
    while time.monotonic() < deadline or len(ratios) < 3:
        if flip:
            h, b = _timed(hub), _timed(bare)
        else:
            b, h = _timed(bare), _timed(hub)
        flip = not flip
        bare_rates.append(args.batch / b)
        hub_rates.append(args.batch / h)
        ratios.append(b / h)

    libsodium = pysodium.sodium.sodium_version_string
    libsodium.restype = __import__("ctypes").c_char_p
    print(
        f"# {platform.processor() or platform.machine()}, Python {platform.python_version()}, "
        f"pysodium {pysodium.__version__ if hasattr(pysodium, '__version__') else '0.7.19'} "
        f"over libsodium {libsodium().decode()}, {len(ratios)} paired rounds, batch {args.batch}"
    )
    print(f"bare crypto_scalarmult_ristretto255      {statistics.median(bare_rates):10.0f} /s")
    print(f"hub evaluation (batch + proof)           {statistics.median(hub_rates):10.0f} elements/s")
    ratio = statistics.median(ratios)
    print(f"ratio hub / bare (median of rounds)      {ratio:10.2f}   (target >= 0.5)")

    if args.compare:
        _compare(args.batch)
    return 1 if args.check and ratio < 0.5 else 0


def _compare(batch: int) -> None:
    try:
        import rbcl
    except ImportError:
        print("rbcl: not installed")
    else:
        s, p = rbcl.crypto_core_ristretto255_scalar_random(), rbcl.crypto_core_ristretto255_random()
        n = 3000
        t = _timed(lambda: [rbcl.crypto_scalarmult_ristretto255(s, p) for _ in range(n)])
        print(f"rbcl crypto_scalarmult_ristretto255      {n / t:10.0f} /s")
    try:
        from voprf import ristretto
    except ImportError:
        print("voprf: not installed")
    else:
        server = ristretto.Evaluator.from_seed(b"o" * 32, oprf.KEY_INFO)
        blinded = [ristretto.Client.blind(b"bench %d" % i)[1] for i in range(batch)]
        rounds = 3
        t = _timed(lambda: [server.evaluate_batch(blinded) for _ in range(rounds)])
        print(f"voprf Evaluator.evaluate_batch           {rounds * batch / t:10.0f} elements/s")
        n = 3000
        t = _timed(lambda: [server.evaluate_known_input(b"bench") for _ in range(n)])
        print(f"voprf Evaluator.evaluate_known_input     {n / t:10.0f} /s (hash to group + 1 mult + hash)")


if __name__ == "__main__":
    sys.exit(main())
