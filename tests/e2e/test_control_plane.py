"""The control plane through the real AWS CLI and boto3.

1. The Greengrass connectors CLI tutorial (TwilioNotifications), step by step with the AWS CLI,
   then every list/get checked against what was created.
2. Create/get/list/update/delete of every definition kind and of groups with boto3; boto3
   paginators; client-token idempotency.
3. The other operations with the AWS CLI: group CA, certificate expiry, connectivity info,
   tags, group roles, reset-deployments, bulk deployments (unsupported).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import uuid

import pytest
from botocore.exceptions import ClientError

import payloads as P
from ggtest import wait_deployment, aws_parallel, client_error, error_text, expect_error

# ================================================================================================
# 1. The connectors CLI tutorial with the AWS CLI
# ================================================================================================

TUTORIAL_KINDS = ["resources", "connectors", "functions", "subscriptions", "cores"]
TUTORIAL_NAMES = {
    "resources": "MyGreengrassResources",
    "connectors": "MyGreengrassConnectors",
    "functions": "MyGreengrassFunctions",
    "subscriptions": "MyGreengrassSubscriptions",
    "cores": "MyGreengrassCore",
}


@pytest.fixture(scope="module")
def tutorial(server):
    """Run the tutorial's create steps with the AWS CLI; every answer, by step."""
    out: dict = {"definitions": {}}
    calls = []
    for seg in TUTORIAL_KINDS:
        kind = P.KIND[seg]
        if seg == "resources":
            # The tutorial passes this one as --cli-input-json.
            doc = {"Name": TUTORIAL_NAMES[seg], "InitialVersion": kind.payload}
            calls.append((f"create-{kind.cli}-definition", "--cli-input-json", json.dumps(doc)))
        else:
            calls.append((f"create-{kind.cli}-definition", "--name", TUTORIAL_NAMES[seg],
                          "--initial-version", json.dumps(kind.payload)))
    for seg, answer in zip(TUTORIAL_KINDS, aws_parallel(server, calls)):
        out["definitions"][seg] = answer

    defs = out["definitions"]
    out["group"] = server.aws("create-group", "--name", "TwilioGroup")
    gid = out["group"]["Id"]
    out["group_version"] = server.aws(
        "create-group-version", "--group-id", gid,
        "--core-definition-version-arn", defs["cores"]["LatestVersionArn"],
        "--function-definition-version-arn", defs["functions"]["LatestVersionArn"],
        "--connector-definition-version-arn", defs["connectors"]["LatestVersionArn"],
        "--resource-definition-version-arn", defs["resources"]["LatestVersionArn"],
        "--subscription-definition-version-arn", defs["subscriptions"]["LatestVersionArn"],
    )
    out["deployment"] = server.aws(
        "create-deployment", "--deployment-type", "NewDeployment", "--group-id", gid,
        "--group-version-id", out["group_version"]["Version"])
    return out


@pytest.mark.parametrize("segment", TUTORIAL_KINDS)
def test_tutorial_definition_listed_and_got(server, tutorial, segment):
    kind = P.KIND[segment]
    created = tutorial["definitions"][segment]
    name = TUTORIAL_NAMES[segment]
    P.assert_definition_info(created, segment, name=name, what=f"create-{kind.cli}-definition")

    did, vid = created["Id"], created["LatestVersion"]
    listed, got, version, versions = aws_parallel(server, [
        (f"list-{kind.cli}-definitions",),
        (f"get-{kind.cli}-definition", f"--{kind.cli}-definition-id", did),
        (f"get-{kind.cli}-definition-version", f"--{kind.cli}-definition-id", did,
         f"--{kind.cli}-definition-version-id", vid),
        (f"list-{kind.cli}-definition-versions", f"--{kind.cli}-definition-id", did),
    ])

    entries = [d for d in listed.get("Definitions", []) if d.get("Id") == did]
    assert len(entries) == 1, f"list-{kind.cli}-definitions: {did} listed {len(entries)} times: {listed}"
    for what, info in (("list", entries[0]), ("get", got)):
        P.assert_definition_info(info, segment, name=name, what=f"{what}-{kind.cli}-definition")
        for key in ("Arn", "Id", "Name", "LatestVersion", "LatestVersionArn",
                    "CreationTimestamp", "LastUpdatedTimestamp"):
            assert info.get(key) == created[key], (
                f"{what}-{kind.cli}-definition {key}: {info.get(key)!r}, created {created[key]!r}")

    P.assert_version_info(version, segment, did, vid, what=f"get-{kind.cli}-definition-version")
    assert version["Arn"] == created["LatestVersionArn"]
    assert version["Definition"] == kind.payload, (
        f"get-{kind.cli}-definition-version: the Definition is not what was sent.\n"
        f"sent: {json.dumps(kind.payload, sort_keys=True)}\n"
        f"got:  {json.dumps(version['Definition'], sort_keys=True)}")

    assert len(versions.get("Versions", [])) == 1, versions
    P.assert_version_info(versions["Versions"][0], segment, did, vid,
                          what=f"list-{kind.cli}-definition-versions[0]")
    assert versions["Versions"][0]["CreationTimestamp"] == version["CreationTimestamp"]


def test_tutorial_group_and_version(server, tutorial):
    group = tutorial["group"]
    gid = group["Id"]
    P.assert_uuid(gid, "create-group Id")
    m = P.assert_match(P.GROUP_ARN_RE, group.get("Arn"), "create-group Arn")
    assert m.group(2) == gid
    assert group.get("Name") == "TwilioGroup"
    P.assert_timestamp(group.get("CreationTimestamp"), "create-group CreationTimestamp")
    P.assert_timestamp(group.get("LastUpdatedTimestamp"), "create-group LastUpdatedTimestamp")
    assert "LatestVersion" not in group, f"a group created without a version has {group}"

    gv = tutorial["group_version"]
    P.assert_version_info(gv, None, gid, gv.get("Version"), what="create-group-version")
    P.assert_uuid(gv["Version"], "create-group-version Version")

    got, listed, version, versions = aws_parallel(server, [
        ("get-group", "--group-id", gid),
        ("list-groups",),
        ("get-group-version", "--group-id", gid, "--group-version-id", gv["Version"]),
        ("list-group-versions", "--group-id", gid),
    ])
    for what, info in (("get-group", got),
                       ("list-groups", next((g for g in listed.get("Groups", [])
                                             if g.get("Id") == gid), None))):
        assert info is not None, f"list-groups does not list {gid}: {listed}"
        assert info["Arn"] == group["Arn"] and info["Name"] == "TwilioGroup", info
        assert info.get("LatestVersion") == gv["Version"], f"{what}: {info}"
        assert info.get("LatestVersionArn") == gv["Arn"], f"{what}: {info}"
        assert info["CreationTimestamp"] == group["CreationTimestamp"], info
        P.assert_timestamp(info["LastUpdatedTimestamp"], f"{what} LastUpdatedTimestamp")
        assert info["LastUpdatedTimestamp"] >= info["CreationTimestamp"]

    P.assert_version_info(version, None, gid, gv["Version"], what="get-group-version")
    defs = tutorial["definitions"]
    assert version["Definition"] == {
        "CoreDefinitionVersionArn": defs["cores"]["LatestVersionArn"],
        "FunctionDefinitionVersionArn": defs["functions"]["LatestVersionArn"],
        "ConnectorDefinitionVersionArn": defs["connectors"]["LatestVersionArn"],
        "ResourceDefinitionVersionArn": defs["resources"]["LatestVersionArn"],
        "SubscriptionDefinitionVersionArn": defs["subscriptions"]["LatestVersionArn"],
    }, version
    assert [v["Version"] for v in versions.get("Versions", [])] == [gv["Version"]], versions
    assert versions["Versions"][0]["Arn"] == gv["Arn"]


def test_tutorial_deployment(server, tutorial):
    gid = tutorial["group"]["Id"]
    dep = tutorial["deployment"]
    P.assert_uuid(dep.get("DeploymentId"), "create-deployment DeploymentId")
    m = P.assert_match(P.DEPLOYMENT_ARN_RE, dep.get("DeploymentArn"), "DeploymentArn")
    assert m.groups()[1:] == (gid, dep["DeploymentId"])

    status, listed = aws_parallel(server, [
        ("get-deployment-status", "--group-id", gid, "--deployment-id", dep["DeploymentId"]),
        ("list-deployments", "--group-id", gid),
    ])
    assert status.get("DeploymentType") == "NewDeployment", status
    # The embedded core applies it. Its function (account 123456789012's TempMonitor) is no
    # function of this control plane, so there is no code to run: it fails, naming it,
    # rather than pretending.
    final = wait_deployment(server.client(), gid, dep["DeploymentId"])
    assert final["DeploymentStatus"] == "Failure", final
    codes = {d["DetailedErrorCode"] for d in final.get("ErrorDetails", [])}
    # (Its container-only connector, if any, is refused too: connectors cannot be isolated.)
    assert "FunctionCodeUnavailable" in codes, final
    assert "TempMonitor" in final["ErrorMessage"], final
    P.assert_timestamp(status.get("UpdatedAt"), "get-deployment-status UpdatedAt")

    deployments = listed.get("Deployments", [])
    assert len(deployments) == 1, listed
    d = deployments[0]
    assert d.get("DeploymentId") == dep["DeploymentId"], d
    assert d.get("DeploymentArn") == dep["DeploymentArn"], d
    assert d.get("DeploymentType") == "NewDeployment", d
    # For a NewDeployment, GroupArn is the deployed group *version*'s ARN.
    assert d.get("GroupArn") == tutorial["group_version"]["Arn"], d
    P.assert_timestamp(d.get("CreatedAt"), "list-deployments CreatedAt")


def test_tutorial_arns_share_one_account(tutorial):
    arns = [d["Arn"] for d in tutorial["definitions"].values()]
    arns += [d["LatestVersionArn"] for d in tutorial["definitions"].values()]
    arns += [tutorial["group"]["Arn"], tutorial["group_version"]["Arn"],
             tutorial["deployment"]["DeploymentArn"]]
    accounts = {a.split(":")[4] for a in arns}
    assert len(accounts) == 1, f"ARNs name several accounts: {arns}"
    (account,) = accounts
    assert len(account) == 12 and account.isdigit(), account


# ================================================================================================
# 2. The basics through boto3
# ================================================================================================


@pytest.mark.parametrize("segment", [k.segment for k in P.KINDS])
def test_definition_crud_boto3(gg, segment):
    kind = P.KIND[segment]
    name = f"crud-{segment}"
    created = kind.method(gg, "create")(Name=name, InitialVersion=kind.payload,
                                        tags={"suite": "e2e", "kind": segment})
    created = P.strip_meta(created)
    P.assert_definition_info(created, segment, name=name, what=f"create_{kind.snake}_definition")
    assert "tags" not in created, f"the create answer carries no tags: {created}"
    did, v1 = created["Id"], created["LatestVersion"]
    ids = {kind.id_param: did}

    got = P.strip_meta(kind.method(gg, "get")(**ids))
    for key, value in created.items():
        assert got.get(key) == value, f"get {key}: {got.get(key)!r} != created {value!r}"
    assert got.get("tags") == {"suite": "e2e", "kind": segment}, got

    version = kind.method(gg, "get", "_version")(**ids, **{kind.version_param: v1})
    P.assert_version_info(version, segment, did, v1)
    assert version["Definition"] == kind.payload, (version["Definition"], kind.payload)

    # A second version moves LatestVersion; the first stays readable.
    v2info = kind.method(gg, "create", "_version")(**ids, **kind.second)
    v2 = v2info.get("Version")
    P.assert_version_info(v2info, segment, did, v2, what=f"create_{kind.snake}_definition_version")
    assert v2 != v1
    got = kind.method(gg, "get")(**ids)
    assert (got["LatestVersion"], got["LatestVersionArn"]) == (v2, v2info["Arn"]), got
    assert got["LastUpdatedTimestamp"] >= created["LastUpdatedTimestamp"]
    assert kind.method(gg, "get", "_version")(**ids, **{kind.version_param: v2})[
        "Definition"] == kind.second
    assert kind.method(gg, "get", "_version")(**ids, **{kind.version_param: v1})[
        "Definition"] == kind.payload
    versions = kind.method(gg, "list", "_versions")(**ids)["Versions"]
    assert [v["Version"] for v in versions] == [v1, v2], versions

    listed = kind.method(gg, "list")()["Definitions"]
    assert [d["Id"] for d in listed].count(did) == 1, listed

    # Rename; only the name changes.
    kind.method(gg, "update")(**ids, Name=f"{name}-renamed")
    got2 = kind.method(gg, "get")(**ids)
    assert got2["Name"] == f"{name}-renamed", got2
    assert (got2["Arn"], got2["LatestVersion"], got2["CreationTimestamp"]) == (
        got["Arn"], v2, created["CreationTimestamp"]), got2
    assert got2["LastUpdatedTimestamp"] >= got["LastUpdatedTimestamp"]
    listed = {d["Id"]: d for d in kind.method(gg, "list")()["Definitions"]}
    assert listed[did]["Name"] == f"{name}-renamed"

    # A definition may be created without a name and without a version.
    bare = P.strip_meta(kind.method(gg, "create")())
    P.assert_definition_info(bare, segment, name=None, has_version=False,
                             what=f"bare create_{kind.snake}_definition")
    assert "Name" not in bare or bare["Name"] in (None, ""), bare

    kind.method(gg, "delete")(**ids)
    kind.method(gg, "delete")(**{kind.id_param: bare["Id"]})
    expect_error(404, "IdNotFoundException", kind.method(gg, "get"), **ids)
    expect_error(404, "IdNotFoundException", kind.method(gg, "delete"), **ids)
    expect_error(404, ("IdNotFoundException", "VersionNotFoundException"),
                 kind.method(gg, "get", "_version"), **ids, **{kind.version_param: v1})
    remaining = [d["Id"] for d in kind.method(gg, "list")()["Definitions"]]
    assert did not in remaining and bare["Id"] not in remaining, remaining


def test_group_crud_boto3(gg):
    core = gg.create_core_definition(Name="group-crud-core", InitialVersion=P.CORES)
    logger = gg.create_logger_definition(InitialVersion=P.LOGGERS)
    created = P.strip_meta(gg.create_group(
        Name="crud-group", tags={"suite": "e2e"},
        InitialVersion={"CoreDefinitionVersionArn": core["LatestVersionArn"]}))
    gid = created["Id"]
    P.assert_uuid(gid, "create_group Id")
    assert P.assert_match(P.GROUP_ARN_RE, created["Arn"], "group Arn").group(2) == gid
    assert created["Name"] == "crud-group"
    v1 = created.get("LatestVersion")
    P.assert_uuid(v1, "create_group with InitialVersion: LatestVersion")
    m = P.assert_match(P.GROUP_VERSION_ARN_RE, created.get("LatestVersionArn"), "LatestVersionArn")
    assert m.groups()[1:] == (gid, v1)
    P.assert_timestamp(created["CreationTimestamp"], "CreationTimestamp")

    got = P.strip_meta(gg.get_group(GroupId=gid))
    for key, value in created.items():
        assert got.get(key) == value, f"get_group {key}: {got.get(key)!r} != {value!r}"
    assert gg.get_group_version(GroupId=gid, GroupVersionId=v1)["Definition"] == {
        "CoreDefinitionVersionArn": core["LatestVersionArn"]}

    v2 = gg.create_group_version(GroupId=gid, CoreDefinitionVersionArn=core["LatestVersionArn"],
                                 LoggerDefinitionVersionArn=logger["LatestVersionArn"])
    P.assert_version_info(v2, None, gid, v2["Version"], what="create_group_version")
    got = gg.get_group(GroupId=gid)
    assert (got["LatestVersion"], got["LatestVersionArn"]) == (v2["Version"], v2["Arn"]), got
    assert gg.get_group_version(GroupId=gid, GroupVersionId=v2["Version"])["Definition"] == {
        "CoreDefinitionVersionArn": core["LatestVersionArn"],
        "LoggerDefinitionVersionArn": logger["LatestVersionArn"]}
    assert [v["Version"] for v in gg.list_group_versions(GroupId=gid)["Versions"]] == [
        v1, v2["Version"]]

    gg.update_group(GroupId=gid, Name="crud-group-renamed")
    got = gg.get_group(GroupId=gid)
    assert got["Name"] == "crud-group-renamed" and got["LatestVersion"] == v2["Version"], got
    groups = {g["Id"]: g for g in gg.list_groups()["Groups"]}
    assert groups[gid]["Name"] == "crud-group-renamed", groups[gid]
    assert "tags" not in groups[gid], f"GroupInformation has no tags: {groups[gid]}"

    gg.delete_group(GroupId=gid)
    expect_error(404, "IdNotFoundException", gg.get_group, GroupId=gid)
    expect_error(404, "IdNotFoundException", gg.delete_group, GroupId=gid)
    expect_error(404, "IdNotFoundException", gg.list_group_versions, GroupId=gid)
    assert gid not in [g["Id"] for g in gg.list_groups()["Groups"]]
    # The definitions the group referred to live on.
    gg.get_core_definition(CoreDefinitionId=core["Id"])


def test_deleted_definition_versions_cannot_be_used_boto3(gg):
    """A version just created, or just used by a group version, is kept parsed by the server;
    once its definition is deleted, a new group version may not refer to it."""
    core = gg.create_core_definition(InitialVersion=P.CORES)
    loggers = gg.create_logger_definition(InitialVersion=P.LOGGERS)
    group = gg.create_group(Name="deleted-definitions")
    refs = {"CoreDefinitionVersionArn": core["LatestVersionArn"],
            "LoggerDefinitionVersionArn": loggers["LatestVersionArn"]}
    gg.create_group_version(GroupId=group["Id"], **refs)
    gg.delete_logger_definition(LoggerDefinitionId=loggers["Id"])
    e = expect_error(400, "BadRequestException", gg.create_group_version,
                     GroupId=group["Id"], **refs)
    assert "Loggers definition reference does not exist" in error_text(e), error_text(e)
    # So with a version created just before the deletion, never used.
    loggers = gg.create_logger_definition(InitialVersion=P.LOGGERS)
    gg.delete_logger_definition(LoggerDefinitionId=loggers["Id"])
    refs["LoggerDefinitionVersionArn"] = loggers["LatestVersionArn"]
    expect_error(400, "BadRequestException", gg.create_group_version,
                 GroupId=group["Id"], **refs)
    assert len(gg.list_group_versions(GroupId=group["Id"])["Versions"]) == 1
    gg.delete_group(GroupId=group["Id"])


def _paginate(gg, operation: str, key: str, **kwargs) -> tuple[list[list[dict]], list[dict]]:
    pages = [p[key] for p in gg.get_paginator(operation).paginate(
        PaginationConfig={"PageSize": 2}, **kwargs)]
    return pages, [item for page in pages for item in page]


def _check_pages(pages, items, want_ids, key="Id"):
    assert all(len(p) <= 2 for p in pages), f"a page holds more than PageSize=2: {pages}"
    assert len(pages) >= 3, f"5+ items in pages of 2 should take 3+ pages: {pages}"
    ids = [i[key] for i in items]
    assert len(ids) == len(set(ids)), f"an item is listed twice across pages: {ids}"
    missing = set(want_ids) - set(ids)
    assert not missing, f"items missing from the pages: {missing}"


def test_paginators_boto3(gg):
    group_ids = [gg.create_group(Name=f"page-group-{i}")["Id"] for i in range(5)]
    core_ids = [gg.create_core_definition(Name=f"page-core-{i}")["Id"] for i in range(5)]

    pages, items = _paginate(gg, "list_groups", "Groups")
    _check_pages(pages, items, group_ids)
    assert [g["Id"] for g in items] == [g["Id"] for g in gg.list_groups()["Groups"]], (
        "the pages, end to end, are not the unpaginated list")

    pages, items = _paginate(gg, "list_core_definitions", "Definitions")
    _check_pages(pages, items, core_ids)

    # Versions of a definition and of a group, in creation order.
    core = gg.create_core_definition(InitialVersion=P.CORES)
    vids = [core["LatestVersion"]] + [
        gg.create_core_definition_version(CoreDefinitionId=core["Id"], **P.CORES)["Version"]
        for _ in range(4)]
    pages, items = _paginate(gg, "list_core_definition_versions", "Versions",
                             CoreDefinitionId=core["Id"])
    _check_pages(pages, items, vids, key="Version")
    assert [v["Version"] for v in items] == vids, "versions are not in creation order"

    gid = group_ids[0]
    gvids = [gg.create_group_version(GroupId=gid, CoreDefinitionVersionArn=core["LatestVersionArn"])
             ["Version"] for _ in range(5)]
    pages, items = _paginate(gg, "list_group_versions", "Versions", GroupId=gid)
    _check_pages(pages, items, gvids, key="Version")
    assert [v["Version"] for v in items] == gvids

    dids = [gg.create_deployment(GroupId=gid, DeploymentType="NewDeployment",
                                 GroupVersionId=gvids[-1])["DeploymentId"] for _ in range(5)]
    pages, items = _paginate(gg, "list_deployments", "Deployments", GroupId=gid)
    _check_pages(pages, items, dids, key="DeploymentId")

    # MaxResults/NextToken by hand.
    first = gg.list_groups(MaxResults="2")
    assert len(first["Groups"]) == 2 and first.get("NextToken"), first
    second = gg.list_groups(MaxResults="2", NextToken=first["NextToken"])
    assert not {g["Id"] for g in first["Groups"]} & {g["Id"] for g in second["Groups"]}


def test_cli_pagination(server, gg):
    for i in range(5):
        gg.create_group(Name=f"cli-page-group-{i}")
    want = [g["Id"] for g in gg.list_groups()["Groups"]]
    assert len(want) >= 5
    everything, first = aws_parallel(server, [
        ("list-groups", "--page-size", "2"),
        ("list-groups", "--max-items", "2"),
    ])
    assert [g["Id"] for g in everything["Groups"]] == want, (
        "list-groups --page-size 2 (the CLI following NextToken) does not give every group")
    assert [g["Id"] for g in first["Groups"]] == want[:2], first
    assert first.get("NextToken"), f"--max-items 2 of {len(want)} should give a NextToken: {first}"
    rest = server.aws("list-groups", "--starting-token", first["NextToken"], "--page-size", "2")
    assert [g["Id"] for g in rest["Groups"]] == want[2:], rest


def test_client_token_idempotency_boto3(gg):
    a = P.strip_meta(gg.create_group(Name="idempotent-group", AmznClientToken="t1"))
    b = P.strip_meta(gg.create_group(Name="idempotent-group", AmznClientToken="t1"))
    assert a["Id"] == b["Id"], f"same token, same request, two groups: {a} / {b}"
    assert a == b
    assert [g["Name"] for g in gg.list_groups()["Groups"]].count("idempotent-group") == 1

    e = expect_error(400, "BadRequestException", gg.create_group,
                     Name="another-group", AmznClientToken="t1")
    assert "another-group" not in [g["Name"] for g in gg.list_groups()["Groups"]], error_text(e)

    # Definitions too.
    c1 = gg.create_core_definition(Name="idem-core", InitialVersion=P.CORES,
                                   AmznClientToken="core-token")
    c2 = gg.create_core_definition(Name="idem-core", InitialVersion=P.CORES,
                                   AmznClientToken="core-token")
    assert (c1["Id"], c1["LatestVersion"]) == (c2["Id"], c2["LatestVersion"])
    assert len(gg.list_core_definition_versions(CoreDefinitionId=c1["Id"])["Versions"]) == 1


def test_runtime_configuration_and_service_role_boto3(gg):
    got = gg.get_thing_runtime_configuration(ThingName="MyCore")
    assert got["RuntimeConfiguration"]["TelemetryConfiguration"]["Telemetry"] in ("On", "Off")
    gg.update_thing_runtime_configuration(ThingName="MyCore",
                                          TelemetryConfiguration={"Telemetry": "Off"})
    got = gg.get_thing_runtime_configuration(ThingName="MyCore")
    assert got["RuntimeConfiguration"]["TelemetryConfiguration"]["Telemetry"] == "Off", got

    role = "arn:aws:iam::123456789012:role/Greengrass_ServiceRole"
    answer = gg.associate_service_role_to_account(RoleArn=role)
    P.assert_timestamp(answer.get("AssociatedAt"), "AssociatedAt")
    got = gg.get_service_role_for_account()
    assert got["RoleArn"] == role and got["AssociatedAt"] == answer["AssociatedAt"], got
    gg.disassociate_service_role_from_account()


# ================================================================================================
# 3. Other operations with the AWS CLI
# ================================================================================================


def _parse_pem(pem: str, tmp_path) -> str:
    """The subject of a PEM certificate, read by openssl (or `cryptography`)."""
    if shutil.which("openssl"):
        path = tmp_path / "ca.pem"
        path.write_text(pem)
        p = subprocess.run(["openssl", "x509", "-noout", "-subject", "-in", str(path)],
                           capture_output=True, text=True, timeout=30)
        assert p.returncode == 0, f"openssl cannot read the CA certificate:\n{p.stderr}\n{pem}"
        return p.stdout.strip()
    try:
        from cryptography import x509
    except ImportError:
        pytest.skip("neither openssl nor cryptography is available to parse the PEM")
    return x509.load_pem_x509_certificate(pem.encode()).subject.rfc4514_string()


def test_group_certificate_authority_cli(server, gg, tmp_path):
    gid = gg.create_group(Name="ca-group")["Id"]
    created = server.aws("create-group-certificate-authority", "--group-id", gid)
    m = P.assert_match(P.CA_ARN_RE, created.get("GroupCertificateAuthorityArn"),
                       "GroupCertificateAuthorityArn")
    assert m.group(2) == gid
    ca_id = m.group(3)

    got, listed = aws_parallel(server, [
        ("get-group-certificate-authority", "--group-id", gid, "--certificate-authority-id", ca_id),
        ("list-group-certificate-authorities", "--group-id", gid),
    ])
    assert got.get("GroupCertificateAuthorityId") == ca_id, got
    assert got.get("GroupCertificateAuthorityArn") == created["GroupCertificateAuthorityArn"]
    pem = got.get("PemEncodedCertificate", "")
    assert pem.startswith("-----BEGIN CERTIFICATE-----"), pem
    subject = _parse_pem(pem, tmp_path)
    assert subject, "the CA certificate has an empty subject"
    assert [c["GroupCertificateAuthorityId"] for c in listed["GroupCertificateAuthorities"]] == [
        ca_id], listed

    # Creating again rotates: a new CA, both listed, each with its own certificate.
    again = gg.create_group_certificate_authority(GroupId=gid)
    ca2 = P.assert_match(P.CA_ARN_RE, again["GroupCertificateAuthorityArn"], "rotated CA").group(3)
    assert ca2 != ca_id
    listed = gg.list_group_certificate_authorities(GroupId=gid)["GroupCertificateAuthorities"]
    assert [c["GroupCertificateAuthorityId"] for c in listed] == [ca_id, ca2], listed
    pem2 = gg.get_group_certificate_authority(GroupId=gid, CertificateAuthorityId=ca2)[
        "PemEncodedCertificate"]
    assert pem2 != pem
    expect_error(404, ("IdNotFoundException", "ResourceNotFoundException"),
                 gg.get_group_certificate_authority, GroupId=gid,
                 CertificateAuthorityId=str(uuid.uuid4()))


DAY_MS = 24 * 3600 * 1000


def test_group_certificate_configuration_cli(server, gg):
    gid = gg.create_group(Name="cert-config-group")["Id"]
    got = server.aws("get-group-certificate-configuration", "--group-id", gid)
    assert got.get("GroupId") == gid, got
    expiry = int(got["CertificateExpiryInMilliseconds"])
    assert 7 * DAY_MS <= expiry <= 30 * DAY_MS, got
    assert int(got["CertificateAuthorityExpiryInMilliseconds"]) > 30 * DAY_MS, got

    for days in (7, 30):
        answer = server.aws("update-group-certificate-configuration", "--group-id", gid,
                            "--certificate-expiry-in-milliseconds", str(days * DAY_MS))
        assert answer.get("CertificateExpiryInMilliseconds") == str(days * DAY_MS), answer
        assert answer.get("GroupId") == gid, answer

    err = server.aws("update-group-certificate-configuration", "--group-id", gid,
                     "--certificate-expiry-in-milliseconds", str(DAY_MS), check=False)
    assert err.code == "BadRequestException", err
    assert err.returncode != 0, err
    got = gg.get_group_certificate_configuration(GroupId=gid)
    assert got["CertificateExpiryInMilliseconds"] == str(30 * DAY_MS), (
        f"a refused update changed the setting: {got}")
    e = expect_error(400, "BadRequestException", gg.update_group_certificate_configuration,
                     GroupId=gid, CertificateExpiryInMilliseconds=str(DAY_MS))
    assert e.response["ResponseMetadata"]["HTTPStatusCode"] == 400


def test_connectivity_info_cli(server):
    info = [
        {"Id": "AutoIP_192.168.1.10_0", "HostAddress": "192.168.1.10", "PortNumber": 8883,
         "Metadata": ""},
        {"Id": "hostname", "HostAddress": "core.example.internal", "PortNumber": 443,
         "Metadata": "behind a load balancer"},
    ]
    answer = server.aws("update-connectivity-info", "--thing-name", "MyCore",
                        "--connectivity-info", json.dumps(info))
    assert answer.get("Version"), answer
    assert answer.get("Message"), f"UpdateConnectivityInfo answers a message: {answer}"
    got = server.aws("get-connectivity-info", "--thing-name", "MyCore")
    assert got.get("ConnectivityInfo") == info, got


def test_tags_cli(server, gg):
    group = gg.create_group(Name="tagged-group", tags={"env": "test"})
    arn = group["Arn"]
    server.aws("tag-resource", "--resource-arn", arn, "--tags", "owner=alice,team=iot")
    got = server.aws("list-tags-for-resource", "--resource-arn", arn)
    assert got.get("tags") == {"env": "test", "owner": "alice", "team": "iot"}, got
    server.aws("untag-resource", "--resource-arn", arn, "--tag-keys", "env", "team")
    got = server.aws("list-tags-for-resource", "--resource-arn", arn)
    assert got.get("tags") == {"owner": "alice"}, got

    # A definition's ARN is taggable too, and get-*-definition shows the tags.
    core = gg.create_core_definition(Name="tagged-core")
    gg.tag_resource(ResourceArn=core["Arn"], tags={"a": "1"})
    assert gg.list_tags_for_resource(ResourceArn=core["Arn"])["tags"] == {"a": "1"}
    assert gg.get_core_definition(CoreDefinitionId=core["Id"]).get("tags") == {"a": "1"}


def test_group_role_cli(server, gg):
    gid = gg.create_group(Name="role-group")["Id"]
    answer = server.aws("associate-role-to-group", "--group-id", gid, "--role-arn", P.ROLE_ARN)
    P.assert_timestamp(answer.get("AssociatedAt"), "associate-role-to-group AssociatedAt")
    got = server.aws("get-associated-role", "--group-id", gid)
    assert got == {"AssociatedAt": answer["AssociatedAt"], "RoleArn": P.ROLE_ARN}, got
    answer = server.aws("disassociate-role-from-group", "--group-id", gid)
    P.assert_timestamp(answer.get("DisassociatedAt"), "DisassociatedAt")
    err = server.aws("get-associated-role", "--group-id", gid, check=False)
    assert "You need to attach an IAM role to this deployment group." in err.message, err


def test_reset_deployments_cli(server, gg):
    core = gg.create_core_definition(InitialVersion=P.CORES)
    group = gg.create_group(Name="reset-group",
                            InitialVersion={"CoreDefinitionVersionArn": core["LatestVersionArn"]})
    gid = group["Id"]
    err = server.aws("reset-deployments", "--group-id", gid, "--force", check=False)
    assert "has not been deployed" in err.message, f"reset before any deployment: {err}"

    dep = server.aws("create-deployment", "--group-id", gid, "--deployment-type", "NewDeployment",
                     "--group-version-id", group["LatestVersion"])
    reset = server.aws("reset-deployments", "--group-id", gid, "--force")
    m = P.assert_match(P.DEPLOYMENT_ARN_RE, reset.get("DeploymentArn"), "reset DeploymentArn")
    assert m.group(3) == reset.get("DeploymentId") != dep["DeploymentId"], reset

    listed = gg.list_deployments(GroupId=gid)["Deployments"]
    by_id = {d["DeploymentId"]: d for d in listed}
    assert set(by_id) == {dep["DeploymentId"], reset["DeploymentId"]}, listed
    assert by_id[reset["DeploymentId"]]["DeploymentType"] == "ForceResetDeployment", listed
    assert by_id[dep["DeploymentId"]]["DeploymentType"] == "NewDeployment", listed
    status = gg.get_deployment_status(GroupId=gid, DeploymentId=reset["DeploymentId"])
    assert status["DeploymentType"] == "ForceResetDeployment", status

    err = server.aws("reset-deployments", "--group-id", gid, "--force", check=False)
    assert "already been reset" in err.message, f"a second reset: {err}"


def test_bulk_deployment_not_supported_cli(server):
    err = server.aws("start-bulk-deployment", "--execution-role-arn",
                     "arn:aws:iam::123456789012:role/BulkDeployRole",
                     "--input-file-uri", "s3://my-bucket/bulk/input.json", check=False)
    assert err.code == "BadRequestException", err
    assert err.returncode != 0, err
    assert "not supported" in err.message, err


def test_bulk_deployment_not_supported_boto3(gg):
    e = expect_error(400, "BadRequestException", gg.start_bulk_deployment,
                     ExecutionRoleArn="arn:aws:iam::123456789012:role/BulkDeployRole",
                     InputFileUri="s3://my-bucket/bulk/input.json")
    assert "not supported" in error_text(e)
    expect_error(400, "BadRequestException", gg.list_bulk_deployments)
    status, code, _, _ = client_error(e)
    assert (status, code) == (400, "BadRequestException")


def test_client_error_is_raised_not_swallowed(gg):
    """A sanity check of the harness: ClientError is what boto3 raises for a 404."""
    with pytest.raises(ClientError):
        gg.get_group(GroupId=str(uuid.uuid4()))


# ================================================================================================
# 4. Odds and ends that real clients exercise
# ================================================================================================


def test_redeployment_and_deployment_token_boto3(gg):
    core = gg.create_core_definition(InitialVersion=P.CORES)
    group = gg.create_group(Name="redeploy-group", InitialVersion={
        "CoreDefinitionVersionArn": core["LatestVersionArn"]})
    gid, vid = group["Id"], group["LatestVersion"]
    first = gg.create_deployment(GroupId=gid, DeploymentType="NewDeployment", GroupVersionId=vid,
                                 AmznClientToken="deploy-once")
    retry = gg.create_deployment(GroupId=gid, DeploymentType="NewDeployment", GroupVersionId=vid,
                                 AmznClientToken="deploy-once")
    assert retry["DeploymentId"] == first["DeploymentId"], (first, retry)
    again = gg.create_deployment(GroupId=gid, DeploymentType="Redeployment",
                                 DeploymentId=first["DeploymentId"])
    assert again["DeploymentId"] != first["DeploymentId"]
    listed = {d["DeploymentId"]: d for d in gg.list_deployments(GroupId=gid)["Deployments"]}
    assert set(listed) == {first["DeploymentId"], again["DeploymentId"]}, listed
    assert listed[again["DeploymentId"]]["DeploymentType"] == "Redeployment"
    assert listed[again["DeploymentId"]]["GroupArn"] == group["LatestVersionArn"], listed
    status = wait_deployment(gg, gid, again["DeploymentId"])
    assert (status["DeploymentType"], status["DeploymentStatus"]) == ("Redeployment", "Success")


def test_unicode_names_boto3(gg):
    name = "Grüße-群组-✓"
    group = gg.create_group(Name=name)
    assert gg.get_group(GroupId=group["Id"])["Name"] == name
    core = gg.create_core_definition(Name=name, tags={"ключ": "значение"})
    got = gg.get_core_definition(CoreDefinitionId=core["Id"])
    assert (got["Name"], got.get("tags")) == (name, {"ключ": "значение"}), got


def test_query_and_path_encoding_boto3(gg):
    """Signatures over percent-encoded paths and query strings (what SigV4 verifiers get wrong):
    tag keys with spaces, slashes, plus signs and non-ASCII in the untag query string, and
    thing names with colons in the path."""
    group = gg.create_group(Name="encoding-group")
    arn = group["Arn"]
    keys = ["key with space", "a/b", "x+y", "ümlaut", "p=q&r", "plain"]
    gg.tag_resource(ResourceArn=arn, tags={k: f"v {k}" for k in keys})
    assert gg.list_tags_for_resource(ResourceArn=arn)["tags"] == {k: f"v {k}" for k in keys}
    gg.untag_resource(ResourceArn=arn, TagKeys=keys[:-1])
    assert gg.list_tags_for_resource(ResourceArn=arn)["tags"] == {"plain": "v plain"}

    for thing in ("My:Core_1-a", "core-2"):
        info = [{"Id": "one", "HostAddress": "127.0.0.1", "PortNumber": 8883, "Metadata": ""}]
        gg.update_connectivity_info(ThingName=thing, ConnectivityInfo=info)
        assert gg.get_connectivity_info(ThingName=thing)["ConnectivityInfo"] == info, thing

    # A token the service never issued, full of characters that need encoding: a 400 about
    # the token, not a 403 about the signature.
    expect_error(400, "BadRequestException", gg.list_groups, NextToken="a b/c+d=e&f")


def test_concurrent_creates_boto3(server):
    """Parallel clients: every create gets its own id, versions land on the right definition."""
    from concurrent.futures import ThreadPoolExecutor

    def work(i: int) -> tuple[str, list[str]]:
        c = server.client()
        d = c.create_core_definition(Name=f"parallel-{i}", InitialVersion=P.CORES)
        vids = [d["LatestVersion"]] + [
            c.create_core_definition_version(CoreDefinitionId=d["Id"], **P.CORES)["Version"]
            for _ in range(3)]
        return d["Id"], vids

    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(work, range(16)))
    gg = server.client()
    ids = [r[0] for r in results]
    assert len(set(ids)) == 16
    listed = {d["Id"]: d for d in gg.list_core_definitions(MaxResults="1000")["Definitions"]}
    for did, vids in results:
        assert did in listed, did
        assert listed[did]["LatestVersion"] == vids[-1], (listed[did], vids)
        got = [v["Version"] for v in gg.list_core_definition_versions(CoreDefinitionId=did)[
            "Versions"]]
        assert got == vids, (did, got, vids)
