//! `liteskill bench collaboration`: forking a long conversation against a short one,
//! and `searchMessages` over a large corpus. The corpus is written straight into the
//! projection tables (the search reads nothing else), with words drawn from a skewed
//! vocabulary so that some are common and most are rare, as in real text.

use std::time::{Duration, Instant};

use rand::RngExt;

use super::Scratch;
use crate::app::App;
use crate::auth::Viewer;
use crate::chat::branching;
use crate::config::Config;
use crate::domain::ids::{ConversationId, MessageId, SessionId, UserId};
use crate::domain::user::Role;
use crate::storage::projections::Table;
use crate::storage::projections::conversations::{ConversationRow, Conversations};
use crate::storage::projections::lineage::{Lineage, LineageRow};
use crate::storage::projections::messages::{MessageRow, Messages};
use crate::storage::search::{self, Query};
use crate::storage::sql_types::{DbTime, DbUuid};

#[derive(clap::Args)]
pub struct CollaborationArgs {
    /// `postgres://…` server to create a scratch database on; SQLite when absent.
    #[arg(long)]
    database_url: Option<String>,
    /// Messages in the search corpus.
    #[arg(long, default_value_t = 200_000)]
    messages: usize,
    /// Users the corpus is spread over; the searching user owns one in this many
    /// conversations.
    #[arg(long, default_value_t = 100)]
    users: usize,
    /// Searches (and forks of each size) to time.
    #[arg(long, default_value_t = 300)]
    queries: usize,
}

pub async fn run(args: CollaborationArgs) -> anyhow::Result<()> {
    let (scratch, url) = Scratch::create(args.database_url.as_deref()).await?;
    let result = measure(&args, &url).await;
    scratch.remove().await?;
    result
}

const MESSAGES_PER_CONVERSATION: usize = 100;

async fn measure(args: &CollaborationArgs, url: &str) -> anyhow::Result<()> {
    let config = Config::from_lookup(|key| (key == "DATABASE_URL").then(|| url.to_owned()))?;
    let served = App::start(config).await?;
    let app = served.app.clone();
    let backend = if url.starts_with("postgres") { "PostgreSQL" } else { "SQLite" };
    println!("liteskill bench collaboration on {backend}");
    let viewer = Viewer { user_id: UserId::new(), session_id: SessionId::new(), role: Role::User, model_mask: None };

    for length in [10, 10_000] {
        let (source, last) = conversation(&app, viewer.user_id, length, &mut |_| "a message".to_owned()).await?;
        let mut times = vec![];
        for _ in 0..args.queries {
            let started = Instant::now();
            branching::fork(&app, &viewer, source, last, None).await?;
            times.push(started.elapsed());
        }
        report(&format!("forkConversation, {length} messages"), times);
    }

    let vocabulary: Vec<String> = (0..5_000).map(word).collect();
    let pick = |rng: &mut rand::rngs::ThreadRng| {
        // Skewed: a few words are everywhere, most are rare.
        let x: f64 = rng.random();
        vocabulary[((x * x * x) * vocabulary.len() as f64) as usize].clone()
    };
    let started = Instant::now();
    let mut rng = rand::rng();
    let conversations = args.messages / MESSAGES_PER_CONVERSATION;
    let others: Vec<UserId> = (1..args.users).map(|_| UserId::new()).collect();
    let mut text = |_: usize| (0..12).map(|_| pick(&mut rand::rng())).collect::<Vec<_>>().join(" ");
    for n in 0..conversations {
        let owner = if n % args.users == 0 { viewer.user_id } else { others[n % others.len()] };
        conversation(&app, owner, MESSAGES_PER_CONVERSATION, &mut text).await?;
    }
    println!(
        "corpus: {} messages in {conversations} conversations, written in {:.1?}",
        args.messages,
        started.elapsed()
    );

    let mut times = vec![];
    let mut found = 0;
    for n in 0..args.queries {
        let words = if n % 2 == 0 { pick(&mut rng) } else { format!("{} {}", pick(&mut rng), pick(&mut rng)) };
        let query = Query::parse(&words).ok_or_else(|| anyhow::anyhow!("no words"))?;
        let started = Instant::now();
        let hits = search::messages(&mut app.db.conn().await?, viewer.user_id, &query, 0, 21).await?;
        times.push(started.elapsed());
        found += hits.len();
    }
    report(&format!("searchMessages over {} messages", args.messages), times);
    println!("  ({:.1} hits per search on average)", found as f64 / args.queries as f64);
    Ok(())
}

/// A pronounceable made-up word for each number.
fn word(n: usize) -> String {
    const SYLLABLES: [&str; 16] =
        ["ka", "lo", "mi", "ter", "sun", "vo", "rel", "an", "qui", "dor", "pe", "zal", "bri", "nox", "ul", "fen"];
    let (a, b, c) = (n % 16, (n / 16) % 16, n / 256);
    format!(
        "{}{}{}",
        SYLLABLES[a],
        SYLLABLES[b],
        if c == 0 { String::new() } else { SYLLABLES[c % 16].to_owned() + &c.to_string() }
    )
}

/// A conversation of `length` messages owned by `owner`, written into the projections;
/// returns it and its last message.
async fn conversation(
    app: &App,
    owner: UserId,
    length: usize,
    text: &mut impl FnMut(usize) -> String,
) -> anyhow::Result<(ConversationId, MessageId)> {
    let id = ConversationId::new();
    let now = DbTime(crate::domain::now());
    let row = ConversationRow {
        id: DbUuid(id.uuid()),
        owner_id: DbUuid(owner.uuid()),
        title: "bench".into(),
        model_id: None,
        system_prompt: None,
        status: "active".into(),
        archived: false,
        message_count: length as i64,
        version: 1,
        created_at: now,
        updated_at: now,
        temperature: None,
        max_tokens: None,
        forked_from_id: None,
        fork_message_id: None,
    };
    let messages: Vec<MessageRow> = (1..=length)
        .map(|seq| MessageRow {
            id: DbUuid(MessageId::new().uuid()),
            conversation_id: row.id,
            seq: seq as i64,
            role: if seq % 2 == 1 { "user" } else { "assistant" }.into(),
            content: text(seq),
            author_id: None,
            created_at: now,
            status: "completed".into(),
            model_id: None,
            stop_reason: None,
            error: None,
            input_tokens: None,
            output_tokens: None,
            time_to_first_token_ms: None,
            duration_ms: None,
        })
        .collect();
    let last = messages.last().map(MessageRow::message_id).ok_or_else(|| anyhow::anyhow!("empty"))?;
    let mut conn = app.db.conn().await?;
    Conversations::insert(&mut conn, std::slice::from_ref(&row)).await?;
    let lineage = LineageRow { id: row.id, conversation_id: row.id, ancestor_id: row.id, until_seq: i64::MAX };
    Lineage::insert(&mut conn, &[lineage]).await?;
    for chunk in messages.chunks(1_000) {
        Messages::insert(&mut conn, chunk).await?;
    }
    Ok((id, last))
}

fn report(what: &str, mut times: Vec<Duration>) {
    times.sort();
    let at = |p: f64| super::percentile(&times, p);
    println!("{what:<45} p50 {:>8.2?}   p99 {:>8.2?}   max {:>8.2?}", at(0.5), at(0.99), at(1.0));
}
