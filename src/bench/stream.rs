//! `liteskill bench stream`: a server (its own process, measured through /proc) on a
//! scratch database streams replies from a simulated OpenAI-compatible model to real
//! websocket subscribers. The model stamps each token with the time it sent it, so a
//! subscriber can tell how much delay the server added.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::State;
use axum::response::Response;
use axum::routing::{get, post};
use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use super::Scratch;

#[derive(clap::Args)]
pub struct StreamArgs {
    /// `postgres://…` server to create a scratch database on; SQLite when absent.
    #[arg(long)]
    database_url: Option<String>,
    /// Conversations streaming at once, one subscriber each.
    #[arg(long, default_value_t = 1_000)]
    conversations: usize,
    /// Tokens each simulated reply streams per second.
    #[arg(long, default_value_t = 20)]
    tokens_per_second: u64,
    /// Tokens in each reply.
    #[arg(long, default_value_t = 100)]
    tokens: usize,
    /// Idle subscriptions opened afterwards, to measure their memory.
    #[arg(long, default_value_t = 10_000)]
    idle: usize,
    /// Idle subscriptions sharing one websocket, as a device watching several
    /// conversations has them.
    #[arg(long, default_value_t = 1)]
    idle_per_connection: usize,
}

/// The simulated model: every token is the time it was sent, in nanoseconds since `epoch`.
struct Model {
    epoch: Instant,
    tokens: usize,
    interval: Duration,
}

async fn completions(State(model): State<Arc<Model>>) -> Response {
    let model2 = model.clone();
    let chunks = async_stream::stream! {
        let mut every = tokio::time::interval(model2.interval);
        for _ in 0..model2.tokens {
            every.tick().await;
            let sent = model2.epoch.elapsed().as_nanos();
            let chunk = json!({ "choices": [{ "index": 0, "delta": { "content": format!("{sent} ") } }] });
            yield Ok::<_, std::io::Error>(Bytes::from(format!("data: {chunk}\n\n")));
        }
        let done = json!({ "choices": [{ "index": 0, "delta": {}, "finish_reason": "stop" }] });
        yield Ok(Bytes::from(format!("data: {done}\n\ndata: [DONE]\n\n")));
    };
    drop(model);
    Response::builder().header("Content-Type", "text/event-stream").body(Body::from_stream(chunks)).unwrap_or_default()
}

async fn start_model(model: Model) -> anyhow::Result<String> {
    let router = axum::Router::new()
        .route("/v1/models", get(|| async { Json(json!({ "data": [{ "id": "simulated" }] })) }))
        .route("/v1/chat/completions", post(completions))
        .with_state(Arc::new(model));
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let address = listener.local_addr()?;
    tokio::spawn(async move { axum::serve(listener, router).await });
    Ok(format!("http://{address}/v1"))
}

/// CPU seconds and resident memory of a process, from /proc.
struct Usage {
    cpu_seconds: f64,
    rss_mb: f64,
    peak_rss_mb: f64,
}

fn usage(pid: u32) -> anyhow::Result<Usage> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name, which is in parentheses and may hold spaces.
    let fields: Vec<&str> =
        stat.rsplit_once(')').map(|(_, rest)| rest).unwrap_or_default().split_whitespace().collect();
    let ticks: f64 = fields.get(11).and_then(|t| t.parse::<f64>().ok()).unwrap_or_default()
        + fields.get(12).and_then(|t| t.parse::<f64>().ok()).unwrap_or_default();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kb = |key: &str| {
        status
            .lines()
            .find(|l| l.starts_with(key))
            .and_then(|l| l.split_whitespace().nth(1))
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or_default()
    };
    // Linux counts CPU time in clock ticks of 1/100 s.
    Ok(Usage { cpu_seconds: ticks / 100.0, rss_mb: kb("VmRSS:") / 1024.0, peak_rss_mb: kb("VmHWM:") / 1024.0 })
}

/// The server under test, in its own process.
struct Server {
    child: std::process::Child,
    base: String,
}

impl Server {
    async fn start(database_url: &str, model_url: &str) -> anyhow::Result<Server> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let child = std::process::Command::new(std::env::current_exe()?)
            .arg("serve")
            .env("DATABASE_URL", database_url)
            .env("PORT", port.to_string())
            .env("OPENAI_BASE_URL", model_url)
            .env("DATABASE_POOL_SIZE", "32")
            .env("RUST_LOG", "warn")
            .spawn()?;
        let base = format!("127.0.0.1:{port}");
        for _ in 0..100 {
            if tokio::net::TcpStream::connect(&base).await.is_ok() {
                return Ok(Server { child, base });
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        anyhow::bail!("the server did not start")
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

async fn graphql(
    http: &reqwest::Client,
    server: &Server,
    token: Option<&str>,
    query: &str,
    variables: Value,
) -> anyhow::Result<Value> {
    let mut request =
        http.post(format!("http://{}/graphql", server.base)).json(&json!({ "query": query, "variables": variables }));
    if let Some(token) = token {
        request = request.bearer_auth(token);
    }
    let body: Value = request.send().await?.json().await?;
    anyhow::ensure!(body.get("errors").is_none(), "GraphQL error: {body}");
    Ok(body["data"].clone())
}

type Socket = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// A websocket subscribed to a conversation's events, once the replay has arrived.
async fn subscribe(server: &Server, token: &str, conversation: &str) -> anyhow::Result<Socket> {
    subscribe_all(server, token, &[conversation]).await
}

/// One websocket with a subscription to each conversation.
async fn subscribe_all(server: &Server, token: &str, conversations: &[&str]) -> anyhow::Result<Socket> {
    let mut request = format!("ws://{}/graphql/ws", server.base).into_client_request()?;
    request.headers_mut().insert("Sec-WebSocket-Protocol", "graphql-transport-ws".parse()?);
    let (mut socket, _) = tokio_tungstenite::connect_async(request).await?;
    let send = |value: Value| Message::Text(value.to_string().into());
    socket.send(send(json!({ "type": "connection_init", "payload": { "token": token } }))).await?;
    let query = "subscription($id: ID!) { conversationEvents(conversationId: $id) {
        ... on HistoryEvent { type } ... on MessageDelta { text } } }";
    for (n, conversation) in conversations.iter().enumerate() {
        let variables = json!({ "id": conversation });
        socket.send(send(json!({ "id": n.to_string(), "type": "subscribe", "payload": { "query": query, "variables": variables } }))).await?;
    }
    // The acknowledgement, then each replayed creation event.
    let mut received = 0;
    while received < 1 + conversations.len() {
        match socket.next().await.context("closed")?? {
            Message::Text(_) => received += 1,
            _ => continue,
        }
    }
    Ok(socket)
}

/// What one subscriber saw of one reply.
#[derive(Default)]
struct Observed {
    first_token: Option<Duration>,
    /// When each token left the model, and how long it took to arrive (nanoseconds).
    latencies_ns: Vec<(u64, u64)>,
    tokens: usize,
    error: Option<String>,
}

async fn watch(mut socket: Socket, epoch: Instant, sent_at: Arc<tokio::sync::OnceCell<Instant>>) -> Observed {
    let mut observed = Observed::default();
    loop {
        let text = match socket.next().await {
            Some(Ok(Message::Text(text))) => text,
            Some(Ok(_)) => continue,
            other => {
                observed.error = Some(format!("socket ended: {other:?}"));
                return observed;
            }
        };
        let received = epoch.elapsed();
        let Ok(message) = serde_json::from_str::<Value>(&text) else { continue };
        if message["type"] != "next" {
            observed.error = Some(format!("unexpected: {message}"));
            return observed;
        }
        let event = &message["payload"]["data"]["conversationEvents"];
        if let Some(pieces) = event["text"].as_str() {
            for sent in pieces.split_whitespace().filter_map(|t| t.parse::<u128>().ok()) {
                observed.latencies_ns.push((sent as u64, received.as_nanos().saturating_sub(sent) as u64));
                observed.tokens += 1;
            }
            if observed.first_token.is_none()
                && let Some(sent_at) = sent_at.get()
            {
                observed.first_token = Some(sent_at.elapsed());
            }
        }
        match event["type"].as_str() {
            Some("AssistantMessageCompleted") => return observed,
            Some("AssistantMessageFailed" | "AssistantMessageCancelled") => {
                observed.error = Some(format!("reply ended: {event}"));
                return observed;
            }
            _ => {}
        }
    }
}

fn percentile(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    super::percentile(sorted, p) as f64 / 1e6
}

pub async fn run(args: StreamArgs) -> anyhow::Result<()> {
    let (scratch, url) = Scratch::create(args.database_url.as_deref()).await?;
    let result = measure(&args, &url).await;
    scratch.remove().await?;
    result
}

async fn measure(args: &StreamArgs, database_url: &str) -> anyhow::Result<()> {
    let epoch = Instant::now();
    let interval = Duration::from_nanos(1_000_000_000 / args.tokens_per_second.max(1));
    let model_url = start_model(Model { epoch, tokens: args.tokens, interval }).await?;
    let server = Server::start(database_url, &model_url).await?;
    let http = reqwest::Client::builder().pool_max_idle_per_host(256).build()?;
    let register = "mutation { register(input: { email: \"bench@example.com\", password: \"bench password\", name: \"Bench\" }) { token } }";
    let token = graphql(&http, &server, None, register, json!({})).await?["register"]["token"]
        .as_str()
        .context("token")?
        .to_owned();
    println!(
        "liteskill bench stream: {} conversations x {} tokens at {} tokens/s",
        args.conversations, args.tokens, args.tokens_per_second
    );

    let mut conversations = Vec::with_capacity(args.conversations);
    for _ in 0..args.conversations {
        let created =
            graphql(&http, &server, Some(&token), "mutation { createConversation(input: {}) { id } }", json!({}))
                .await?;
        conversations.push(created["createConversation"]["id"].as_str().context("id")?.to_owned());
    }
    let sockets = futures_util::stream::iter(conversations.iter().map(|c| subscribe(&server, &token, c)))
        .buffered(64)
        .collect::<Vec<_>>()
        .await
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;

    let before = usage(server.child.id())?;
    let started = Instant::now();
    let mut watchers = vec![];
    let mut senders = vec![];
    for (conversation, socket) in conversations.iter().zip(sockets) {
        let sent_at = Arc::new(tokio::sync::OnceCell::new());
        watchers.push(tokio::spawn(watch(socket, epoch, sent_at.clone())));
        let (http, token, conversation, base) =
            (http.clone(), token.clone(), conversation.clone(), server.base.clone());
        senders.push(tokio::spawn(async move {
            let send = "mutation($id: ID!) { sendMessage(input: { conversationId: $id, content: \"Go\" }) { id } }";
            let _ = sent_at.set(Instant::now());
            let body: Value = http
                .post(format!("http://{base}/graphql"))
                .bearer_auth(token)
                .json(&json!({ "query": send, "variables": { "id": conversation } }))
                .send()
                .await?
                .json()
                .await?;
            anyhow::ensure!(body.get("errors").is_none(), "sendMessage failed: {body}");
            Ok(())
        }));
    }
    let mut errors = 0;
    for sender in senders {
        if let Err(error) = sender.await? {
            errors += 1;
            eprintln!("{error}");
        }
    }
    let all_sent = epoch.elapsed().as_nanos() as u64;
    let mut latencies = vec![];
    let mut first_tokens = vec![];
    let mut tokens = 0;
    for watcher in watchers {
        let observed = watcher.await?;
        if let Some(error) = &observed.error {
            errors += 1;
            eprintln!("{error}");
        } else if observed.tokens != args.tokens {
            errors += 1;
            eprintln!("a subscriber received {} of {} tokens", observed.tokens, args.tokens);
        }
        tokens += observed.tokens;
        latencies.extend(observed.latencies_ns);
        first_tokens.extend(observed.first_token.map(|d| d.as_nanos() as u64));
    }
    let elapsed = started.elapsed();
    let after = usage(server.child.id())?;
    // Once every message is sent, the server only streams: no more writes compete.
    let mut steady: Vec<u64> = latencies.iter().filter(|(sent, _)| *sent > all_sent).map(|(_, l)| *l).collect();
    let mut latencies: Vec<u64> = latencies.into_iter().map(|(_, l)| l).collect();
    steady.sort_unstable();
    latencies.sort_unstable();
    first_tokens.sort_unstable();
    println!("errors                               {errors}");
    println!(
        "time to first token (from sendMessage) p50 {:.2} ms  p99 {:.2} ms",
        percentile(&first_tokens, 0.5),
        percentile(&first_tokens, 0.99)
    );
    println!(
        "added latency per token                p50 {:.2} ms  p99 {:.2} ms",
        percentile(&latencies, 0.5),
        percentile(&latencies, 0.99)
    );
    println!(
        "  once every message was sent          p50 {:.2} ms  p99 {:.2} ms ({} tokens)",
        percentile(&steady, 0.5),
        percentile(&steady, 0.99),
        steady.len()
    );
    println!(
        "delivered                              {:.0} tokens/s ({tokens} in {elapsed:.2?})",
        tokens as f64 / elapsed.as_secs_f64()
    );
    println!(
        "server                                 {:.2} CPU s, peak RSS {:.1} MB",
        after.cpu_seconds - before.cpu_seconds,
        after.peak_rss_mb
    );

    // Idle subscriptions, spread over the conversations.
    let idle_before = usage(server.child.id())?;
    let per_connection = args.idle_per_connection.max(1);
    let idle = futures_util::stream::iter((0..args.idle.div_ceil(per_connection)).map(|socket| {
        let watched: Vec<&str> = (0..per_connection)
            .map(|n| conversations[(socket * per_connection + n) % conversations.len()].as_str())
            .collect();
        let (server, token) = (&server, &token);
        async move { subscribe_all(server, token, &watched).await }
    }))
    .buffered(64)
    .collect::<Vec<_>>()
    .await
    .into_iter()
    .collect::<anyhow::Result<Vec<_>>>()?;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let idle_after = usage(server.child.id())?;
    println!(
        "{} idle subscriptions on {} websockets   RSS {:.1} MB (was {:.1} MB before them)",
        idle.len() * per_connection,
        idle.len(),
        idle_after.rss_mb,
        idle_before.rss_mb
    );
    drop(idle);
    Ok(())
}
