"""The output folder's file-system errors: each an OutputError with a clear message."""

from __future__ import annotations

import errno
import json
import os
import pickle
import subprocess
import sys
from pathlib import Path

import pytest

from consentfetch import OutputError, fetch_shards
from consentfetch.tarstream import TarStream
from consentfetch.testsite import Delivery, LocalSite, Resource, make_image
from consentfetch.writer import write_error_message

from .conftest import LOCAL

# Runs the CLI with every write to a file under argv[1] failing with errno argv[2],
# as a full disk or a folder we may not write would (root ignores permissions).
FAILING_WRITES = '''
import errno, os, sys
from fsspec.implementations.local import LocalFileSystem
from consentfetch.cli import main
folder, code = sys.argv[1], getattr(errno, sys.argv[2])
real = LocalFileSystem._open
def _open(self, path, mode="rb", **kwargs):
    if "w" in mode and str(path).startswith(folder):
        raise OSError(code, os.strerror(code), path)
    return real(self, path, mode, **kwargs)
LocalFileSystem._open = _open
sys.exit(main(sys.argv[3:]))
'''


def run_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "consentfetch", *args], capture_output=True,
                          text=True, timeout=120)


def _one_image(site: LocalSite, url_list) -> str:
    return url_list([{"url": site.put(0, "/a.jpg", make_image(40, 40))}])


def test_output_dir_that_is_a_file(url_list, tmp_path: Path) -> None:
    path = url_list([{"url": "http://127.0.0.2/a.jpg"}])
    file = tmp_path / "out"
    file.write_text("not a folder")
    for target in (file, file / "sub"):
        result = run_cli("download", path, str(target), "--processes", "1")
        assert result.returncode == 2, result.stderr
        assert f"OUTPUT_DIR {target} is a file, not a folder" in result.stderr
        assert "Errno" not in result.stderr and "Traceback" not in result.stderr
    assert file.read_text() == "not a folder"


@pytest.mark.parametrize(("code", "said"), [("EACCES", "permission denied"),
                                            ("ENOSPC", "no space left on the device")])
def test_cli_write_errors_exit_2(site: LocalSite, url_list, tmp_path: Path, code: str,
                                 said: str) -> None:
    out = tmp_path / "o"
    out.mkdir()  # exists: only writing into it fails
    result = subprocess.run(
        [sys.executable, "-c", FAILING_WRITES, str(out), code, "download",
         _one_image(site, url_list), str(out), "--allow-private-networks", "--processes", "1"],
        capture_output=True, text=True, timeout=120)
    assert result.returncode == 2, result.stderr
    assert f"consentfetch: error: cannot write to output folder {out}: {said}" \
        in result.stderr
    assert "Traceback" not in result.stderr
    assert list(out.iterdir()) == []


@pytest.mark.skipif(os.geteuid() == 0, reason="root writes into a read-only folder anyway")
def test_cli_read_only_output_folder(site: LocalSite, url_list, tmp_path: Path) -> None:
    out = tmp_path / "o"
    out.mkdir()
    out.chmod(0o555)
    try:
        result = run_cli("download", _one_image(site, url_list), str(out),
                         "--allow-private-networks", "--processes", "1")
    finally:
        out.chmod(0o755)
    assert result.returncode == 2, result.stderr
    assert "permission denied" in result.stderr and "Traceback" not in result.stderr


def test_full_disk_while_writing_a_shard(site: LocalSite, url_list, tmp_path: Path,
                                         monkeypatch) -> None:
    """The tar's write fails (ENOSPC) inside the shard pipeline: the run raises
    OutputError (not an ExceptionGroup, not a bare OSError), run.json says failed,
    and no temporary file is left."""
    def full(self: TarStream, name: str, data: bytes) -> None:
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(TarStream, "add", full)
    out = tmp_path / "o"
    with pytest.raises(OutputError, match="no space left on the device") as raised:
        fetch_shards(_one_image(site, url_list), str(out), **LOCAL)
    assert str(out) in str(raised.value)
    assert json.loads((out / "run.json").read_text())["state"] == "failed"
    assert sorted(p.name for p in out.iterdir()) == ["run.json"]


def test_output_error_crosses_process_boundaries() -> None:
    """Raised in a worker process, it reaches the parent as itself."""
    error = pickle.loads(pickle.dumps(OutputError("cannot write to output folder o: x")))
    assert type(error) is OutputError and str(error) == "cannot write to output folder o: x"


def test_write_error_messages() -> None:
    full = OSError(errno.ENOSPC, "No space left on device")
    assert write_error_message("s3://b/o", full) == \
        "cannot write to output folder s3://b/o: no space left on the device " \
        "([Errno 28] No space left on device)"
    odd = OSError(errno.EIO, "Input/output error")
    assert write_error_message("o", odd) == \
        "cannot write to output folder o: [Errno 5] Input/output error"
    assert write_error_message("/x/o", odd, "/x/o").startswith(
        "OUTPUT_DIR /x/o is a file, not a folder: ")
    assert "(/x is a file)" in write_error_message("/x/o", odd, "/x")


# Installed in every process of the run (the CLI and its spawned workers) through
# PYTHONPATH: writing a shard's tar fails with ENOSPC, everything else works.
FULL_DISK_FOR_TARS = '''
import errno, os
from fsspec.implementations.local import LocalFileSystem
real = LocalFileSystem._open
def _open(self, path, mode="rb", **kwargs):
    if "w" in mode and str(path).endswith(".tar.tmp"):
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), path)
    return real(self, path, mode, **kwargs)
LocalFileSystem._open = _open
'''


def test_full_disk_in_a_worker_process(site: LocalSite, url_list, tmp_path: Path) -> None:
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FULL_DISK_FOR_TARS)
    rows = [{"url": site.put(0, f"/{i}.jpg", make_image(40, 40, seed=i))} for i in range(4)]
    out = tmp_path / "o"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run(
        [sys.executable, "-m", "consentfetch", "download", url_list(rows), str(out),
         "--allow-private-networks", "--processes", "2", "--shard-size", "2"],
        capture_output=True, text=True, timeout=120, env=env)
    assert result.returncode == 2, result.stderr
    assert f"cannot write to output folder {out}: no space left on the device" in result.stderr
    assert "Traceback" not in result.stderr
    assert json.loads((out / "run.json").read_text())["state"] == "failed"
    assert not list(out.glob("*.tmp"))


# The disk is full for shard 0's tar only: one worker process fails, the other goes on.
FULL_DISK_FOR_SHARD_0 = FULL_DISK_FOR_TARS.replace('endswith(".tar.tmp")',
                                                   'endswith("00000.tar.tmp")')


def test_a_failed_worker_does_not_hang_the_run_while_another_sends_its_outcome(
        site: LocalSite, url_list, tmp_path: Path) -> None:
    """The run fails with the first worker's error even when another worker then
    completes a shard whose outcome (its origin files, bodies kept with
    --save-consent-files) is bigger than a pipe holds: the parent keeps reading until every worker has exited."""
    hooks = tmp_path / "hooks"
    hooks.mkdir()
    (hooks / "sitecustomize.py").write_text(FULL_DISK_FOR_SHARD_0)
    comments = "".join(f"# line {i} of a long robots.txt, kept whole in origins.parquet\n"
                       for i in range(4000))  # about 240 kB: more than a pipe's 64 kB
    site.put(1, "/robots.txt", comments + "User-agent: *\nAllow: /\n")
    slow = Resource(make_image(40, 40, seed=1), content_type="image/jpeg",
                    delivery=Delivery(piece=50, pause=0.2))  # 3-4 s: after shard 0 fails
    rows = [{"url": site.put(0, "/a.jpg", make_image(40, 40))},
            {"url": site.put(1, "/slow.jpg", slow)}]
    out = tmp_path / "o"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(
        [str(hooks), *filter(None, [os.environ.get("PYTHONPATH")])])}
    result = subprocess.run(
        [sys.executable, "-m", "consentfetch", "download", url_list(rows), str(out),
         "--allow-private-networks", "--processes", "2", "--shard-size", "1",
         "--save-consent-files"],
        capture_output=True, text=True, timeout=90, env=env)
    assert result.returncode == 2, result.stderr
    assert f"cannot write to output folder {out}: no space left on the device" in result.stderr
    assert json.loads((out / "run.json").read_text())["state"] == "failed"
    assert site.hit_count(1, "/slow.jpg") == 1  # the other worker did run its shard
