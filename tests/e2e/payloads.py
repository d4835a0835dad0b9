"""The data the suite sends: the Greengrass connectors CLI tutorial group (TwilioNotifications
v4, its secret resource, the TempMonitor function and the three subscriptions), one valid
version of every definition kind, and the shapes the answers must have."""

from __future__ import annotations

import copy
import re
from dataclasses import dataclass

REGION = "us-east-1"
ACCOUNT = "123456789012"

SECRET_ARN = f"arn:aws:secretsmanager:{REGION}:{ACCOUNT}:secret:greengrass-TwilioAuthToken-ntSlp6"
TWILIO_V4 = f"arn:aws:greengrass:{REGION}::/connectors/TwilioNotifications/versions/4"
TWILIO_V5 = f"arn:aws:greengrass:{REGION}::/connectors/TwilioNotifications/versions/5"
FUNCTION_ARN = f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:TempMonitor:GG_TempMonitor"
CORE_THING_ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/MyCore"
CORE_CERT_ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}:cert/" + "0123456789abcdef" * 4
DEVICE_THING_ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}:thing/MyDevice"
DEVICE_CERT_ARN = f"arn:aws:iot:{REGION}:{ACCOUNT}:cert/" + "fedcba9876543210" * 4
ROLE_ARN = f"arn:aws:iam::{ACCOUNT}:role/GreengrassGroupRole"

RESOURCE_ID = "TwilioAuthToken"

RESOURCES = {
    "Resources": [
        {
            "Id": RESOURCE_ID,
            "Name": "MyTwilioAuthToken",
            "ResourceDataContainer": {"SecretsManagerSecretResourceData": {"ARN": SECRET_ARN}},
        }
    ]
}


def twilio_connector(conn_id: str = "MyTwilioNotificationsConnector", arn: str = TWILIO_V4,
                     **overrides) -> dict:
    params = {
        "TWILIO_ACCOUNT_SID": "AC0123456789abcdef0123456789abcdef",
        "TwilioAuthTokenSecretArn": SECRET_ARN,
        "TwilioAuthTokenSecretArn-ResourceId": RESOURCE_ID,
        "DefaultFromPhoneNumber": "+19999999999",
    }
    for k, v in overrides.items():
        if v is None:
            params.pop(k, None)
        else:
            params[k] = v
    return {"Id": conn_id, "ConnectorArn": arn, "Parameters": params}


CONNECTORS = {"Connectors": [twilio_connector()]}

FUNCTIONS = {
    "Functions": [
        {
            "Id": "TempMonitorFunction",
            "FunctionArn": FUNCTION_ARN,
            "FunctionConfiguration": {
                "Executable": "temp_monitor.function_handler",
                "MemorySize": 16000,
                "Timeout": 5,
                "Pinned": False,
            },
        }
    ]
}


def subscription(sub_id: str, source: str, subject: str, target: str) -> dict:
    return {"Id": sub_id, "Source": source, "Subject": subject, "Target": target}


SUBSCRIPTIONS = {
    "Subscriptions": [
        subscription("TriggerNotification", FUNCTION_ARN, "twilio/txt", TWILIO_V4),
        subscription("TemperatureInput", "cloud", "temperature/input", FUNCTION_ARN),
        subscription("OutputStatus", TWILIO_V4, "twilio/message/status", "cloud"),
    ]
}

CORES = {
    "Cores": [
        {"Id": "MyCore", "ThingArn": CORE_THING_ARN, "CertificateArn": CORE_CERT_ARN,
         "SyncShadow": True}
    ]
}

DEVICES = {
    "Devices": [
        {"Id": "MyDevice", "ThingArn": DEVICE_THING_ARN, "CertificateArn": DEVICE_CERT_ARN,
         "SyncShadow": False}
    ]
}

LOGGERS = {
    "Loggers": [
        {"Id": "SystemLogs", "Type": "FileSystem", "Component": "GreengrassSystem",
         "Level": "INFO", "Space": 5120},
        {"Id": "LambdaLogs", "Type": "AWSCloudWatch", "Component": "Lambda", "Level": "WARN"},
    ]
}


# Second versions that use every optional field the model has, so that "the Definition comes
# back exactly as sent" covers them too.
RICH_FUNCTIONS = {
    "DefaultConfig": {"Execution": {"IsolationMode": "GreengrassContainer",
                                    "RunAs": {"Uid": 1000, "Gid": 1000}}},
    "Functions": [
        {
            "Id": "TempMonitorFunction",
            "FunctionArn": FUNCTION_ARN,
            "FunctionConfiguration": {
                "EncodingType": "json",
                "Executable": "temp_monitor.function_handler",
                "ExecArgs": "-v",
                "MemorySize": 32768,
                "Pinned": True,
                "Timeout": 10,
                "Environment": {
                    "Variables": {"LOG_LEVEL": "debug", "EMPTY": ""},
                    "ResourceAccessPolicies": [{"ResourceId": RESOURCE_ID, "Permission": "ro"}],
                    "AccessSysfs": False,
                    "Execution": {"IsolationMode": "GreengrassContainer",
                                  "RunAs": {"Uid": 1000, "Gid": 1000}},
                },
            },
        },
        {
            "Id": "NativeFunction",
            "FunctionArn": f"arn:aws:lambda:{REGION}:{ACCOUNT}:function:Native:3",
            "FunctionConfiguration": {
                "EncodingType": "binary",
                "Executable": "native-handler",
                "Timeout": 3,
                "Pinned": False,
                "Environment": {"Execution": {"IsolationMode": "NoContainer",
                                              "RunAs": {"Uid": 1001, "Gid": 1001}}},
            },
        },
    ],
}

RICH_RESOURCES = {
    "Resources": [
        {"Id": RESOURCE_ID, "Name": "MyTwilioAuthToken", "ResourceDataContainer": {
            "SecretsManagerSecretResourceData": {
                "ARN": SECRET_ARN, "AdditionalStagingLabelsToDownload": ["Label1"]}}},
        {"Id": "tmp-volume", "Name": "TmpVolume", "ResourceDataContainer": {
            "LocalVolumeResourceData": {"SourcePath": "/opt/gg-data", "DestinationPath": "/data",
                                        "GroupOwnerSetting": {"AutoAddGroupOwner": True}}}},
        {"Id": "serial-port", "Name": "SerialPort", "ResourceDataContainer": {
            "LocalDeviceResourceData": {
                "SourcePath": "/dev/ttyS0",
                "GroupOwnerSetting": {"AutoAddGroupOwner": False, "GroupOwner": "dialout"}}}},
        {"Id": "ml-model", "Name": "MlModel", "ResourceDataContainer": {
            "S3MachineLearningModelResourceData": {
                "S3Uri": "s3://my-bucket/models/model.tar.gz", "DestinationPath": "/ml/model",
                "OwnerSetting": {"GroupOwner": "ggc_group", "GroupPermission": "ro"}}}},
        {"Id": "sm-model", "Name": "SmModel", "ResourceDataContainer": {
            "SageMakerMachineLearningModelResourceData": {
                "SageMakerJobArn": f"arn:aws:sagemaker:{REGION}:{ACCOUNT}:training-job/my-job",
                "DestinationPath": "/ml/sm"}}},
    ]
}

RICH_SUBSCRIPTIONS = {
    "Subscriptions": SUBSCRIPTIONS["Subscriptions"] + [
        subscription("ShadowToDevice", "GGShadowService",
                     "$aws/things/MyDevice/shadow/update/accepted", DEVICE_THING_ARN),
        subscription("DeviceToShadow", DEVICE_THING_ARN, "$aws/things/MyDevice/shadow/update",
                     "GGShadowService"),
        subscription("DeviceToCloud", DEVICE_THING_ARN, "sensors/+/temperature", "cloud"),
        subscription("CloudToFunction", "cloud", "commands/#", FUNCTION_ARN),
    ]
}


@dataclass(frozen=True)
class Kind:
    """One of the seven definition families, as the URL, boto3 and the AWS CLI name it."""

    segment: str  # cores, functions, ... (URL path and ARN)
    pascal: str  # Core, Function, ... (operation and parameter names)
    payload: dict  # a valid version
    second: dict  # another valid version

    @property
    def snake(self) -> str:
        return self.pascal.lower()

    @property
    def cli(self) -> str:
        return self.pascal.lower()

    @property
    def id_param(self) -> str:
        return f"{self.pascal}DefinitionId"

    @property
    def version_param(self) -> str:
        return f"{self.pascal}DefinitionVersionId"

    @property
    def group_version_field(self) -> str:
        return f"{self.pascal}DefinitionVersionArn"

    def method(self, client, verb: str, suffix: str = ""):
        plural = "s" if verb == "list" and not suffix else ""
        name = f"{verb}_{self.snake}_definition{plural}{suffix}"
        return getattr(client, name)


def _second(payload: dict, key: str, change) -> dict:
    p = copy.deepcopy(payload)
    change(p[key][0])
    return p


KINDS = [
    Kind("cores", "Core", CORES, _second(CORES, "Cores", lambda c: c.update(SyncShadow=False))),
    Kind("devices", "Device", DEVICES,
         _second(DEVICES, "Devices", lambda d: d.update(SyncShadow=True))),
    Kind("functions", "Function", FUNCTIONS, RICH_FUNCTIONS),
    Kind("resources", "Resource", RESOURCES, RICH_RESOURCES),
    Kind("connectors", "Connector", CONNECTORS,
         _second(CONNECTORS, "Connectors",
                 lambda c: c["Parameters"].update(DefaultFromPhoneNumber="+18888888888"))),
    Kind("subscriptions", "Subscription", SUBSCRIPTIONS, RICH_SUBSCRIPTIONS),
    Kind("loggers", "Logger", LOGGERS,
         _second(LOGGERS, "Loggers", lambda lg: lg.update(Level="DEBUG"))),
]
KIND = {k.segment: k for k in KINDS}

# ---- shapes of the answers --------------------------------------------------------------------

UUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
UUID_RE = re.compile(rf"^{UUID}$")
TIMESTAMP_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
ARN_PREFIX = rf"arn:aws:greengrass:{REGION}:(\d{{12}}):"


def definition_arn_re(segment: str) -> re.Pattern:
    return re.compile(rf"^{ARN_PREFIX}/greengrass/definition/{segment}/({UUID})$")


def definition_version_arn_re(segment: str) -> re.Pattern:
    return re.compile(
        rf"^{ARN_PREFIX}/greengrass/definition/{segment}/({UUID})/versions/({UUID})$")


GROUP_ARN_RE = re.compile(rf"^{ARN_PREFIX}/greengrass/groups/({UUID})$")
GROUP_VERSION_ARN_RE = re.compile(rf"^{ARN_PREFIX}/greengrass/groups/({UUID})/versions/({UUID})$")
DEPLOYMENT_ARN_RE = re.compile(rf"^{ARN_PREFIX}/greengrass/groups/({UUID})/deployments/({UUID})$")
CA_ARN_RE = re.compile(
    rf"^{ARN_PREFIX}/greengrass/groups/({UUID})/certificateauthorities/({UUID})$")


def assert_match(pattern: re.Pattern, value, what: str) -> re.Match:
    assert isinstance(value, str), f"{what}: expected a string, got {value!r}"
    m = pattern.match(value)
    assert m, f"{what}: {value!r} does not match {pattern.pattern}"
    return m


def assert_uuid(value, what: str) -> None:
    assert_match(UUID_RE, value, what)


def assert_timestamp(value, what: str) -> None:
    assert_match(TIMESTAMP_RE, value, what)


def assert_definition_info(info: dict, kind_segment: str, *, name: str | None,
                           has_version: bool = True, what: str = "definition") -> None:
    """A DefinitionInformation (create/get/list answer) is well formed and self-consistent."""
    for key in ("Arn", "Id", "CreationTimestamp", "LastUpdatedTimestamp"):
        assert key in info, f"{what}: no {key} in {info}"
    assert_uuid(info["Id"], f"{what}.Id")
    m = assert_match(definition_arn_re(kind_segment), info["Arn"], f"{what}.Arn")
    assert m.group(2) == info["Id"], f"{what}: Arn {info['Arn']} does not end in Id {info['Id']}"
    assert_timestamp(info["CreationTimestamp"], f"{what}.CreationTimestamp")
    assert_timestamp(info["LastUpdatedTimestamp"], f"{what}.LastUpdatedTimestamp")
    assert info["LastUpdatedTimestamp"] >= info["CreationTimestamp"], info
    if name is not None:
        assert info.get("Name") == name, f"{what}: Name {info.get('Name')!r} != {name!r}"
    if has_version:
        assert_uuid(info.get("LatestVersion"), f"{what}.LatestVersion")
        vm = assert_match(definition_version_arn_re(kind_segment), info.get("LatestVersionArn"),
                          f"{what}.LatestVersionArn")
        assert vm.group(2) == info["Id"] and vm.group(3) == info["LatestVersion"], (
            f"{what}: LatestVersionArn {info['LatestVersionArn']} does not name "
            f"{info['Id']}/versions/{info['LatestVersion']}")
    else:
        assert "LatestVersion" not in info and "LatestVersionArn" not in info, (
            f"{what}: a definition created without a version has {info}")


def assert_version_info(v: dict, kind_segment: str | None, parent_id: str, version_id: str,
                        what: str = "version") -> None:
    """VersionInformation / Get*Version answer: Arn, Id (the parent), Version, timestamp."""
    assert v.get("Id") == parent_id, f"{what}: Id {v.get('Id')!r} != parent {parent_id!r}"
    assert v.get("Version") == version_id, f"{what}: Version {v.get('Version')!r} != {version_id!r}"
    pattern = GROUP_VERSION_ARN_RE if kind_segment is None else definition_version_arn_re(
        kind_segment)
    m = assert_match(pattern, v.get("Arn"), f"{what}.Arn")
    assert m.groups()[1:] == (parent_id, version_id), f"{what}: Arn {v['Arn']} is not its own"
    assert_timestamp(v.get("CreationTimestamp"), f"{what}.CreationTimestamp")


def strip_meta(resp: dict) -> dict:
    return {k: v for k, v in resp.items() if k != "ResponseMetadata"}
