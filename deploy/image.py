"""Build the dockdns image without any registry: ``make image`` (or ``python3 deploy/image.py``).

Three steps, each cached so that a second run costs seconds:

1. The wheels: dockdns and every dependency, with pip's own wheel, into build/image/wheels
   (``pip wheel``, from the same index ``pip install`` uses). SOURCE_DATE_EPOCH makes the dockdns
   wheel byte-identical from run to run, so Docker's layer cache holds. dockdns comes twice:
   compiled (setup.py) for this machine's Python, and pure Python for any other, so that a
   ``--base`` with another Python still installs; pip in the image takes the compiled one
   wherever its tags fit.
2. The base (unless ``--base`` names one, e.g. python:3.11-slim where a registry exists): a
   minimal root filesystem made of this machine's own Debian Python 3.11 (/usr/bin/python3.11, its
   standard library without tests, IDLE, tkinter and the build config, and the shared libraries
   its extension modules link), loaded with ``docker import``. Its tag is a hash of every file
   that goes in and of this script, so it is made again only when one of them changes.
3. ``docker build -f deploy/Dockerfile --build-arg BASE=...`` on build/image.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
CONTEXT = REPO / "build" / "image"
DOCKERFILE = REPO / "deploy" / "Dockerfile"
DEFAULT_TAG = os.environ.get("DOCKDNS_IMAGE", "dockdns:latest")
BASE_REPOSITORY = "dockdns-base"
PYTHON = Path("/usr/bin/python3.11")  # Debian bookworm's python3.11-minimal
STDLIB = Path("/usr/lib/python3.11")
# Parts of the standard library a DNS daemon never imports; the build config alone is 25 MB.
STDLIB_SKIP = {"test", "idlelib", "tkinter", "turtledemo", "ensurepip", "lib2to3", "pydoc_data",
               "config-3.11-x86_64-linux-gnu", "distutils", "venv", "site-packages",
               "dist-packages"}
# The C library whole (a few hundred kB beyond what ldd finds): the manylinux wheels' extensions
# (uvloop, charset-normalizer) link librt, libpthread, libdl, libgcc_s; Python itself does not.
RUNTIME_PACKAGES = ("libc6", "libgcc-s1")
# Any fixed time will do: it only has to be the same at every build (2020-01-01).
SOURCE_DATE_EPOCH = "1577836800"


def _run(argv: list[str], **kwargs: object) -> None:
    print("+", " ".join(argv), file=sys.stderr)
    subprocess.run(argv, check=True, **kwargs)  # type: ignore[call-overload]


def build_wheels() -> None:
    wheels = CONTEXT / "wheels"
    shutil.rmtree(wheels, ignore_errors=True)
    wheels.mkdir(parents=True)
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
          "--wheel-dir", str(wheels), str(REPO), "pip"],
         env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH})
    # The fallback for a base whose Python the compiled wheel was not made for (py3-none-any).
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--disable-pip-version-check",
          "--no-deps", "--wheel-dir", str(wheels), str(REPO)],
         env={**os.environ, "SOURCE_DATE_EPOCH": SOURCE_DATE_EPOCH, "DOCKDNS_COMPILE": "0"})
    # pip builds dockdns in the source tree; leave it as it was.
    shutil.rmtree(REPO / "dockdns.egg-info", ignore_errors=True)


# --- the local base --------------------------------------------------------------------------


def _stdlib_files() -> Iterator[Path]:
    for root, dirs, files in os.walk(STDLIB):
        if Path(root) == STDLIB:
            dirs[:] = [d for d in dirs if d not in STDLIB_SKIP]
        dirs.sort()
        for name in sorted(files):
            yield Path(root) / name


def _linked_libraries(binaries: list[Path]) -> list[Path]:
    """Every shared library ``ldd`` resolves for ``binaries``, and the dynamic loader."""
    found: set[Path] = set()
    for binary in binaries:
        done = subprocess.run(["ldd", str(binary)], capture_output=True, text=True, check=False)
        for line in done.stdout.splitlines():
            parts = line.split()
            if "=>" in parts and len(parts) >= 3 and parts[2].startswith("/"):
                found.add(Path(parts[2]))
            elif parts and parts[0].startswith("/"):
                found.add(Path(parts[0]))  # the loader, /lib64/ld-linux-x86-64.so.2
    return sorted(found)


def _package_libraries() -> list[Path]:
    done = subprocess.run(["dpkg-query", "-L", *RUNTIME_PACKAGES], capture_output=True,
                          text=True, check=True)
    return [Path(line) for line in done.stdout.splitlines()
            if ".so" in Path(line).name and "gconv" not in line and Path(line).is_file()]


def base_files() -> list[Path]:
    if not PYTHON.exists():
        raise SystemExit(f"{PYTHON} is missing: apt-get install python3.11-minimal "
                         "libpython3.11-stdlib (or give --base)")
    stdlib = list(_stdlib_files())
    extensions = [p for p in stdlib if p.suffix == ".so"]
    libraries = {*_linked_libraries([PYTHON, *extensions]), *_package_libraries()}
    return [PYTHON, *stdlib, *sorted(libraries)]


def _digest(files: list[Path]) -> str:
    digest = hashlib.sha256(Path(__file__).read_bytes())
    for path in files:
        stat = path.stat()
        digest.update(f"{path}\0{stat.st_size}\0{stat.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:16]


def _add_dir(tar: tarfile.TarFile, name: str, mode: int = 0o755) -> None:
    info = tarfile.TarInfo(name)
    info.type = tarfile.DIRTYPE
    info.mode = mode
    tar.addfile(info)


def _add_text(tar: tarfile.TarFile, name: str, text: str) -> None:
    data = text.encode()
    info = tarfile.TarInfo(name)
    info.size = len(data)
    info.mode = 0o644
    tar.addfile(info, io.BytesIO(data))


def base_tar(files: list[Path]) -> bytes:
    """The root filesystem: each file at its own path (symlinks resolved, so a library is there
    under the name ldd found), directories made as needed."""
    buffer = io.BytesIO()
    made: set[str] = set()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for directory in ("tmp", "etc", "proc", "sys", "dev", "run", "var", "var/run"):
            _add_dir(tar, directory, 0o1777 if directory == "tmp" else 0o755)
            made.add(directory)
        _add_text(tar, "etc/passwd", "root:x:0:0:root:/root:/usr/sbin/nologin\n"
                  "nobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")
        _add_text(tar, "etc/group", "root:x:0:\nnogroup:x:65534:\n")
        for path in files:
            name = str(path).lstrip("/")
            parents = Path(name).parents
            for parent in reversed(list(parents)[:-1]):
                if str(parent) not in made:
                    _add_dir(tar, str(parent))
                    made.add(str(parent))
            tar.add(str(path.resolve()), arcname=name, recursive=False)
        link = tarfile.TarInfo("usr/bin/python3")
        link.type = tarfile.SYMTYPE
        link.linkname = "python3.11"
        tar.addfile(link)
    return buffer.getvalue()


def _image_exists(tag: str) -> bool:
    return subprocess.run(["docker", "image", "inspect", tag], capture_output=True,
                          check=False).returncode == 0


def local_base() -> str:
    files = base_files()
    tag = f"{BASE_REPOSITORY}:py311-{_digest(files)}"
    if _image_exists(tag):
        print(f"base {tag}: cached", file=sys.stderr)
        return tag
    print(f"base {tag}: importing {len(files)} files of this machine's Python", file=sys.stderr)
    _run(["docker", "import", "-", tag], input=base_tar(files), stdout=subprocess.DEVNULL)
    return tag


def build(tag: str, base: str | None) -> str:
    build_wheels()
    base = base or local_base()
    _run(["docker", "build", "--quiet", "-f", str(DOCKERFILE), "--build-arg", f"BASE={base}",
          "-t", tag, str(CONTEXT)], stdout=subprocess.DEVNULL)
    size = subprocess.run(["docker", "image", "inspect", "-f", "{{.Size}}", tag],
                          capture_output=True, text=True, check=True).stdout.strip()
    print(f"{tag}: {int(size) / 1e6:.1f} MB (FROM {base})", file=sys.stderr)
    return tag


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tag", default=DEFAULT_TAG, help="image name (env DOCKDNS_IMAGE; "
                        "default dockdns:latest)")
    parser.add_argument("--base", default=None, help="base image with Python 3.11+ (e.g. "
                        "python:3.11-slim); default: one made here from this machine's Python")
    args = parser.parse_args()
    build(args.tag, args.base)


if __name__ == "__main__":
    main()
