//! The Greengrass v1 group model shared by every part of Coupler.
//!
//! - [`api`]: the definition-version payloads of the Greengrass 2017-06-07 API.
//! - [`arn`]: typed ARNs, parsed once.
//! - [`topic`]: MQTT topic names and filters with the Greengrass limits.
//! - [`entity`]: the Sources and Targets of subscriptions.
//! - [`catalog`]: every AWS-provided connector, every version, as data.
//! - [`bundle`]: a whole group in one document.
//! - [`mod@validate`]: the rules, with every problem reported with its path.
//!
//! This crate has no async runtime, so `coupler validate` checks a group offline with exactly
//! the rules the daemon applies.

pub mod api;
pub mod arn;
pub mod bundle;
pub mod catalog;
pub mod entity;
pub mod function;
pub mod secret;
pub mod topic;
pub mod validate;

pub use bundle::GroupBundle;
pub use entity::{Entity, EntityKind};
pub use secret::SecretValue;
pub use topic::{TopicFilter, TopicName};
pub use validate::{Options, Problem, ValidatedGroup, validate};
