//! `liteskill bench storage`: the real write path (load, decide, append, project,
//! commit), the projection rebuild, and the `conversations` query through the GraphQL
//! executor.

use std::sync::Arc;
use std::time::{Duration, Instant};

use async_graphql::Request;
use futures_util::FutureExt;

use super::Scratch;
use crate::app::App;
use crate::config::Config;
use crate::domain::Actor;
use crate::domain::conversation::{Command, Completion, Conversation, ReplyOutcome};
use crate::domain::ids::{ConversationId, MessageId, UserId};
use crate::domain::values::{DisplayName, Email, MessageContent, Password, Title};
use crate::error::AppError;
use crate::graphql::{self, Credentials};
use crate::storage::event_store::execute;
use crate::storage::projections;

#[derive(clap::Args)]
pub struct StorageArgs {
    /// `postgres://…` server to create a scratch database on; SQLite when absent.
    #[arg(long)]
    database_url: Option<String>,
    /// Messages appended to one conversation.
    #[arg(long, default_value_t = 5_000)]
    events: usize,
    /// Conversations created (concurrently) for the list benchmark.
    #[arg(long, default_value_t = 10_000)]
    conversations: usize,
    /// Concurrent writers for the many-streams benchmark.
    #[arg(long, default_value_t = 8)]
    writers: usize,
    /// `conversations` queries to time.
    #[arg(long, default_value_t = 2_000)]
    queries: usize,
}

pub async fn run(args: StorageArgs) -> anyhow::Result<()> {
    let (scratch, url) = Scratch::create(args.database_url.as_deref()).await?;
    let result = measure(&args, &url).await;
    scratch.remove().await?;
    result
}

async fn measure(args: &StorageArgs, url: &str) -> anyhow::Result<()> {
    let config = Config::from_lookup(|key| match key {
        "DATABASE_URL" => Some(url.to_owned()),
        "DATABASE_POOL_SIZE" => Some((args.writers + 2).to_string()),
        _ => None,
    })?;
    let served = App::start(config).await?;
    let app = served.app.clone();
    let backend = if url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" };
    println!("liteskill bench on {backend}");

    let registering = crate::auth::accounts::Registering {
        email: Email::parse("bench@example.com")?,
        name: DisplayName::parse("Bench")?,
        password: Password::parse("bench password")?,
        invite_code: None,
    };
    let signed_in = crate::auth::accounts::register(&app, registering, Default::default()).await?;
    let owner = signed_in.user.user_id();

    // One stream: every command waits for the previous one.
    let stream = create(&app, owner, "one stream").await?;
    let started = Instant::now();
    let mut appended = 0;
    while appended < args.events {
        appended += turn(&app, owner, stream, appended).await?;
    }
    report_rate("append, one stream", appended, started.elapsed());

    // Many streams: `writers` tasks, each creating conversations (one event each).
    let started = Instant::now();
    let per_writer = args.conversations.div_ceil(args.writers);
    let tasks: Vec<_> = (0..args.writers)
        .map(|w| {
            let app = app.clone();
            tokio::spawn(async move {
                for n in 0..per_writer {
                    create(&app, owner, &format!("conversation {w}-{n}")).await?;
                }
                Ok::<_, AppError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await??;
    }
    report_rate(
        &format!("append, many streams ({} writers)", args.writers),
        per_writer * args.writers,
        started.elapsed(),
    );

    let started = Instant::now();
    let replayed = app.db.write(|conn| projections::rebuild(conn).boxed()).await?;
    report_rate("projection rebuild", replayed as usize, started.elapsed());

    list_latency(&served.schema, signed_in.token, args.queries).await?;
    Ok(())
}

async fn create(app: &Arc<App>, owner: UserId, title: &str) -> Result<ConversationId, AppError> {
    let id = ConversationId::new();
    let command = Command::Create {
        owner,
        title: Title::parse(title)?,
        model_id: None,
        system_prompt: None,
        sampling: Default::default(),
        fork: None,
    };
    app.db.write(|conn| execute::<Conversation>(conn, id.uuid(), Actor::User(owner), command).boxed()).await?;
    Ok(id)
}

/// One exchange as the write path records it: the message with the start of its reply
/// (two events), then the reply's completion (one). Returns the events appended.
async fn turn(app: &Arc<App>, owner: UserId, id: ConversationId, n: usize) -> Result<usize, AppError> {
    let actor = Actor::User(owner);
    let reply_id = MessageId::new();
    let send = Command::SendMessage {
        message_id: MessageId::new(),
        content: MessageContent::parse(&format!("benchmark message number {n}"))?,
        reply_id,
        model_id: "demo".to_owned(),
    };
    app.db.write(|conn| execute::<Conversation>(conn, id.uuid(), actor, send).boxed()).await?;
    let completion = Completion {
        text: format!("benchmark reply number {n}"),
        stop_reason: "end_turn".to_owned(),
        input_tokens: Some(4),
        output_tokens: Some(4),
        time_to_first_token_ms: Some(1),
        duration_ms: 1,
    };
    let finish = Command::FinishReply {
        message_id: reply_id,
        outcome: ReplyOutcome::Completed(completion),
        tool_calls: vec![],
        max_rounds: 0,
        next: None,
    };
    app.db.write(|conn| execute::<Conversation>(conn, id.uuid(), Actor::System, finish).boxed()).await?;
    Ok(3)
}

/// Times `conversations(first: 20)`, session check included: half first pages, half
/// pages deep in the list.
async fn list_latency(schema: &graphql::AppSchema, token: String, queries: usize) -> anyhow::Result<()> {
    let credentials = Credentials { token: Some(token), origin: Default::default() };
    let query = "query($after: String) { conversations(first: 20, after: $after) {
        edges { cursor node { id title status messageCount updatedAt } } pageInfo { hasNextPage } } }";
    let run = |after: Option<String>| {
        let request = Request::new(query)
            .variables(async_graphql::Variables::from_json(serde_json::json!({ "after": after })))
            .data(credentials.clone());
        schema.execute(request)
    };
    // Collect cursors spread through the list to start deep pages from.
    let mut cursors = vec![];
    let mut after = None;
    loop {
        let response = run(after.clone()).await;
        anyhow::ensure!(response.errors.is_empty(), "query failed: {:?}", response.errors);
        let data = response.data.into_json()?;
        let edges = data["conversations"]["edges"].as_array().cloned().unwrap_or_default();
        after = edges.last().and_then(|e| e["cursor"].as_str()).map(str::to_owned);
        cursors.extend(after.clone());
        if data["conversations"]["pageInfo"]["hasNextPage"] != true {
            break;
        }
    }
    let mut timings = Vec::with_capacity(queries);
    for n in 0..queries {
        let after = (n % 2 == 1).then(|| cursors[(n * 7919) % cursors.len()].clone());
        let started = Instant::now();
        let response = run(after).await;
        timings.push(started.elapsed());
        anyhow::ensure!(response.errors.is_empty(), "query failed: {:?}", response.errors);
    }
    timings.sort();
    let percentile = |p: f64| super::percentile(&timings, p);
    println!(
        "{:<40} p50 {:>8.3} ms   p99 {:>8.3} ms   ({} queries over {} conversations)",
        "conversations(first: 20)",
        percentile(0.50).as_secs_f64() * 1e3,
        percentile(0.99).as_secs_f64() * 1e3,
        queries,
        cursors.len() * 20,
    );
    Ok(())
}

fn report_rate(what: &str, events: usize, elapsed: Duration) {
    println!(
        "{what:<40} {:>10.0} events/s   ({events} events in {elapsed:.2?})",
        events as f64 / elapsed.as_secs_f64()
    );
}
