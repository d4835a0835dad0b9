"""A full disk while the core writes its state: the data dir on a small tmpfs, filled up to
the last few pages. The deployment fails cleanly (nothing half-written, the old group still
serving); once there is room again the same version deploys, and a restart brings it back."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

import pytest

from ggtest import health, run_aws, start_server, wait_deployment

ACCOUNT = "123456789012"
CERT = f"arn:aws:iot:us-east-1:{ACCOUNT}:cert/" + "ab" * 32
SIZE = 8 * 1024 * 1024


def thing(name: str) -> str:
    return f"arn:aws:iot:us-east-1:{ACCOUNT}:thing/{name}"


@pytest.fixture
def disk(tmp_path):
    mnt = tmp_path / "disk"
    mnt.mkdir()
    p = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={SIZE}", "tmpfs", str(mnt)],
                       capture_output=True, text=True)
    if p.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (needs root): {p.stderr.strip()}")
    yield mnt
    subprocess.run(["umount", "-l", str(mnt)], check=False)


def group_version(gg, gid: str | None, subscriptions: int) -> tuple[str, str]:
    """A group (or a new version of it) of two devices and `subscriptions` subscriptions
    between them, with long subjects so that the group is large on disk."""
    core = gg.create_core_definition(InitialVersion={"Cores": [
        {"Id": "core", "ThingArn": thing("core"), "CertificateArn": CERT}]})
    devices = gg.create_device_definition(InitialVersion={"Devices": [
        {"Id": n, "ThingArn": thing(n), "CertificateArn": CERT} for n in ("a", "b")]})
    subs = gg.create_subscription_definition(InitialVersion={"Subscriptions": [
        {"Id": f"s{i}", "Source": thing("a"), "Target": thing("b"),
         "Subject": f"plant/{'x' * 120}/line-{i}/+"} for i in range(subscriptions)]})
    arns = {"CoreDefinitionVersionArn": core["LatestVersionArn"],
            "DeviceDefinitionVersionArn": devices["LatestVersionArn"],
            "SubscriptionDefinitionVersionArn": subs["LatestVersionArn"]}
    if gid is None:
        gid = gg.create_group(Name="full-disk")["Id"]
    return gid, gg.create_group_version(GroupId=gid, **arns)["Version"]


def fill(mnt: Path, leave: int) -> Path:
    """Fill the file system, then give back `leave` bytes."""
    filler = mnt / "filler"
    with open(filler, "wb") as f:
        chunk = b"\0" * 65536
        try:
            while True:
                f.write(chunk)
                f.flush()
        except OSError:
            pass
    size = filler.stat().st_size
    os.truncate(filler, max(0, size - leave))
    return filler


def test_full_disk_fails_the_deployment_cleanly(disk):
    server = start_server(disk)
    gg = server.client()
    gid, small = group_version(gg, None, 2)
    first = gg.create_deployment(GroupId=gid, DeploymentType="NewDeployment",
                                 GroupVersionId=small)
    assert wait_deployment(gg, gid, first["DeploymentId"])["DeploymentStatus"] == "Success"
    _, big = group_version(gg, gid, 500)

    # Room for the control plane's small writes, not for the core's copy of a 500-subscription
    # group.
    filler = fill(disk, 96 * 1024)
    dep = gg.create_deployment(GroupId=gid, DeploymentType="NewDeployment", GroupVersionId=big)
    status = wait_deployment(gg, gid, dep["DeploymentId"])
    assert status["DeploymentStatus"] == "Failure", status
    assert "No space left on device" in status["ErrorMessage"], status
    assert status["ErrorDetails"][0]["DetailedErrorCode"] == "StateWriteFailed", status
    assert health(server)["activeDeployment"] == first["DeploymentId"]
    assert health(server)["subscriptions"] == 2
    assert not list(Path(server.data_dir).glob("**/.group.json.tmp")), "a partial file is left"

    # Room again: the same version deploys, and a restart brings it back.
    filler.unlink()
    again = gg.create_deployment(GroupId=gid, DeploymentType="NewDeployment",
                                 GroupVersionId=big)
    assert wait_deployment(gg, gid, again["DeploymentId"])["DeploymentStatus"] == "Success"
    assert health(server)["subscriptions"] == 500
    server.restart()
    h = health(server)
    assert (h["activeDeployment"], h["subscriptions"]) == (again["DeploymentId"], 500), h
    run_aws(server, "list-groups")
    server.stop()
