"""The fizz agent as a wheel the marketplace builds from `sdk/` and serves to providers' machines.

`GET /fizz/install.sh` installs this wheel (pip fetches only its pinned dependencies from the
index). The wheel is built here, with the standard library only, rather than by pip or setuptools:
the SDK is pure Python with no build step, and a server must not need a build backend or network
access to hand out its own agent. The build is deterministic (sorted entries, fixed timestamps), so
the same sources always give the same bytes and the same sha256.

Builds are cached under `VAR_DIR/fizz-dist/<source digest>/`, keyed on the contents of every file
that goes into the wheel: a changed SDK gives a new digest and a new build. A file lock makes
concurrent first requests (threads or processes) build once; the build is renamed into place
complete, so a reader never sees half a wheel.
"""

from __future__ import annotations

import base64
import csv
import fcntl
import hashlib
import io
import os
import re
import shutil
import tempfile
import tomllib
import zipfile
from dataclasses import dataclass
from pathlib import Path

from django.conf import settings

# Zip entries need a date; a fixed one keeps the build reproducible (zip cannot store dates before 1980).
ZIP_DATE = (2026, 1, 1, 0, 0, 0)
WHEEL_TAG = "py3-none-any"


@dataclass(frozen=True)
class FizzWheel:
    path: Path
    version: str
    sha256: str

    @property
    def filename(self) -> str:
        return self.path.name


def sdk_dir() -> Path:
    return Path(settings.BASE_DIR) / "sdk"


def dist_dir() -> Path:
    return Path(settings.VAR_DIR) / "fizz-dist"


def _normalize(name: str) -> str:
    """A project name as wheel file names spell it (PEP 427/503): `spheron-sdk` → `spheron_sdk`."""
    return re.sub(r"[-_.]+", "_", name).lower()


def _package_files(root: Path, project: dict) -> list[tuple[str, Path]]:
    """(archive name, file) for every module setuptools would install: `.py` files (and `py.typed`)
    of the packages that `[tool.setuptools.packages.find] include` names."""
    patterns = project.get("tool", {}).get("setuptools", {}).get("packages", {}).get("find", {}).get("include")
    tops = sorted({p.rstrip("*").rstrip(".") for p in patterns or []}) or [_normalize(project["project"]["name"])]
    files = []
    for top in tops:
        package = root / top
        for path in sorted(package.rglob("*")):
            if "__pycache__" in path.parts or not path.is_file():
                continue
            if path.suffix == ".py" or path.name == "py.typed":
                files.append((path.relative_to(root).as_posix(), path))
    return files


def _metadata(project: dict, readme: str) -> str:
    meta = project["project"]
    lines = [
        "Metadata-Version: 2.1",
        f"Name: {meta['name']}",
        f"Version: {meta['version']}",
    ]
    if meta.get("description"):
        lines.append(f"Summary: {meta['description']}")
    if meta.get("requires-python"):
        lines.append(f"Requires-Python: {meta['requires-python']}")
    lines += [f"Requires-Dist: {dep}" for dep in meta.get("dependencies", [])]
    for extra, deps in sorted(meta.get("optional-dependencies", {}).items()):
        lines.append(f"Provides-Extra: {extra}")
        lines += [f'Requires-Dist: {dep}; extra == "{extra}"' for dep in deps]
    if readme:
        lines.append("Description-Content-Type: text/markdown")
        return "\n".join(lines) + "\n\n" + readme
    return "\n".join(lines) + "\n"


def _entry_points(project: dict) -> str:
    scripts = project["project"].get("scripts", {})
    if not scripts:
        return ""
    return "[console_scripts]\n" + "".join(f"{name} = {target}\n" for name, target in sorted(scripts.items())) + "\n"


def _inputs(root: Path) -> tuple[dict, str, list[tuple[str, Path]]]:
    project = tomllib.loads((root / "pyproject.toml").read_text())
    readme_name = project["project"].get("readme")
    readme = (root / readme_name).read_text() if isinstance(readme_name, str) else ""
    return project, readme, _package_files(root, project)


def source_digest(root: Path | None = None) -> str:
    """sha256 over everything that goes into the wheel: it changes exactly when the wheel would."""
    root = root or sdk_dir()
    digest = hashlib.sha256()
    names = ["pyproject.toml"]
    project, _readme, files = _inputs(root)
    if isinstance(project["project"].get("readme"), str):
        names.append(project["project"]["readme"])
    for name in names:
        digest.update(name.encode() + b"\0" + (root / name).read_bytes() + b"\0")
    for name, path in files:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def wheel_bytes(root: Path | None = None) -> tuple[str, bytes]:
    """(file name, contents) of the SDK's wheel, built from the sources under `root`."""
    root = root or sdk_dir()
    project, readme, files = _inputs(root)
    name, version = _normalize(project["project"]["name"]), project["project"]["version"]
    dist_info = f"{name}-{version}.dist-info"
    entries: list[tuple[str, bytes]] = [(arcname, path.read_bytes()) for arcname, path in files]
    entries.append((f"{dist_info}/METADATA", _metadata(project, readme).encode()))
    entries.append(
        (
            f"{dist_info}/WHEEL",
            f"Wheel-Version: 1.0\nGenerator: spheron-web\nRoot-Is-Purelib: true\nTag: {WHEEL_TAG}\n".encode(),
        )
    )
    entry_points = _entry_points(project)
    if entry_points:
        entries.append((f"{dist_info}/entry_points.txt", entry_points.encode()))
    top_level = sorted({arcname.split("/")[0] for arcname, _ in files})
    entries.append((f"{dist_info}/top_level.txt", "".join(f"{t}\n" for t in top_level).encode()))

    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for arcname, data in entries:
        writer.writerow([arcname, _record_hash(data), len(data)])
    writer.writerow([f"{dist_info}/RECORD", "", ""])
    entries.append((f"{dist_info}/RECORD", record.getvalue().encode()))

    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for arcname, data in entries:
            info = zipfile.ZipInfo(arcname, date_time=ZIP_DATE)
            info.external_attr = 0o644 << 16
            info.compress_type = zipfile.ZIP_DEFLATED
            archive.writestr(info, data)
    return f"{name}-{version}-{WHEEL_TAG}.whl", buffer.getvalue()


def _cached(folder: Path) -> FizzWheel | None:
    wheels = list(folder.glob("*.whl")) if folder.is_dir() else []
    if len(wheels) != 1:
        return None
    sha_file = folder / "sha256"
    if not sha_file.exists():
        return None
    version = wheels[0].name.split("-")[1]
    return FizzWheel(path=wheels[0], version=version, sha256=sha_file.read_text().strip())


def fizz_wheel() -> FizzWheel:
    """The current SDK's wheel: from the cache, or built once (under a lock) and cached."""
    digest = source_digest()
    folder = dist_dir() / digest[:32]
    found = _cached(folder)
    if found is not None:
        return found
    dist_dir().mkdir(parents=True, exist_ok=True)
    with open(dist_dir() / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        found = _cached(folder)  # another thread or process built it while we waited
        if found is not None:
            return found
        filename, data = wheel_bytes()
        staging = Path(tempfile.mkdtemp(prefix=".build-", dir=dist_dir()))
        try:
            (staging / filename).write_bytes(data)
            (staging / "sha256").write_text(hashlib.sha256(data).hexdigest() + "\n")
            os.chmod(staging, 0o755)
            if folder.exists():  # an incomplete folder left by a crash
                shutil.rmtree(folder)
            staging.rename(folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
        _prune(keep=folder)
    found = _cached(folder)
    assert found is not None
    return found


def _prune(*, keep: Path) -> None:
    """Drop builds of older SDK sources and staging left by a crash (only the current build is served).
    Called under the lock, so no other build is in progress."""
    for folder in dist_dir().iterdir():
        if folder.is_dir() and folder != keep:
            shutil.rmtree(folder, ignore_errors=True)
