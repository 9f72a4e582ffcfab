"""CPU per request in the web process, for one code tree or two in alternating blocks.

    .venv/bin/python bench/perf/cpu.py --pgdir DIR [--tree PATH[=DIR]]... [--blocks 10] [--requests 200]
        [--kinds constant,floor,inquiry,blind] [--instructions]

On a host whose speed drifts, wrk's requests per second move by more than a small change to the
code. This measures the Python side alone: each tree's Django application (bench.perf.settings)
is loaded in its own process, with its sealer thread as under gunicorn, and called directly as a
WSGI application (no server, no load tool) for `--requests` requests of each kind per block. The
trees take turns block by block, in alternating order, against the same data set (DIR, built by
`run.py --pgdir DIR --keep`) and the same request lines, so the host's drift hits both alike.

- By default it reports the process's CPU time per request (`time.process_time`: the request
  thread and the sealer thread), each tree's median over the blocks, and per pair of blocks the
  ratio of the second tree to the first.
- `--instructions` runs each process under valgrind's callgrind and counts the instructions per
  request instead: no timing at all, so the same code gives the same count within a few per cent
  (the request lines differ per block, and the sealer's passes group events differently). About
  50 times slower: use `--requests 100 --blocks 2`.

Either way it prints floor/inquiry: what the inquiry costs in the web process against the bare
view, the Python side of run.py's inquiry/floor ratio (PostgreSQL, the network and wrk are not
in it).

- The kind `blind` is the inquiry with blind subjects: the same request lines as `inquiry`, each
  subject `{"id_type", "blind"}` instead of `{"id_type", "id_number"}`, its value the VOPRF output
  a member's Finalize gives (core.oprf.evaluate_input on cx_client.subjects.oprf_input, computed
  here with the bench's key into DIR/work/blind.lines). With both kinds it prints blind/inquiry.
  A tree from before blind subjects answers them 400: leave `blind` out when comparing with one.
- `--tree PATH=DIR` measures that tree on its own data set DIR (one PostgreSQL server each, all
  running at once), for trees whose subject tokens differ: each tree then finds its borrowers in
  a data set built by its own code (run.py of that tree), the like-for-like comparison.

The database is written to (inquiries and their audit events), as by run.py.
"""

from __future__ import annotations

import argparse
import io
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PATHS = {
    "constant": "/bench/constant",
    "floor": "/bench/floor",
    "inquiry": "/api/v1/inquiries",
    "blind": "/api/v1/inquiries",  # the inquiry lines with blind subjects (write_blind_lines)
}


def write_blind_lines(folder: Path) -> Path:
    """DIR/work/blind.lines: DIR/work/inquiry.lines with each subject sent blind, with the value a
    member's Finalize gives for it (RFC 9497 Evaluate under the bench's OPRF key, this tree's code)."""
    import base64
    import json

    from cx_client.subjects import oprf_input

    from bench.perf import run
    from core import oprf
    from core.keys import decode_key

    key = oprf.key_from_seed(decode_key("EXCHANGE_OPRF_KEY", run.BENCH_ENV["EXCHANGE_OPRF_KEY"]))
    target = folder / "work" / "blind.lines"
    with open(target, "w") as out:
        for line in (folder / "work" / "inquiry.lines").read_text().splitlines():
            api_key, body = line.split("\t", 1)
            request = json.loads(body)
            subject = request["subject"]
            output = oprf.evaluate_input(oprf_input(subject["id_type"], subject["id_number"]), key)
            request["subject"] = {"id_type": subject["id_type"], "blind": base64.b64encode(output).decode()}
            out.write(f"{api_key}\t{json.dumps(request, separators=(',', ':'))}\n")
    return target


def child(folder: Path, kinds: list[str]) -> None:
    """Serve blocks of requests on stdin's orders ('KIND N'), answering the CPU seconds used.

    Runs in the measured tree (the working directory), whose code it imports."""
    sys.path[0] = os.getcwd()
    from bench.perf import run

    run.django_setup({**run.BENCH_ENV, "DATABASE_URL": os.environ["BENCH_DATABASE_URL"], "PYTHONPATH": os.getcwd()})
    from django.core.wsgi import get_wsgi_application

    from audit.sealing import start_background_sealer, stop_background_sealer

    app = get_wsgi_application()
    start_background_sealer()
    pools = {kind: (folder / "work" / f"{kind}.lines").read_text().splitlines() for kind in kinds}
    position = dict.fromkeys(kinds, 0)

    def call(kind: str) -> None:
        pool = pools[kind]
        key, body = pool[position[kind] % len(pool)].split("\t", 1)
        position[kind] += 1
        data = body.encode()
        environ = {
            "REQUEST_METHOD": "POST",
            "PATH_INFO": PATHS[kind],
            "SERVER_NAME": "127.0.0.1",
            "SERVER_PORT": "80",
            "SERVER_PROTOCOL": "HTTP/1.1",
            "REMOTE_ADDR": "127.0.0.1",
            "CONTENT_TYPE": "application/json",
            "CONTENT_LENGTH": str(len(data)),
            "wsgi.input": io.BytesIO(data),
            "wsgi.url_scheme": "http",
            "wsgi.errors": sys.stderr,
        }
        if key != "-":
            environ["HTTP_AUTHORIZATION"] = f"Bearer {key}"
        status = []
        response = app(environ, lambda s, headers, exc_info=None: status.append(s))
        try:
            b"".join(response)
        finally:
            response.close()  # sends request_finished, as a WSGI server does
        if not status or not status[0].startswith("200"):
            raise SystemExit(f"{kind}: {status[0] if status else 'no status'}")

    for kind in kinds:  # warm up: connections, prepared statements, caches
        for _ in range(50):
            call(kind)
    print("ready", flush=True)
    for line in sys.stdin:
        kind, count = line.split()
        if kind == "quit":
            break
        started = time.process_time()
        for _ in range(int(count)):
            call(kind)
        print(time.process_time() - started, flush=True)
    stop_background_sealer()


class Tree:
    """One code tree's serving process, driven over a pipe."""

    def __init__(self, path: Path, folder: Path, url: str, kinds: list[str], instructions: bool, out: Path):
        self.path, self.instructions, self.out = path, instructions, out
        # This script, on the tree's code: an older tree need not have it.
        command = [sys.executable, __file__, "--child", "--pgdir", str(folder)]
        command += ["--kinds", ",".join(kinds)]
        if instructions:
            command = ["valgrind", "--tool=callgrind", f"--callgrind-out-file={out}/callgrind.%p", *command]
        self.process = subprocess.Popen(
            command,
            cwd=path,
            env={**os.environ, "BENCH_DATABASE_URL": url, "PYTHONPATH": str(path), "PYTHONMALLOC": "malloc"},
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL if instructions else None,  # valgrind's chatter
            text=True,
        )
        if self.process.stdout.readline().strip() != "ready":
            raise SystemExit(f"{path}: the serving process did not start")

    def block(self, kind: str, count: int) -> float:
        """CPU seconds, or instructions, per request for one block."""
        if self.instructions:
            subprocess.run(["callgrind_control", "--zero", str(self.process.pid)], capture_output=True, check=True)
        self.process.stdin.write(f"{kind} {count}\n")
        self.process.stdin.flush()
        answer = self.process.stdout.readline()
        if not answer:
            raise SystemExit(f"{self.path}: the serving process stopped (exit code {self.process.wait()})")
        seconds = float(answer)
        if not self.instructions:
            return seconds / count
        subprocess.run(["callgrind_control", "--dump", str(self.process.pid)], capture_output=True, check=True)
        return self._dumped_instructions() / count

    def _dumped_instructions(self) -> int:
        for _ in range(100):
            dumps = sorted(self.out.glob(f"callgrind.{self.process.pid}.*"), key=lambda p: int(p.suffix[1:]))
            if dumps:
                for line in dumps[-1].read_text().splitlines():
                    if line.startswith(("summary:", "totals:")):
                        dumps[-1].unlink()
                        return int(line.split()[1])
            time.sleep(0.1)
        raise SystemExit("callgrind wrote no dump")

    def close(self) -> None:
        self.process.stdin.write("quit 0\n")
        self.process.stdin.flush()
        self.process.wait(timeout=120)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--pgdir", type=Path, required=True, help="a data set kept by run.py --pgdir DIR --keep")
    parser.add_argument(
        "--tree",
        action="append",
        help="a checkout to measure (default: this one); PATH=DIR measures it on its own data set DIR",
    )
    parser.add_argument("--blocks", type=int, default=10)
    parser.add_argument("--requests", type=int, default=200, help="requests of each kind per block")
    parser.add_argument("--kinds", default="constant,floor,inquiry", help="of constant,floor,inquiry,blind")
    parser.add_argument("--instructions", action="store_true", help="count instructions with valgrind's callgrind")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    kinds = args.kinds.split(",")
    if args.child:
        child(args.pgdir, kinds)
        return 0
    unknown = set(kinds) - set(PATHS)
    if unknown:
        parser.error(f"unknown kinds: {', '.join(sorted(unknown))}")
    if args.instructions and not (shutil.which("valgrind") and shutil.which("callgrind_control")):
        parser.error("--instructions needs valgrind (apt-get install -y valgrind)")
    trees, folders = [], []  # each tree's checkout and data set
    for spec in args.tree or [str(ROOT)]:
        path, _sep, folder = spec.partition("=")
        trees.append(Path(path).resolve())
        folders.append(Path(folder).resolve() if folder else args.pgdir.resolve())
    for folder in dict.fromkeys(folders):
        if not (folder / "work" / "dataset.json").exists():
            parser.error(f"{folder} holds no data set: build one with run.py --pgdir {folder} --keep")

    sys.path.insert(0, str(ROOT))
    from bench.perf import run

    if "blind" in kinds:
        for folder in dict.fromkeys(folders):
            write_blind_lines(folder)
    servers = {folder: run.Postgres(folder) for folder in dict.fromkeys(folders)}
    out = Path(tempfile.mkdtemp(prefix="bench-cpu-"))
    unit = "M instructions" if args.instructions else "ms CPU"
    scale = 1e-6 if args.instructions else 1e3
    try:
        for server in servers.values():
            server.start()
            run.prewarm(server)
        serving = [
            Tree(path, folder, servers[folder].url, kinds, args.instructions, out)
            for path, folder in zip(trees, folders, strict=True)
        ]
        results = {(i, kind): [] for i in range(len(trees)) for kind in kinds}
        for block in range(args.blocks):
            order = list(range(len(trees)))
            if block % 2:
                order.reverse()
            for kind in kinds:
                for i in order:
                    results[(i, kind)].append(serving[i].block(kind, args.requests) * scale)
            print(f"block {block + 1}/{args.blocks} done", file=sys.stderr, flush=True)
        for tree in serving:
            tree.close()
    finally:
        for server in servers.values():
            server.stop()
        shutil.rmtree(out, ignore_errors=True)

    print(f"{unit} per request, median over {args.blocks} blocks of {args.requests} (range):")
    for i, path in enumerate(trees):
        print(f"  tree {i + 1}: {path}" + (f" on {folders[i]}" if folders[i] != args.pgdir.resolve() else ""))
        for kind in kinds:
            values = results[(i, kind)]
            print(f"    {kind:9} {statistics.median(values):7.3f} ({min(values):.3f}-{max(values):.3f})")
        if "floor" in kinds and "inquiry" in kinds:
            pairs = [f / q for f, q in zip(results[(i, "floor")], results[(i, "inquiry")], strict=True)]
            print(f"    floor/inquiry {statistics.median(pairs):.3f} ({min(pairs):.3f}-{max(pairs):.3f})")
        if "blind" in kinds and "inquiry" in kinds:
            pairs = [b / q for b, q in zip(results[(i, "blind")], results[(i, "inquiry")], strict=True)]
            print(f"    blind/inquiry {statistics.median(pairs):.3f} ({min(pairs):.3f}-{max(pairs):.3f})")
    for i in range(1, len(trees)):
        print(f"tree {i + 1} / tree 1, per pair of blocks: median (range)")
        for kind in kinds:
            ratios = [b / a for a, b in zip(results[(0, kind)], results[(i, kind)], strict=True)]
            print(f"    {kind:9} {statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})")
    return 0


if __name__ == "__main__":
    sys.exit(main())
