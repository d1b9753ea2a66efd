"""Build the wheelhouse a GPU node with its own CUDA torch needs to run this project offline.

An air-gapped node (no package index) that already has Python, CUDA torch and the usual scientific
stack lacks a few packages (pydantic, datasets, optuna, mlflow, ray and their needs). This script,
run on a machine WITH an index, resolves the project's requirements for the node's Python and
platform, leaves out what the node already has (a list of names, one a line), and fills DEST with:

* binary wheels of everything else, for the node's platform (``pip download --no-deps --only-binary``);
* ray's wheel with its ``ray/jars/`` folder (Java workers, ~40 MB unpacked) removed, so the wheelhouse
  stays under a transfer limit (the wheel's RECORD is rewritten; pip installs it normally);
* seqeval, which PyPI has as an sdist only, built into a wheel here (``pip wheel --no-deps``);
* the project's own wheel (``itt-order``, console script ``itt``).

With ``--bundle FILE`` it also writes the wheelhouse as one ``.tar.xz`` whose wheels are re-stored
uncompressed, so that xz compresses across them: 46 MiB instead of 94 for the H200 image's set, small
enough to travel with the data in one transfer of at most 64 MiB (``bench/gpu_all.sh --prepare``).

It ends by printing the size and the install line for the node:

    python3 -m pip install --no-index --no-deps --no-compile --target /opt/itt-site DEST/*.whl
    export PYTHONPATH=/opt/itt-site PATH=/opt/itt-site/bin:$PATH

Examples:

    python scripts/pack_offline.py --dest .whl                   # the H200 image's Python 3.12, manylinux x86-64
    python scripts/pack_offline.py --dry-run                     # what it would resolve and run; no network
    python scripts/pack_offline.py --node-packages mynode.txt --python-version 3.11 --dest wheels/
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tarfile
import tempfile
import tomllib
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NODE_LIST = ROOT / "scripts" / "gpu_node_packages.txt"
PLATFORMS = ["manylinux_2_28_x86_64", "manylinux_2_27_x86_64", "manylinux_2_17_x86_64", "manylinux2014_x86_64",
             "manylinux1_x86_64"]
EXTRAS = ("search",)  # optional-dependency groups a search node needs
SDIST_ONLY = {"seqeval"}  # no wheel on PyPI: built here, pure Python
NODE_OWN = {"torch"}  # the node's own CUDA build; never packed
# packed even when the node has the name: the version this project is checked against (STACK.md);
# the H200 image has transformers 5.17, the project is checked on 5.25
UPGRADE = ("transformers",)
STRIP = {"ray": "ray/jars/"}  # wheel name -> folder left out of it


def norm(name: str) -> str:
    """PEP 503 normalised project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def req_name(req: str) -> str:
    return norm(re.split(r"[\s\[<>=!~;@]", req.strip(), maxsplit=1)[0])


def project_requirements(pyproject: Path = ROOT / "pyproject.toml", extras=EXTRAS) -> list[str]:
    """The project's dependencies plus the named extras, as written in pyproject.toml."""
    proj = tomllib.loads(pyproject.read_text())["project"]
    reqs = list(proj.get("dependencies", []))
    for e in extras:
        reqs += proj.get("optional-dependencies", {}).get(e, [])
    return reqs


def read_names(path: Path) -> set[str]:
    return {norm(line.split("==")[0]) for line in path.read_text().splitlines()
            if line.strip() and not line.lstrip().startswith("#")}


def local_version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def pin(req: str) -> str:
    """``ray[tune,train]>=2.50`` -> ``ray[tune,train]==2.60.0`` when installed here: the node gets the
    versions this checkout is tested with; left as written otherwise."""
    name = req_name(req)
    m = re.match(r"\s*([A-Za-z0-9_.\-]+(\[[^\]]*\])?)", req)
    v = local_version(name)
    return f"{m.group(1)}=={v}" if m and v else req


def plan(args) -> dict:
    """What to resolve: top-level requirements (pinned), and the names left to the node."""
    node = read_names(Path(args.node_packages)) | NODE_OWN
    upgrade = {norm(n) for n in args.upgrade}
    reqs = [r.split(";")[0].strip() for r in project_requirements()]
    # the node's own packages are not resolved at all: several need torch (accelerate, botorch), whose
    # resolution for another platform drags in (and can fail on) its CUDA wheels
    wanted = [pin(r) for r in reqs if req_name(r) not in (node - upgrade) | SDIST_ONLY]
    wanted += [f"{n}=={local_version(n)}" if local_version(n) else n for n in sorted(upgrade - {req_name(r) for r in reqs})]
    sdists = [pin(r) for r in reqs if req_name(r) in SDIST_ONLY]
    return {"resolve": wanted, "sdists": sdists, "node": sorted(node - upgrade), "upgrade": sorted(upgrade)}


def target_flags(args) -> list[str]:
    flags = ["--only-binary=:all:", "--python-version", args.python_version, "--implementation", "cp"]
    for p in args.platform:
        flags += ["--platform", p]
    return flags


def pip(*a: str, quiet: bool = True) -> list[str]:
    return [sys.executable, "-m", "pip", *(["-q"] if quiet else []), *a]


def resolve(args, p: dict) -> list[tuple[str, str]]:
    """(name, version) of every distribution the requirements need on the node (pip's resolver report)."""
    with tempfile.TemporaryDirectory() as t:
        report = Path(t) / "report.json"
        cmd = pip("install", "--dry-run", "--ignore-installed", "--report", str(report), "--target", str(Path(t) / "x"),
                  *target_flags(args), *p["resolve"])
        subprocess.run(cmd, check=True, timeout=args.timeout)
        items = json.loads(report.read_text())["install"]
    return sorted((norm(i["metadata"]["name"]), i["metadata"]["version"]) for i in items)


def strip_wheel(path: Path, prefix: str) -> int:
    """Rewrite a wheel without the files under ``prefix`` (and their RECORD lines); returns bytes saved."""
    before = path.stat().st_size
    tmp = path.with_suffix(".tmp")
    with zipfile.ZipFile(path) as zin, zipfile.ZipFile(tmp, "w", zipfile.ZIP_DEFLATED) as zout:
        for info in zin.infolist():
            if info.filename.startswith(prefix):
                continue
            data = zin.read(info.filename)
            if info.filename.endswith(".dist-info/RECORD"):
                data = b"".join(line for line in data.splitlines(keepends=True)
                                if not line.decode().startswith(prefix))
            zout.writestr(info, data)
    os.replace(tmp, path)
    return before - path.stat().st_size


def split_parts(dest: Path, max_mib: float) -> list[Path]:
    """Move the wheels into dest/1, dest/2, ... of at most ``max_mib`` each (largest first, first fit),
    for transfers with a size limit; installing every part into one --target gives the whole set."""
    wheels = sorted(dest.glob("*.whl"), key=lambda w: -w.stat().st_size)
    bins: list[list] = []
    for w in wheels:
        size = w.stat().st_size
        home = next((b for b in bins if b[0] + size <= max_mib * 2**20), None)
        if home is None:
            home = [0, []]
            bins.append(home)
        home[0] += size
        home[1].append(w)
    parts = []
    for i, (_, ws) in enumerate(bins, 1):
        part = dest / str(i)
        part.mkdir(exist_ok=True)
        for w in ws:
            os.replace(w, part / w.name)
        parts.append(part)
    return parts


def bundle(wheels: list[Path], path: Path, preset: int = 9) -> int:
    """Write ``wheels`` into one tar.xz at ``path``; returns its size in bytes. Each wheel is re-stored
    uncompressed (same files, names and RECORD; pip installs it as it would the original), so that xz,
    with preset 9's 64 MiB window, compresses across files instead of over already-deflated ones."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".part")
    with tarfile.open(tmp, "w:xz", preset=preset) as tar:
        for whl in sorted(wheels, key=lambda w: w.name):
            buf = io.BytesIO()
            with zipfile.ZipFile(whl) as zin, zipfile.ZipFile(buf, "w", zipfile.ZIP_STORED) as zout:
                for info in zin.infolist():
                    data = zin.read(info)
                    info.compress_type = zipfile.ZIP_STORED
                    zout.writestr(info, data)
            member = tarfile.TarInfo(whl.name)
            member.size, member.mode = buf.tell(), 0o644
            buf.seek(0)
            tar.addfile(member, buf)
    os.replace(tmp, path)
    return path.stat().st_size


def bundle_install_line(path: str, site: str = "/opt/itt-site") -> str:
    return (f"mkdir -p /tmp/itt-wheels && tar -xJf {path} -C /tmp/itt-wheels && "
            + install_line("/tmp/itt-wheels", site))


def install_line(dest: str, site: str = "/opt/itt-site") -> str:
    return (f"python3 -m pip install -q --no-index --no-deps --no-compile --upgrade --target {site} {dest}/*.whl && "
            f"export PYTHONPATH={site}${{PYTHONPATH:+:$PYTHONPATH}} PATH={site}/bin:$PATH")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--dest", default=".whl", help="wheelhouse folder (created; wheels already there are replaced)")
    ap.add_argument("--python-version", default="3.12", help="the node's Python (major.minor)")
    ap.add_argument("--platform", nargs="+", default=PLATFORMS, help="the node's platform tags")
    ap.add_argument("--node-packages", default=str(NODE_LIST), help="names the node already has, one a line")
    ap.add_argument("--upgrade", nargs="*", default=list(UPGRADE),
                    help="pack these even though the node has them (the version installed here)")
    ap.add_argument("--no-project", action="store_true", help="leave out the project's own wheel")
    ap.add_argument("--max-mib", type=float, default=64.0, help="warn when the wheelhouse is larger")
    ap.add_argument("--split-mib", type=float, default=None,
                    help="then move the wheels into DEST/1, DEST/2, ... of at most this size each")
    ap.add_argument("--bundle", default=None, metavar="FILE",
                    help="also write the wheelhouse as one FILE.tar.xz (wheels re-stored for xz; ~half the size)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds for each pip call")
    ap.add_argument("--dry-run", action="store_true", help="print the plan and the pip commands; no network")
    args = ap.parse_args(argv)
    if not re.fullmatch(r"3\.\d+", args.python_version):
        ap.error("--python-version: give major.minor, e.g. 3.12")
    if args.bundle and not args.bundle.endswith((".tar.xz", ".txz")):
        ap.error(f"--bundle: {args.bundle} should end in .tar.xz")
    if not Path(args.node_packages).is_file():
        ap.error(f"--node-packages: {args.node_packages} not found")

    p = plan(args)
    dest = Path(args.dest)
    print(f"pack for Python {args.python_version} on {args.platform[0]} (+{len(args.platform) - 1} older tags); "
          f"{len(p['node'])} names left to the node ({args.node_packages})")
    print("resolve:", " ".join(p["resolve"]))
    print("build from sdist:", " ".join(p["sdists"]) or "-")
    print("upgrade over the node's:", " ".join(p["upgrade"]) or "-")
    if args.dry_run:
        print("would run:")
        print("  " + " ".join(pip("install", "--dry-run", "--ignore-installed", "--report", "REPORT", "--target", "TMP",
                                  *target_flags(args), *p["resolve"])))
        print("  " + " ".join(pip("download", "--no-deps", *target_flags(args), "-d", str(dest), "NAME==VERSION ...")))
        for prefix in STRIP.values():
            print(f"  strip {prefix} from the ray wheel")
        print("  " + " ".join(pip("wheel", "--no-deps", "-w", str(dest), *p["sdists"])))
        if not args.no_project:
            print("  " + " ".join(pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), str(ROOT))))
        if args.bundle:
            print(f"  bundle the wheels into {args.bundle} (re-stored uncompressed, xz preset 9)")
            print("install on the node:", bundle_install_line(args.bundle))
        else:
            print("install on the node:", install_line(str(dest)))
        return 0

    closure = resolve(args, p)
    node = set(p["node"])
    need = [(n, v) for n, v in closure if n not in node]
    print(f"resolved {len(closure)} distributions; {len(need)} not on the node: "
          + ", ".join(f"{n}=={v}" for n, v in need))
    dest.mkdir(parents=True, exist_ok=True)
    subprocess.run(pip("download", "--no-deps", *target_flags(args), "-d", str(dest), *[f"{n}=={v}" for n, v in need]),
                   check=True, timeout=args.timeout)
    for name, prefix in STRIP.items():
        for whl in dest.glob(f"{name}-*.whl"):
            saved = strip_wheel(whl, prefix)
            print(f"{whl.name}: {prefix} removed ({saved / 2**20:.1f} MiB saved)")
    if p["sdists"]:
        subprocess.run(pip("wheel", "--no-deps", "-w", str(dest), *p["sdists"]), check=True, timeout=args.timeout)
    if not args.no_project:
        subprocess.run(pip("wheel", "--no-deps", "--no-build-isolation", "-w", str(dest), str(ROOT)), check=True,
                       timeout=args.timeout)
        shutil.rmtree(ROOT / "build", ignore_errors=True)  # setuptools' scratch folder
    wheels = sorted(dest.glob("*.whl"))
    total = sum(w.stat().st_size for w in wheels)
    over = total > args.max_mib * 2**20 and not args.bundle and not args.split_mib
    print(f"{len(wheels)} wheels in {dest}, {total / 2**20:.1f} MiB" + (f"  WARNING: over {args.max_mib:g} MiB" if over else ""))
    if args.bundle:
        size = bundle(wheels, Path(args.bundle))
        print(f"{args.bundle}: {len(wheels)} wheels, {size / 2**20:.1f} MiB"
              + (f"  WARNING: over {args.max_mib:g} MiB" if size > args.max_mib * 2**20 else ""))
        print("install on the node:", bundle_install_line(args.bundle))
    if args.split_mib:
        parts = split_parts(dest, args.split_mib)
        for part in parts:
            size = sum(w.stat().st_size for w in part.glob("*.whl"))
            print(f"{part}: {len(list(part.glob('*.whl')))} wheels, {size / 2**20:.1f} MiB; install:", install_line(str(part)))
        return 0
    print("install on the node:", install_line(str(dest)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
