//! Connectors in GreengrassContainer mode. Each runs in a process of its own: `coupler
//! connector-exec` inside `coupler sandbox-exec` (see `coupler_runtime::isolation`), with
//! the same connector code as in the core. It talks to the core over its stdin and stdout,
//! one JSON line per frame:
//!
//! - down (stdin): first `{"setup": …}` (its id, parameters and resources, with the values
//!   of its own secrets only), then `{"message": {"source", "topic", "payload"}}` for each
//!   message the group routes to it;
//! - up (stdout): `{"publish": {"topic", "payload"}}` for each message it publishes,
//!   `"rejected"` for each message it refused (the error reply is a publish of its own),
//!   `"want"` when it waits for its next message and `"took"` when it has it.
//!
//! The core sends a message only when asked, so at most one is on its way, and one the
//! process never took (it died first) goes to the next process: a crash or a stop loses no
//! more than it would in the core, the message being handled. Payloads are base64. Its log lines come on stderr as
//! `[LEVEL]-message` and go to its log file. Closing its stdin asks it to stop; a device it
//! was given that becomes another node on the host (a replugged adapter, a new pty) starts
//! its container again, since a bind mount keeps the old node.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use coupler_model::{Entity, TopicName};
use coupler_router::{InboxConfig, Message, WhenFull};
use coupler_runtime::isolation::{Bind, SandboxSpec};
use coupler_runtime::logs::SystemLog;
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncBufRead, AsyncBufReadExt as _, AsyncReadExt as _, AsyncWriteExt as _};
use tokio_util::sync::CancellationToken;
use tracing::Level;

use crate::context::{LocalResource, Output, Parts};
use crate::{ConnectorError, Context, registry};

/// The longest frame: a 128 KiB payload in base64 and its envelope, with room to spare.
const MAX_FRAME: u64 = 1024 * 1024;
/// How often the devices of contained connectors are checked for a replacement.
const DEVICE_CHECK: Duration = Duration::from_secs(1);
/// How long a contained connector has to stop after its stdin closes.
const STOP_GRACE: Duration = Duration::from_secs(3);
/// Memory of a contained connector without a MemorySize parameter.
pub const DEFAULT_MEMORY_BYTES: u64 = 64 * 1024 * 1024;
/// Memory a contained connector gets beyond its MemorySize parameter: the process itself
/// (runtime, buffers, TLS) needs a few MB, and MemorySize is what the connector may hold
/// (Firehose bounds its queue with it), so the limit must not be reached by a full queue.
pub const PROCESS_ALLOWANCE_BYTES: u64 = 16 * 1024 * 1024;

/// How to start one contained connector.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Containment {
    /// The `coupler` binary.
    pub exe: PathBuf,
    pub spec: SandboxSpec,
}

impl Containment {
    /// The containment of connector `name`: the `coupler` binary (read-only), and the
    /// devices (read-write) and volumes (read-only) its `*-ResourceId` parameters name.
    /// Memory is its MemorySize parameter (KB) and the process's allowance, if it has one.
    /// It runs as `run_as` (the core's user if `None`) with `groups` added.
    pub(crate) fn new(
        exe: &Path,
        name: &str,
        resources: &BTreeMap<String, LocalResource>,
        memory_kb: Option<u64>,
        run_as: Option<(u32, u32)>,
        groups: Vec<u32>,
    ) -> Self {
        let mut binds = vec![Bind::ro(exe)];
        for r in resources.values() {
            match r {
                LocalResource::Device { source_path } => binds.push(Bind {
                    source: source_path.clone(),
                    target: source_path.clone(),
                    writable: true,
                }),
                LocalResource::Volume {
                    source_path,
                    destination_path,
                } => binds.push(Bind {
                    source: source_path.clone(),
                    target: destination_path.clone(),
                    writable: false,
                }),
                LocalResource::Secret(_) => {}
            }
        }
        let memory = memory_kb.map_or(DEFAULT_MEMORY_BYTES, |kb| {
            kb.saturating_mul(1024)
                .saturating_add(PROCESS_ALLOWANCE_BYTES)
        });
        Self {
            exe: exe.to_owned(),
            spec: SandboxSpec {
                unit: name.to_owned(),
                memory_bytes: Some(memory),
                pids_max: coupler_runtime::isolation::DEFAULT_PIDS_MAX,
                run_as,
                groups,
                binds,
                sysfs: false,
                workdir: PathBuf::from("/tmp"),
            },
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Down {
    Setup(Setup),
    Message {
        source: String,
        topic: String,
        payload: String,
    },
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
enum Up {
    Publish {
        topic: String,
        payload: String,
    },
    Rejected,
    /// It waits for its next message.
    Want,
    /// It took the message it was sent.
    Took,
}

/// What the contained process builds its connector from.
#[derive(Debug, Serialize, Deserialize)]
struct Setup {
    id: String,
    name: String,
    version: u32,
    arn: String,
    parameters: BTreeMap<String, String>,
    resources: BTreeMap<String, LocalResource>,
    core_thing: String,
    region: String,
}

/// How a secret resource goes down the pipe: its values (binary ones in base64). Only a
/// contained connector's setup carries one, and only its own.
pub(crate) mod secret_wire {
    use std::collections::BTreeMap;

    use base64::Engine as _;
    use base64::engine::general_purpose::STANDARD as B64;
    use coupler_model::SecretValue;
    use coupler_runtime::secrets::FetchedSecret;
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    #[derive(Serialize, Deserialize)]
    struct Wire {
        arn: String,
        current: Value,
        staged: BTreeMap<String, Value>,
    }

    #[derive(Serialize, Deserialize)]
    #[serde(rename_all = "snake_case")]
    enum Value {
        String(String),
        Binary(String),
    }

    impl From<&SecretValue> for Value {
        fn from(v: &SecretValue) -> Self {
            match v {
                SecretValue::String(s) => Self::String(s.clone()),
                SecretValue::Binary(b) => Self::Binary(B64.encode(b)),
            }
        }
    }

    impl Value {
        fn value(self) -> Result<SecretValue, String> {
            Ok(match self {
                Self::String(s) => SecretValue::String(s),
                Self::Binary(b) => {
                    SecretValue::Binary(B64.decode(b).map_err(|e| format!("a binary secret: {e}"))?)
                }
            })
        }
    }

    pub fn serialize<S: Serializer>(s: &FetchedSecret, out: S) -> Result<S::Ok, S::Error> {
        Wire {
            arn: s.arn.clone(),
            current: (&s.current).into(),
            staged: s
                .staged
                .iter()
                .map(|(k, v)| (k.clone(), v.into()))
                .collect(),
        }
        .serialize(out)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(input: D) -> Result<FetchedSecret, D::Error> {
        let w = Wire::deserialize(input)?;
        let fetched = (|| {
            Ok::<_, String>(FetchedSecret {
                arn: w.arn,
                current: w.current.value()?,
                staged: w
                    .staged
                    .into_iter()
                    .map(|(k, v)| Ok((k, v.value()?)))
                    .collect::<Result<_, String>>()?,
            })
        })();
        fetched.map_err(serde::de::Error::custom)
    }
}

/// A frame as one line.
fn line<T: Serialize>(frame: &T) -> Vec<u8> {
    let mut v = serde_json::to_vec(frame).unwrap_or_default();
    v.push(b'\n');
    v
}

/// The next frame; `None` at the end of the stream. A frame that is too long or not JSON
/// ends the conversation: the other side is broken.
///
/// Cancel-safe (it waits in `select!`): `buf` keeps what a cancelled call had read of a
/// frame (`read_until` moves it there), and the next call goes on from it.
async fn next_frame<T: for<'de> Deserialize<'de>>(
    reader: &mut (impl AsyncBufRead + Unpin),
    buf: &mut Vec<u8>,
) -> Result<Option<T>, String> {
    let room = MAX_FRAME.saturating_sub(buf.len() as u64);
    let read = reader
        .take(room)
        .read_until(b'\n', buf)
        .await
        .map_err(|e| e.to_string());
    let frame = match read {
        Err(e) => Err(e),
        Ok(_) if buf.last() == Some(&b'\n') => serde_json::from_slice(buf)
            .map(Some)
            .map_err(|e| format!("a bad frame: {e}")),
        Ok(0) if buf.is_empty() => Ok(None),
        Ok(_) if buf.len() as u64 >= MAX_FRAME => Err(format!("a frame over {MAX_FRAME} bytes")),
        Ok(_) => Err("a frame cut short".into()),
    };
    buf.clear();
    frame
}

/// The entity a message's source string names (as `Entity` displays it).
fn entity_of(source: &str) -> Entity {
    match source {
        "cloud" => Entity::Cloud,
        "GGShadowService" => Entity::ShadowService,
        s => match s.strip_prefix("thing/") {
            Some(name) => Entity::device(name),
            None if s.starts_with("arn:aws:greengrass:") => Entity::connector(s),
            None => Entity::function(s),
        },
    }
}

/// How one contained process ended.
enum Ended {
    /// The connector is being stopped.
    Stopped,
    /// A device it was given is another node now (unplugged and back, a new pty): a new
    /// container sees the new one.
    DeviceReplaced(PathBuf),
}

/// Run `ctx`'s connector contained, until `ctx` is cancelled (`Ok`) or the process breaks.
pub(crate) async fn run(ctx: &Context, how: &Containment) -> Result<(), ConnectorError> {
    loop {
        match run_once(ctx, how).await? {
            Ended::Stopped => return Ok(()),
            Ended::DeviceReplaced(path) => ctx.log(
                Level::INFO,
                &format!(
                    "{} is another device node now; the container starts again with it",
                    path.display()
                ),
            ),
        }
    }
}

/// The identity (inode, device number, change time) of each device a containment grants,
/// as the host sees it now; `None` for one that is missing. The change time tells a new
/// node from an old one that had the same number (a pty's index is reused).
type NodeId = (u64, u64, i64, i64);

fn device_nodes(how: &Containment) -> Vec<(PathBuf, Option<NodeId>)> {
    use std::os::unix::fs::MetadataExt as _;
    how.spec
        .binds
        .iter()
        .filter(|b| b.writable)
        .map(|b| {
            let id = std::fs::metadata(&b.source)
                .ok()
                .filter(|m| std::os::unix::fs::FileTypeExt::is_char_device(&m.file_type()))
                .map(|m| (m.ino(), m.rdev(), m.ctime(), m.ctime_nsec()));
            (b.source.clone(), id)
        })
        .collect()
}

async fn run_once(ctx: &Context, how: &Containment) -> Result<Ended, ConnectorError> {
    let devices = device_nodes(how);
    let mut child = tokio::process::Command::new(&how.exe)
        .arg("sandbox-exec")
        .arg("--spec")
        .arg(serde_json::to_string(&how.spec).unwrap_or_default())
        .arg("--")
        .arg(&how.exe)
        .arg("connector-exec")
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .map_err(|e| ConnectorError::Io {
            what: "cannot start the contained process".into(),
            source: e,
        })?;
    let pid = child.id().unwrap_or_default();
    ctx.log(
        Level::INFO,
        &format!(
            "running contained (pid {pid}, memory limit {} KB)",
            how.spec.memory_bytes.unwrap_or_default() / 1024
        ),
    );
    let (Some(mut stdin), Some(stdout), Some(stderr)) =
        (child.stdin.take(), child.stdout.take(), child.stderr.take())
    else {
        return Err(ConnectorError::Failed(
            "the contained process has no pipes".into(),
        ));
    };
    let errors = tokio::spawn(coupler_runtime::logs::pump(
        stderr,
        ctx.log_file(),
        Level::ERROR,
    ));
    let mut reader = tokio::io::BufReader::new(stdout);
    let mut buf = Vec::new();
    let mut watch = tokio::time::interval(DEVICE_CHECK);
    watch.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    // It asked for its next message: one at a time, so that a stop loses none.
    let mut wanted = false;
    // Sent and not yet taken: given back if the process ends first.
    let mut in_flight: Option<Message> = None;
    let outcome: Result<Ended, String> = match stdin
        .write_all(&line(&Down::Setup(setup(ctx))))
        .await
    {
        Err(e) => Err(format!("took no setup: {e}")),
        Ok(()) => loop {
            tokio::select! {
                frame = next_frame::<Up>(&mut reader, &mut buf) => match frame {
                    Ok(Some(Up::Publish { topic, payload })) => match B64.decode(payload) {
                        Ok(p) => {
                            if let Err(e) = ctx.publish(&topic, p).await {
                                ctx.log(Level::ERROR, &format!("cannot publish on {topic:?}: {e}"));
                            }
                        }
                        Err(e) => break Err(format!("sent a bad payload: {e}")),
                    },
                    Ok(Some(Up::Rejected)) => ctx.count_rejected(),
                    Ok(Some(Up::Want)) => wanted = true,
                    Ok(Some(Up::Took)) => in_flight = None,
                    Ok(None) => break Err("ended".into()),
                    Err(e) => break Err(format!("sent {e}")),
                },
                msg = ctx.recv(), if wanted => {
                    let Some(msg) = msg else { break Ok(Ended::Stopped) };
                    wanted = false;
                    let frame = Down::Message {
                        source: msg.source.to_string(),
                        topic: msg.topic.as_str().to_owned(),
                        payload: B64.encode(&msg.payload),
                    };
                    in_flight = Some(msg);
                    if let Err(e) = stdin.write_all(&line(&frame)).await {
                        break Err(format!("stopped reading: {e}"));
                    }
                }
                () = ctx.cancel().cancelled(), if !wanted => break Ok(Ended::Stopped),
                _ = watch.tick() => {
                    let now = device_nodes(how);
                    if let Some((path, _)) = now.iter().zip(&devices).find_map(|(n, d)| (n.1.is_some() && n.1 != d.1).then_some(n)) {
                        break Ok(Ended::DeviceReplaced(path.clone()));
                    }
                }
            }
        },
    };
    // Asked to stop (or to start again): the end of its input tells it, and it has a
    // grace period to finish what it does and send its last messages. Broken: it goes now.
    drop(stdin);
    let graceful = outcome.is_ok();
    let finish = async {
        if graceful {
            loop {
                match next_frame::<Up>(&mut reader, &mut buf).await {
                    Ok(Some(Up::Publish { topic, payload })) => {
                        if let Ok(p) = B64.decode(payload) {
                            let _ = ctx.publish(&topic, p).await;
                        }
                    }
                    Ok(Some(Up::Rejected)) => ctx.count_rejected(),
                    Ok(Some(Up::Took)) => in_flight = None,
                    Ok(Some(Up::Want)) => {}
                    Ok(None) | Err(_) => break,
                }
            }
        }
        child.wait().await
    };
    let status = match tokio::time::timeout(
        if graceful { STOP_GRACE } else { Duration::ZERO },
        finish,
    )
    .await
    {
        Ok(s) => s,
        Err(_) => coupler_runtime::isolation::terminate(&mut child).await,
    };
    let _ = errors.await;
    if let Some(msg) = in_flight {
        ctx.put_back(msg);
    }
    outcome.map_err(|why| {
        ConnectorError::Failed(match status {
            Ok(s) => format!("the contained process {why} ({s})"),
            Err(e) => format!("the contained process {why} ({e})"),
        })
    })
}

fn setup(ctx: &Context) -> Setup {
    Setup {
        id: ctx.id().to_owned(),
        name: ctx.name().to_owned(),
        version: ctx.version(),
        arn: ctx.entity().to_string(),
        parameters: ctx.parameters().clone(),
        resources: ctx.resources().clone(),
        core_thing: ctx.core_thing().to_owned(),
        region: ctx.region().to_owned(),
    }
}

/// `coupler connector-exec`: be one contained connector, as the core's frames say. The
/// exit status is 0 when it was asked to stop, 1 when it could not start or broke.
pub fn child_main() -> i32 {
    let runtime = match tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            SystemLog::to_stderr().log(Level::ERROR, &format!("no runtime: {e}"));
            return 1;
        }
    };
    match runtime.block_on(serve()) {
        Ok(()) => 0,
        Err(why) => {
            SystemLog::to_stderr().log(Level::ERROR, &why);
            1
        }
    }
}

async fn serve() -> Result<(), String> {
    let mut input = tokio::io::BufReader::new(tokio::io::stdin());
    let mut buf = Vec::new();
    let Some(Down::Setup(setup)) = next_frame::<Down>(&mut input, &mut buf).await? else {
        return Err("the core sent no setup".into());
    };
    let kind = registry::kind(&setup.name, setup.version)
        .ok_or_else(|| format!("{} version {} is unknown", setup.name, setup.version))?;
    let cancel = CancellationToken::new();
    let parts = Parts {
        id: setup.id,
        name: kind.name,
        version: setup.version,
        entity: Entity::connector(&setup.arn),
        parameters: setup.parameters,
        resources: setup.resources,
        core_thing: setup.core_thing,
        region: setup.region,
        log: Arc::new(SystemLog::to_stderr()),
        cancel: cancel.clone(),
        inside_container: true,
    };
    // It asks for one message at a time (`Output::Wanted`), so this never holds more.
    let (ctx, mut handle) = Context::detached(
        parts,
        InboxConfig {
            capacity: 4,
            when_full: WhenFull::Block {
                deadline: Duration::from_secs(24 * 3600),
            },
        },
    );
    let connector = (kind.build)(&ctx)?;
    let inbox = handle.inbox.clone();
    let reader_cancel = cancel.clone();
    let reader_ctx = ctx.clone();
    let reader = tokio::spawn(async move {
        let mut buf = Vec::new();
        // Until the end of its input (or a broken core): then it stops.
        while let Ok(Some(Down::Message {
            source,
            topic,
            payload,
        })) = next_frame::<Down>(&mut input, &mut buf).await
        {
            let (Ok(topic), Ok(payload)) = (TopicName::parse(&topic), B64.decode(payload)) else {
                break;
            };
            let msg = Message::new(entity_of(&source), topic, payload);
            if inbox.put(msg).await.is_err() {
                break;
            }
            reader_ctx.received();
        }
        reader_cancel.cancel();
    });
    let writer = tokio::spawn(async move {
        let mut out = tokio::io::stdout();
        while let Some(o) = handle.output.recv().await {
            let frame = match o {
                Output::Published(m) => Up::Publish {
                    topic: m.topic.as_str().to_owned(),
                    payload: B64.encode(&m.payload),
                },
                Output::Rejected => Up::Rejected,
                Output::Wanted => Up::Want,
                Output::Took => Up::Took,
            };
            if out.write_all(&line(&frame)).await.is_err() || out.flush().await.is_err() {
                break;
            }
        }
    });
    let outcome = connector.run(ctx).await;
    reader.abort();
    // Its last publishes go out before it exits.
    let _ = writer.await;
    outcome.map_err(|e| e.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;
    use coupler_model::SecretValue;
    use coupler_runtime::secrets::FetchedSecret;

    #[test]
    fn sources_survive_the_pipe() {
        for e in [
            Entity::Cloud,
            Entity::ShadowService,
            Entity::device("pump-1"),
            Entity::function("arn:aws:lambda:us-east-1:123456789012:function:f:1"),
            Entity::connector("arn:aws:greengrass:us-east-1::/connectors/SerialStream/versions/3"),
        ] {
            assert_eq!(entity_of(&e.to_string()), e);
        }
    }

    #[test]
    fn secrets_survive_the_pipe() {
        let r = LocalResource::Secret(FetchedSecret {
            arn: "arn:aws:secretsmanager:us-east-1:1:secret:s".into(),
            current: SecretValue::Binary(vec![0, 159, 255]),
            staged: BTreeMap::from([("old".into(), SecretValue::String("x".into()))]),
        });
        let back: LocalResource = serde_json::from_slice(&serde_json::to_vec(&r).unwrap()).unwrap();
        assert_eq!(back, r);
    }

    #[tokio::test]
    async fn long_or_broken_frames_end_the_conversation() {
        let long = vec![b'x'; MAX_FRAME as usize + 10];
        let mut buf = Vec::new();
        let mut r = tokio::io::BufReader::new(&long[..]);
        assert!(next_frame::<Up>(&mut r, &mut buf).await.is_err());
        let mut r = tokio::io::BufReader::new(&b"{\"publish\": 1}\n"[..]);
        assert!(next_frame::<Up>(&mut r, &mut buf).await.is_err());
        let mut r = tokio::io::BufReader::new(&b"\"rejected\"\n"[..]);
        assert!(matches!(
            next_frame::<Up>(&mut r, &mut buf).await,
            Ok(Some(Up::Rejected))
        ));
        let mut r = tokio::io::BufReader::new(&b""[..]);
        assert!(matches!(next_frame::<Up>(&mut r, &mut buf).await, Ok(None)));
        let mut r = tokio::io::BufReader::new(&b"\"want\""[..]);
        assert!(next_frame::<Up>(&mut r, &mut buf).await.is_err());
    }

    #[tokio::test]
    async fn a_frame_read_in_pieces_survives_a_cancelled_call() {
        let (mut tx, rx) = tokio::io::duplex(64);
        let mut r = tokio::io::BufReader::new(rx);
        let mut buf = Vec::new();
        tx.write_all(b"{\"publish\": {\"topic\": \"a/b\", ")
            .await
            .unwrap();
        // Another branch of a select! wins meanwhile: this call is dropped half-way.
        let cancelled = tokio::time::timeout(
            Duration::from_millis(20),
            next_frame::<Up>(&mut r, &mut buf),
        )
        .await;
        assert!(cancelled.is_err());
        tx.write_all(b"\"payload\": \"eA==\"}}\n").await.unwrap();
        match next_frame::<Up>(&mut r, &mut buf).await {
            Ok(Some(Up::Publish { topic, payload })) => {
                assert_eq!((topic.as_str(), payload.as_str()), ("a/b", "eA=="));
            }
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn containment_grants_only_the_named_resources() {
        let resources = BTreeMap::from([
            (
                "SerialPort-ResourceId".to_owned(),
                LocalResource::Device {
                    source_path: "/dev/ttyS1".into(),
                },
            ),
            (
                "ProcDestinationPath-ResourceId".to_owned(),
                LocalResource::Volume {
                    source_path: "/proc".into(),
                    destination_path: "/host_proc".into(),
                },
            ),
        ]);
        let c = Containment::new(
            Path::new("/usr/bin/coupler"),
            "X",
            &resources,
            Some(8),
            Some((1000, 1000)),
            vec![20],
        );
        assert_eq!(c.spec.run_as, Some((1000, 1000)));
        assert_eq!(c.spec.memory_bytes, Some(8192 + PROCESS_ALLOWANCE_BYTES));
        assert_eq!(c.spec.binds.len(), 3);
        assert!(
            c.spec
                .binds
                .iter()
                .any(|b| b.target == Path::new("/dev/ttyS1") && b.writable)
        );
        assert!(
            c.spec
                .binds
                .iter()
                .any(|b| b.target == Path::new("/host_proc") && !b.writable)
        );
        let c = Containment::new(
            Path::new("/usr/bin/coupler"),
            "X",
            &BTreeMap::new(),
            None,
            None,
            Vec::new(),
        );
        assert_eq!(c.spec.memory_bytes, Some(DEFAULT_MEMORY_BYTES));
    }
}
