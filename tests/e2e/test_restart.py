"""Restart keeps everything: SIGTERM `coupler up`, start it again on the same data dir, and
every list/get answers as before, with the same credentials file."""

from __future__ import annotations

import payloads as P
from ggtest import run_aws, wait_deployment


def _populate(gg) -> dict:
    defs = {}
    for kind in P.KINDS:
        d = kind.method(gg, "create")(Name=f"kept-{kind.segment}", InitialVersion=kind.payload,
                                      tags={"kept": kind.segment})
        kind.method(gg, "create", "_version")(**{kind.id_param: d["Id"]}, **kind.second)
        defs[kind.segment] = d["Id"]
    latest = {k.segment: k.method(gg, "get")(**{k.id_param: defs[k.segment]}) for k in P.KINDS}
    tutorial = ["resources", "connectors", "functions", "subscriptions", "cores"]
    arns = {P.KIND[s].group_version_field: latest[s]["LatestVersionArn"] for s in tutorial}
    # Connectors and subscriptions: the first (tutorial) versions go with the tutorial group.
    for s in ("connectors", "subscriptions", "resources"):
        kind = P.KIND[s]
        first = kind.method(gg, "list", "_versions")(**{kind.id_param: defs[s]})["Versions"][0]
        arns[kind.group_version_field] = first["Arn"]
    group = gg.create_group(Name="kept-group", InitialVersion=arns, tags={"kept": "group"},
                            AmznClientToken="restart-token")
    gid = group["Id"]
    v2 = gg.create_group_version(GroupId=gid, **arns,
                                 LoggerDefinitionVersionArn=latest["loggers"]["LatestVersionArn"])
    dep = gg.create_deployment(GroupId=gid, DeploymentType="NewDeployment",
                               GroupVersionId=v2["Version"])
    # Let the core settle it, so both snapshots see the same final status.
    wait_deployment(gg, gid, dep["DeploymentId"])
    gg.associate_role_to_group(GroupId=gid, RoleArn=P.ROLE_ARN)
    gg.create_group_certificate_authority(GroupId=gid)
    gg.update_group_certificate_configuration(GroupId=gid,
                                              CertificateExpiryInMilliseconds=str(10 * 86400000))
    gg.update_connectivity_info(ThingName="MyCore", ConnectivityInfo=[
        {"Id": "c1", "HostAddress": "10.0.0.5", "PortNumber": 8883, "Metadata": "lan"}])
    gg.create_group(Name="second-group")
    return {"defs": defs, "group": gid, "deployment": dep["DeploymentId"],
            "group_version": v2["Version"], "initial_version": arns}


def _snapshot(gg, ids: dict) -> dict:
    """Every read the API offers over what _populate made (ResponseMetadata stripped)."""
    s = P.strip_meta
    gid = ids["group"]
    snap = {
        "list_groups": s(gg.list_groups()),
        "get_group": s(gg.get_group(GroupId=gid)),
        "list_group_versions": s(gg.list_group_versions(GroupId=gid)),
        "list_deployments": s(gg.list_deployments(GroupId=gid)),
        "get_deployment_status": s(gg.get_deployment_status(
            GroupId=gid, DeploymentId=ids["deployment"])),
        "get_associated_role": s(gg.get_associated_role(GroupId=gid)),
        "cas": s(gg.list_group_certificate_authorities(GroupId=gid)),
        "cert_config": s(gg.get_group_certificate_configuration(GroupId=gid)),
        "connectivity": s(gg.get_connectivity_info(ThingName="MyCore")),
        "group_tags": s(gg.list_tags_for_resource(ResourceArn=gg.get_group(GroupId=gid)["Arn"])),
    }
    for v in snap["list_group_versions"]["Versions"]:
        snap[f"group_version {v['Version']}"] = s(gg.get_group_version(
            GroupId=gid, GroupVersionId=v["Version"]))
    for ca in snap["cas"]["GroupCertificateAuthorities"]:
        snap[f"ca {ca['GroupCertificateAuthorityId']}"] = s(gg.get_group_certificate_authority(
            GroupId=gid, CertificateAuthorityId=ca["GroupCertificateAuthorityId"]))
    for kind in P.KINDS:
        did = ids["defs"][kind.segment]
        snap[f"list {kind.segment}"] = s(kind.method(gg, "list")())
        snap[f"get {kind.segment}"] = s(kind.method(gg, "get")(**{kind.id_param: did}))
        versions = s(kind.method(gg, "list", "_versions")(**{kind.id_param: did}))
        snap[f"versions {kind.segment}"] = versions
        for v in versions["Versions"]:
            snap[f"version {kind.segment} {v['Version']}"] = s(kind.method(gg, "get", "_version")(
                **{kind.id_param: did, kind.version_param: v["Version"]}))
    return snap


def test_restart_keeps_everything(own_server):
    server = own_server
    assert "generated now" in server.credentials_note, server.credentials_note
    assert server.access_key.startswith("AKIA"), server.access_key
    mode = server.credentials_file.stat().st_mode & 0o777
    assert mode & 0o077 == 0, f"the credentials file is readable by others: {oct(mode)}"
    gg = server.client()
    ids = _populate(gg)
    before = _snapshot(gg, ids)
    creds_before = server.credentials_file.read_bytes()
    assert before["get_group"]["Name"] == "kept-group"
    assert len(before["list_groups"]["Groups"]) == 2

    server.restart()  # SIGTERM, exit code 0, start on the same data dir
    assert server.credentials_file.read_bytes() == creds_before, (
        "the credentials file changed on restart")
    note = server.credentials_note
    assert str(server.credentials_file) in note and server.access_key in note, (
        f"after a restart, coupler up should name the same credentials file and key: {note!r}")
    assert "generated now" not in note, f"a new key was generated on restart: {note!r}"

    gg = server.client()
    after = _snapshot(gg, ids)
    assert sorted(after) == sorted(before)
    for key in before:
        assert after[key] == before[key], (
            f"{key} changed across the restart:\nbefore: {before[key]}\nafter:  {after[key]}")

    # The AWS CLI, with the same credentials file, sees the same groups.
    listed = run_aws(server, "list-groups")
    assert listed["Groups"] == before["list_groups"]["Groups"], listed

    # The client token is remembered; new objects get new ids and go on working.
    again = gg.create_group(Name="kept-group", InitialVersion=ids["initial_version"],
                            tags={"kept": "group"}, AmznClientToken="restart-token")
    assert again["Id"] == ids["group"], f"a retried CreateGroup made a new group: {again}"
    fresh = gg.create_group(Name="after-restart")
    assert fresh["Id"] not in {g["Id"] for g in before["list_groups"]["Groups"]}
    names = [g["Name"] for g in gg.list_groups()["Groups"]]
    assert names == ["kept-group", "second-group", "after-restart"], names
