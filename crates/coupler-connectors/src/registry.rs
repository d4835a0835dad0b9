//! The connectors this core runs.

use crate::{Kind, cloudwatch, device_defender, firehose, modbus_rtu, serial_stream, sns, twilio};

/// Every connector kind, by name.
pub static KINDS: &[&Kind] = &[
    &serial_stream::KIND,
    &device_defender::KIND,
    &modbus_rtu::KIND,
    &twilio::KIND,
    &sns::KIND,
    &firehose::KIND,
    &cloudwatch::KIND,
];

/// The kind that runs `name` at `version`.
pub fn kind(name: &str, version: u32) -> Option<&'static Kind> {
    KINDS
        .iter()
        .copied()
        .find(|k| k.name == name && k.versions.contains(&version))
}

/// Whether this core runs `name` at `version`.
pub fn is_runnable(name: &str, version: u32) -> bool {
    kind(name, version).is_some()
}
