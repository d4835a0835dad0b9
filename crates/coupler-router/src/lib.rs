//! Coupler's message router.
//!
//! A group's subscriptions (Source, Subject filter, Target) are compiled into a
//! [`RoutingTable`]: per Source entity, a hash map of exact subjects and a trie of wildcard
//! subjects. [`Router::route`] puts a message into the bounded [`Inbox`] of every target whose
//! subscription matches, once per target. The table is also the authorisation table: a
//! message that matches nothing goes nowhere, and is counted and logged as a drop.
//!
//! ```
//! use coupler_model::{Entity, TopicFilter, TopicName, validate::Route};
//! use coupler_router::{Message, Router, RouterConfig, RoutingTable};
//!
//! let lambda = Entity::function("arn:aws:lambda:us-east-1:123456789012:function:Temp:1");
//! let routes = vec![Route {
//!     id: "s1".into(),
//!     source: Entity::device("sensor-1"),
//!     subject: TopicFilter::parse("sensors/+/temp").unwrap(),
//!     target: lambda.clone(),
//! }];
//! let router = Router::new(RouterConfig::default());
//! router.install(RoutingTable::compile(&routes));
//!
//! let msg = Message::new(
//!     Entity::device("sensor-1"),
//!     TopicName::parse("sensors/hall/temp").unwrap(),
//!     &b"21.5"[..],
//! );
//! let rt = tokio::runtime::Builder::new_current_thread().build().unwrap();
//! let report = rt.block_on(router.route(msg));
//! assert_eq!(report.delivered, 1);
//! assert_eq!(router.inbox(&lambda).try_recv().unwrap().payload, &b"21.5"[..]);
//! ```

mod inbox;
mod intern;
mod message;
mod router;
mod table;
#[doc(hidden)]
pub mod workload;

pub use inbox::{Attached, Inbox, InboxConfig, WhenFull};
pub use message::{Message, Properties, Qos};
pub use router::{
    DropCount, DropReason, InboxStats, RouteReport, Router, RouterConfig, RouterStats,
};
pub use table::{NaiveTable, RoutingTable, TargetId};
