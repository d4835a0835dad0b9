//! The Lambda IPC server: HTTP/1.1 on loopback, API version `2016-11-01`, every call
//! authenticated by the worker's `AWS_CONTAINER_AUTHORIZATION_TOKEN`.
//!
//! | Call | Route |
//! | --- | --- |
//! | post work (invoke, publish, secret, shadow) | `POST /2016-11-01/functions/{arn}` |
//! | get a work result | `GET /2016-11-01/functions/{arn}` with `X-Amz-InvocationId` |
//! | a worker takes its next item | `GET /2016-11-01/functions/{arn}/work` |
//! | a worker posts a result or error | `POST /2016-11-01/functions/{arn}/work` |
//! | a worker reports its start | `PUT /2016-11-01/functions/{arn}/initialized` |
//! | worker health | `GET`/`POST /2016-11-01/health/workers` |

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, put};
use base64::Engine as _;
use coupler_model::{Entity, TopicName};
use coupler_router::Message;
use tokio::sync::oneshot;
use tracing::Level;

use super::{Function, FunctionError, Outcome, Shared, Slot, WorkItem, Worker, WorkerState};

const ROUTER: &str = "arn:aws:lambda:::function:GGRouter";
const SECRETS: &str = "arn:aws:lambda:::function:GGSecretManager:1";
const SHADOW: &str = "arn:aws:lambda:::function:GGShadowService";

const INVOCATION_ID: &str = "x-amz-invocationid";
const CLIENT_CONTEXT: &str = "x-amz-client-context";
const INVOCATION_TYPE: &str = "x-amz-invocation-type";
const FUNCTION_ERROR: &str = "x-amz-function-error";

/// A refused call: status and message (`{"message": …}`, as the SDK's client reads it).
struct Refusal(StatusCode, String);

impl IntoResponse for Refusal {
    fn into_response(self) -> Response {
        (
            self.0,
            [("content-type", "application/json")],
            serde_json::json!({ "message": self.1 }).to_string(),
        )
            .into_response()
    }
}

type Reply = Result<Response, Refusal>;

pub(crate) fn router(shared: Arc<Shared>) -> Router {
    Router::new()
        .route(
            "/2016-11-01/functions/{arn}",
            get(get_result).post(post_work),
        )
        .route(
            "/2016-11-01/functions/{arn}/work",
            get(get_work).post(post_result),
        )
        .route("/2016-11-01/functions/{arn}/initialized", put(initialized))
        .route("/2016-11-01/health/workers", get(health).post(health_of))
        .with_state(shared)
}

/// The worker whose token the call carries.
fn caller(shared: &Shared, headers: &HeaderMap) -> Result<super::Caller, Refusal> {
    let token = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .ok_or_else(|| {
            Refusal(
                StatusCode::UNAUTHORIZED,
                "missing Authorization: send AWS_CONTAINER_AUTHORIZATION_TOKEN".into(),
            )
        })?;
    shared
        .tokens
        .read()
        .get(token)
        .cloned()
        .ok_or_else(|| Refusal(StatusCode::FORBIDDEN, "invalid authorization token".into()))
}

/// The worker calling about its own function `arn`.
fn own(shared: &Shared, headers: &HeaderMap, arn: &str) -> Result<super::Caller, Refusal> {
    let (f, w) = caller(shared, headers)?;
    if *f.arn != *arn {
        return Err(Refusal(
            StatusCode::FORBIDDEN,
            format!("this token belongs to {}, not {arn}", f.arn),
        ));
    }
    Ok((f, w))
}

fn header<'a>(headers: &'a HeaderMap, name: &str) -> &'a str {
    headers
        .get(name)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
}

fn accepted(id: &str) -> Reply {
    let mut r = StatusCode::ACCEPTED.into_response();
    r.headers_mut().insert(
        INVOCATION_ID,
        HeaderValue::from_str(id)
            .map_err(|e| Refusal(StatusCode::INTERNAL_SERVER_ERROR, e.to_string()))?,
    );
    Ok(r)
}

fn outcome_response(o: Outcome) -> Response {
    let mut r = (StatusCode::OK, o.payload).into_response();
    r.headers_mut()
        .insert(FUNCTION_ERROR, HeaderValue::from_static(o.error.as_str()));
    r
}

/// The custom map of a base64 JSON client context.
fn custom(client_context: &str) -> serde_json::Map<String, serde_json::Value> {
    base64::engine::general_purpose::STANDARD
        .decode(client_context.trim())
        .ok()
        .and_then(|raw| serde_json::from_slice::<serde_json::Value>(&raw).ok())
        .and_then(|v| match v.get("custom") {
            Some(serde_json::Value::Object(m)) => Some(m.clone()),
            _ => None,
        })
        .unwrap_or_default()
}

async fn post_work(
    State(shared): State<Arc<Shared>>,
    Path(target): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let (from, _) = caller(&shared, &headers)?;
    let id = uuid::Uuid::new_v4().to_string();
    let client_context = header(&headers, CLIENT_CONTEXT);
    match target.as_str() {
        ROUTER => {
            publish(&shared, &from, client_context, body).await?;
            accepted(&id)
        }
        SECRETS => {
            let outcome = super::secret_reply(&from, &body);
            keep(&shared, &id, Slot::Done(outcome, Instant::now()))?;
            accepted(&id)
        }
        t if t == SHADOW || t.starts_with("arn:aws:lambda:::function:GGShadowService:") => {
            let outcome = shadow(&shared, client_context, &body).await;
            keep(&shared, &id, Slot::Done(outcome, Instant::now()))?;
            accepted(&id)
        }
        _ => invoke(
            &shared,
            &target,
            &id,
            header(&headers, INVOCATION_TYPE),
            client_context,
            body,
        ),
    }
}

fn keep(shared: &Shared, id: &str, slot: Slot) -> Result<(), Refusal> {
    if shared.keep_result(id, slot) {
        Ok(())
    } else {
        Err(Refusal(
            StatusCode::TOO_MANY_REQUESTS,
            "too many invocation results wait to be fetched; try again".into(),
        ))
    }
}

/// The SDK's shadow calls: the topic is the client context's subject.
async fn shadow(shared: &Shared, client_context: &str, body: &[u8]) -> Outcome {
    let error = |code: u16, message: String| Outcome {
        payload: Bytes::from(serde_json::json!({ "code": code, "message": message }).to_string()),
        error: FunctionError::None,
    };
    let Some(service) = &shared.config.shadows else {
        return error(
            503,
            "The local shadow service is not available on this core".into(),
        );
    };
    let custom = custom(client_context);
    let subject = custom
        .get("subject")
        .and_then(|s| s.as_str())
        .unwrap_or_default();
    match service.request(subject, body).await {
        Some(answer) => Outcome {
            payload: Bytes::from(answer),
            error: FunctionError::None,
        },
        None => error(
            400,
            format!(
                "{subject:?} is not a shadow request topic ($aws/things/THING/shadow/get|update|delete)"
            ),
        ),
    }
}

/// `iot-data.publish`: the function's message enters the router with the function as Source.
async fn publish(
    shared: &Shared,
    from: &Function,
    client_context: &str,
    body: Bytes,
) -> Result<(), Refusal> {
    let custom = custom(client_context);
    let subject = custom
        .get("subject")
        .and_then(|s| s.as_str())
        .ok_or_else(|| {
            Refusal(
                StatusCode::BAD_REQUEST,
                "publish: the client context has no custom.subject (the topic)".into(),
            )
        })?;
    let topic = TopicName::parse(subject).map_err(|e| {
        Refusal(
            StatusCode::BAD_REQUEST,
            format!("publish: topic {subject:?}: {e}"),
        )
    })?;
    let all_or_error = custom.get("queueFullPolicy").and_then(|p| p.as_str()) == Some("AllOrError");
    let report = shared
        .router
        .route(Message::new(
            Entity::Function(from.arn.clone()),
            topic,
            body,
        ))
        .await;
    if all_or_error && report.dropped > 0 {
        return Err(Refusal(
            StatusCode::TOO_MANY_REQUESTS,
            format!(
                "publish to {subject}: {} target(s) could not take the message (queueFullPolicy AllOrError)",
                report.dropped
            ),
        ));
    }
    Ok(())
}

/// `lambda.invoke` of another function of the group (no subscription needed).
fn invoke(
    shared: &Shared,
    target: &str,
    id: &str,
    invocation_type: &str,
    client_context: &str,
    body: Bytes,
) -> Reply {
    let f = shared.function(target).ok_or_else(|| {
        Refusal(
            StatusCode::NOT_FOUND,
            format!("function {target} is not deployed to this core (address the deployed version or alias)"),
        )
    })?;
    let request_response = match invocation_type {
        "" | "RequestResponse" => true,
        "Event" => false,
        other => {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                format!("X-Amz-Invocation-Type {other:?} is neither RequestResponse nor Event"),
            ));
        }
    };
    if f.json && !body.is_empty() && !super::is_json(&body) {
        f.counters
            .not_json
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        if request_response {
            keep(
                shared,
                id,
                Slot::Done(
                    Outcome::unhandled(
                        "could not parse the payload as JSON: the function's EncodingType is json",
                    ),
                    Instant::now(),
                ),
            )?;
            return accepted(id);
        }
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "could not parse the payload as JSON: the function's EncodingType is json".into(),
        ));
    }
    let reply = if request_response {
        let (tx, rx) = oneshot::channel();
        // The invoker waits for the run, plus time for the item to reach a worker.
        let wait = f.timeout + Duration::from_secs(60);
        keep(
            shared,
            id,
            Slot::Waiting {
                rx,
                wait,
                since: Instant::now(),
            },
        )?;
        Some(tx)
    } else {
        None
    };
    let item = WorkItem {
        id: id.to_owned(),
        payload: body,
        client_context: client_context.to_owned(),
        reply,
    };
    if f.direct_tx.try_send(item).is_err() {
        shared.results.lock().remove(id);
        f.counters
            .queue_full
            .fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        f.log.log(
            Level::WARN,
            &format!("invocation {id} refused: the function's queue is full"),
        );
        return Err(Refusal(
            StatusCode::TOO_MANY_REQUESTS,
            format!("function {target}: its queue is full"),
        ));
    }
    accepted(id)
}

async fn get_result(
    State(shared): State<Arc<Shared>>,
    Path(_target): Path<String>,
    headers: HeaderMap,
) -> Reply {
    caller(&shared, &headers)?;
    let id = header(&headers, INVOCATION_ID);
    let slot = shared.results.lock().remove(id).ok_or_else(|| {
        Refusal(
            StatusCode::NOT_FOUND,
            format!("no result for invocation {id:?}"),
        )
    })?;
    let outcome = match slot {
        Slot::Done(o, _) => o,
        Slot::Waiting { rx, wait, .. } => match tokio::time::timeout(wait, rx).await {
            Ok(Ok(o)) => o,
            Ok(Err(_)) => Outcome::unhandled("the invocation was dropped: the function stopped"),
            Err(_) => Outcome::unhandled(&format!(
                "no result within {} s: the function did not run the invocation",
                wait.as_secs()
            )),
        },
    };
    Ok(outcome_response(outcome))
}

async fn get_work(
    State(shared): State<Arc<Shared>>,
    Path(arn): Path<String>,
    headers: HeaderMap,
) -> Reply {
    let (f, worker) = own(&shared, &headers, &arn)?;
    ready(&f, &worker);
    let (tx, rx) = oneshot::channel();
    f.idle.lock().push_back(super::Idle { tx });
    f.idle_changed.notify_one();
    let Ok(mut item) = rx.await else {
        return Err(Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "the function is stopping".into(),
        ));
    };
    shared.begin(&f, &worker, &mut item);
    let mut r = (StatusCode::OK, item.payload).into_response();
    let h = r.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&item.id) {
        h.insert(INVOCATION_ID, v);
    }
    if let Ok(v) = HeaderValue::from_str(&item.client_context) {
        h.insert(CLIENT_CONTEXT, v);
    }
    Ok(r)
}

/// The worker is up: it is no longer counted as starting.
fn ready(f: &Function, worker: &Worker) {
    let mut state = worker.state.lock();
    if *state == WorkerState::Starting {
        f.starting.fetch_sub(1, std::sync::atomic::Ordering::AcqRel);
        f.failed_starts
            .store(0, std::sync::atomic::Ordering::Release);
    }
    *state = WorkerState::Waiting;
}

async fn post_result(
    State(shared): State<Arc<Shared>>,
    Path(arn): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    let (f, worker) = own(&shared, &headers, &arn)?;
    let id = header(&headers, INVOCATION_ID);
    let error = match header(&headers, FUNCTION_ERROR) {
        "" => FunctionError::None,
        "Handled" => FunctionError::Handled,
        other => {
            return Err(Refusal(
                StatusCode::BAD_REQUEST,
                format!("X-Amz-Function-Error {other:?}: a worker reports only Handled errors"),
            ));
        }
    };
    if !shared.finish(
        &f,
        &worker,
        id,
        Outcome {
            payload: body,
            error,
        },
    ) {
        return Err(Refusal(
            StatusCode::NOT_FOUND,
            format!("invocation {id:?} is not running on this worker (it may have timed out)"),
        ));
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

async fn initialized(
    State(shared): State<Arc<Shared>>,
    Path(arn): Path<String>,
    headers: HeaderMap,
    body: Bytes,
) -> Reply {
    #[derive(serde::Deserialize)]
    #[serde(rename_all = "PascalCase")]
    struct Report {
        success: bool,
        #[serde(default)]
        response: String,
    }
    let (f, worker) = own(&shared, &headers, &arn)?;
    let report: Report = serde_json::from_slice(&body)
        .map_err(|e| Refusal(StatusCode::BAD_REQUEST, format!("invalid body: {e}")))?;
    if report.success {
        ready(&f, &worker);
    } else {
        f.log.log(
            Level::ERROR,
            &format!(
                "worker {} failed to initialize: {}",
                worker.id, report.response
            ),
        );
        *worker.init_error.lock() = Some(report.response);
    }
    Ok(StatusCode::ACCEPTED.into_response())
}

fn workers_json(functions: &[Arc<Function>]) -> Vec<serde_json::Value> {
    functions
        .iter()
        .flat_map(|f| {
            f.workers
                .lock()
                .values()
                .map(|w| {
                    serde_json::json!({
                        "FuncArn": &*f.arn,
                        "WorkerId": w.id.to_string(),
                        "ProcessId": w.pid.load(std::sync::atomic::Ordering::Relaxed),
                        "WorkerState": w.state.lock().as_str(),
                    })
                })
                .collect::<Vec<_>>()
        })
        .collect()
}

/// Every worker of the group (GGC 1.11's health API; its documented calls carry no token).
async fn health(State(shared): State<Arc<Shared>>) -> Response {
    let functions = shared.functions.read().clone();
    axum::Json(workers_json(&functions)).into_response()
}

async fn health_of(State(shared): State<Arc<Shared>>, body: Bytes) -> Reply {
    #[derive(serde::Deserialize)]
    struct Request {
        #[serde(rename = "FuncArns")]
        func_arns: Vec<String>,
    }
    let req: Request = serde_json::from_slice(&body)
        .map_err(|_| Refusal(StatusCode::BAD_REQUEST, "Invalid request".into()))?;
    if req.func_arns.len() > 100 {
        return Err(Refusal(
            StatusCode::BAD_REQUEST,
            "Request exceeds max number of workers".into(),
        ));
    }
    let all = shared.functions.read().clone();
    let (known, invalid): (Vec<_>, Vec<_>) = req
        .func_arns
        .into_iter()
        .partition(|a| all.iter().any(|f| *f.arn == **a));
    let chosen: Vec<_> = all
        .into_iter()
        .filter(|f| known.iter().any(|a| **a == *f.arn))
        .collect();
    Ok(axum::Json(serde_json::json!({
        "Workers": workers_json(&chosen),
        "InvalidArns": invalid,
    }))
    .into_response())
}
